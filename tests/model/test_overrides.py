"""Override rules (labels/overrides.yaml, tagger/model/overrides.py) apply at once in every path:
`tagger tag` and `tagger ingest` as subprocesses, /v1/tag over real HTTP against the running
app, with provenance and the model stamp; `tagger labels overrides check` refuses a rule below
0.95 precision on the labeled corpus and lists its counterexamples."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest

from tagger.api import create_app
from tagger.config import Settings
from tagger.model.overrides import InvalidOverrides, current_overrides, load_overrides
from tagger.store.db import ClauseQuery, Store

from ..conftest import ROOT, run_cli, serve

BUNDLE = ROOT / "models" / "policy-tagger"
VERSION = json.loads((BUNDLE / "manifest.json").read_text(encoding="utf-8"))["version"]

AIRPORT = "支持低空经济发展，建设通用机场。"  # the model: industry drones, not transport
GRANT = "对人工智能企业给予最高500万元资金补助。"  # the model: measure grant

ADD_TRANSPORT = """
  - id: airport-transport
    phrases: [通用机场]
    head: industry
    add: transport
    author: test
    why: an airport is transport infrastructure
    examples: [建设通用机场。]
"""
REMOVE_GRANT = """
  - id: no-grant-test
    pattern: "资金补助$|资金补助。"
    head: measure
    remove: grant
    author: test
    why: exercise a remove rule
    examples: [给予资金补助。]
"""


def _write(path: Path, *rules: str) -> str:
    """Write the rules file; returns the stamp records must carry."""
    text = "rules:\n" + "".join(rules) if rules else "rules: []\n"
    before = path.stat() if path.exists() else None
    path.write_text(text, encoding="utf-8")
    if before is not None and path.stat().st_mtime_ns == before.st_mtime_ns:
        # Same size and mtime as before would hide the edit from the change check on coarse clocks.
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    return f"{VERSION}+ov.{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}" if rules else VERSION


def _input(tmp_path: Path) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in (("air", AIRPORT), ("grant", GRANT))), encoding="utf-8")
    return src


def test_cli_tag_picks_up_an_edited_rules_file(tmp_path):
    rules, src = tmp_path / "overrides.yaml", _input(tmp_path)
    env = {"TAGGER_OVERRIDES_FILE": str(rules)}

    def tag(*extra):
        r = run_cli("tag", str(src), "-q", *extra, env=env)
        assert r.returncode == 0, r.stderr
        return {rec["id"]: rec for rec in map(json.loads, r.stdout.splitlines())}

    stamp = _write(rules)
    base = tag()
    assert base["air"]["model"] == VERSION == stamp  # no rules: the bundle's version, unchanged
    assert "transport" not in base["air"]["industry"] and "grant" in base["grant"]["measure"]
    assert base["grant"]["provenance"]["measure"] == {"grant": "model"}

    stamp = _write(rules, ADD_TRANSPORT, REMOVE_GRANT)
    got = tag("--evidence")
    air, grant = got["air"], got["grant"]
    assert air["model"] == grant["model"] == stamp != VERSION
    assert "transport" in air["industry"] and air["provenance"]["industry"]["transport"] == "override:airport-transport"
    assert air["provenance"]["industry"]["drones"] == "model"
    s = air["text"].index("通用机场")
    assert air["evidence"]["industry"]["transport"] == [{"start": s, "end": s + 4, "text": "通用机场", "weight": 1.0}]
    assert "grant" not in grant["measure"] and "grant" not in grant["provenance"]["measure"] and "grant" not in grant["evidence"]["measure"]
    assert air["scores"] == base["air"]["scores"]  # rules change labels, never the model's scores


def test_malformed_rules_are_refused_with_one_line(tmp_path):
    rules, src = tmp_path / "overrides.yaml", _input(tmp_path)
    bad = {
        "unknown label": ADD_TRANSPORT.replace("add: transport", "add: trains"),
        "bad regex": REMOVE_GRANT.replace('"资金补助$|资金补助。"', '"(资金补助"'),
        "example not matched": ADD_TRANSPORT.replace("[建设通用机场。]", "[建设机场。]"),
        "unknown key": ADD_TRANSPORT.replace("head: industry", "head: industry\n    ad: transport"),
    }
    needles = {"unknown label": "unknown industry label id 'trains'", "bad regex": "bad regular expression", "example not matched": "example 1 does not match", "unknown key": "unknown key(s) ad"}
    for name, rule in bad.items():
        _write(rules, rule)
        r = run_cli("tag", str(src), env={"TAGGER_OVERRIDES_FILE": str(rules)})
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and r.stdout == "" and len(lines) == 1, (name, r.stderr)
        # the file's name, never its folder (the same message is an API client's 503)
        assert needles[name] in lines[0] and f"overrides file {rules.name}: " in lines[0] and str(tmp_path) not in lines[0], (name, lines[0])
    with pytest.raises(InvalidOverrides, match="used twice"):
        _write(rules, ADD_TRANSPORT, ADD_TRANSPORT)
        load_overrides(rules)


def test_cli_ingest_applies_rules_and_retags_when_they_change(tmp_path):
    rules = tmp_path / "overrides.yaml"
    doc = tmp_path / "notice.txt"
    doc.write_text(f"关于支持低空经济的若干措施\n\n第一条 {AIRPORT}\n第二条 {GRANT}\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {"TAGGER_OVERRIDES_FILE": str(rules)}

    _write(rules)
    r = run_cli("ingest", str(doc), "--database-url", url, "--no-evidence", env=env)
    assert r.returncode == 0 and "inserted 1" in r.stderr, r.stderr
    stamp = _write(rules, ADD_TRANSPORT)
    r = run_cli("ingest", str(doc), "--database-url", url, env=env)
    assert r.returncode == 0 and "retagged 1" in r.stderr and stamp in r.stderr, r.stderr
    rows, _, _ = Store(url).query(ClauseQuery(sort="position", order="asc"))
    air = next(row for row in rows if "通用机场" in row["text"])
    assert air["model"] == stamp and "transport" in air["industry"]
    assert air["provenance"]["industry"]["transport"] == "override:airport-transport"
    assert [s["text"] for s in air["evidence"]["industry"]["transport"]] == ["通用机场"]
    # the tag table behind the filters knows the added label too
    found, n, _ = Store(url).query(ClauseQuery(any_of={"industry": ["transport"]}))
    assert n == 1 and found[0]["id"] == air["id"]


@pytest.fixture
def api(tmp_path, tagger):
    rules = tmp_path / "overrides.yaml"
    _write(rules)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", overrides_file=rules, work_processes=1)
    for url in serve(create_app(settings, tagger=tagger)):
        yield url, rules


def test_api_tag_applies_an_edit_to_the_running_server(api):
    url, rules = api
    body = {"clauses": [{"id": "air", "text": AIRPORT}, {"id": "grant", "text": GRANT}]}

    def tag(query=""):
        r = httpx.post(url + "/v1/tag" + query, json=body, timeout=60)
        return r.status_code, r.json()

    status, j = tag("?evidence=false")  # the thread path
    assert status == 200 and j["model"] == VERSION and "transport" not in j["data"][0]["industry"]

    stamp = _write(rules, ADD_TRANSPORT)  # no restart, no retraining
    for query in ("?evidence=false", ""):  # thread path, then the worker-process path
        status, j = tag(query)
        assert status == 200 and j["model"] == stamp and j["data"][0]["model"] == stamp
        air = j["data"][0]
        assert "transport" in air["industry"] and air["provenance"]["industry"]["transport"] == "override:airport-transport"
    assert air["evidence"]["industry"]["transport"][0]["text"] == "通用机场"

    _write(rules, ADD_TRANSPORT.replace("add: transport", "add: trains"))  # a broken edit
    status, j = tag()
    assert status == 503 and j["error"] == "invalid_overrides" and "trains" in j["message"]
    stamp = _write(rules, REMOVE_GRANT)  # fixed: serving again, with the new rule only
    status, j = tag()
    assert status == 200 and j["model"] == stamp
    assert "transport" not in j["data"][0]["industry"] and "grant" not in j["data"][1]["measure"]
    assert j["data"][1]["provenance"]["measure"] == {}


def test_check_refuses_a_rule_below_the_precision_bar(tmp_path):
    rules = tmp_path / "overrides.yaml"
    # 机器人 alone: gold has robotics on ~93% of the clauses that say it (257 of 276 under
    # rules v1.1; robot programming courses, cloud-robot algorithms ... are not the segment).
    robots = "\n  - id: robots-word\n    phrases: [机器人]\n    head: industry\n    add: robotics\n    author: test\n    why: too broad\n    examples: [发展工业机器人。]\n"
    unseen = "\n  - id: never-seen\n    phrases: [量子引力券]\n    head: measure\n    add: grant\n    author: test\n    why: no labeled clause says it\n    examples: [发放量子引力券。]\n"
    _write(rules, ADD_TRANSPORT.replace("[通用机场]", "[人工智能芯片]").replace("[建设通用机场。]", "[人工智能芯片。]"), robots, unseen)
    r = run_cli("labels", "overrides", "check", "--file", str(rules), "--no-model")
    assert r.returncode == 1, r.stdout + r.stderr
    table = {line.split()[0]: line for line in r.stdout.splitlines() if line.split() and line.split()[0] in ("airport-transport", "robots-word", "never-seen")}
    assert table["robots-word"].endswith("REFUSED") and table["never-seen"].endswith("REFUSED") and table["airport-transport"].endswith("REFUSED")
    assert "rule 'robots-word' refused: precision 0.9" in r.stderr and "counterexample(s) where gold lacks industry:robotics" in r.stderr
    assert "rule 'never-seen' refused: it matches no labeled clause" in r.stderr
    # counterexamples: the clause id and its text, and gold really lacks the label
    gold = {json.loads(x)["id"]: json.loads(x) for x in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()}
    listed = [line.strip().split("\t") for line in r.stderr.splitlines() if line.startswith("  ") and "\t" in line]
    assert len(listed) >= 10
    for cid, text in listed:
        assert gold[cid]["text"] == text and ("robotics" not in gold[cid]["industry"] or "transport" not in gold[cid]["industry"])


def test_shipped_rules_pass_the_check_and_are_stamped():
    r = run_cli("labels", "overrides", "check", "--no-model")
    assert r.returncode == 0, r.stdout + r.stderr
    ov = load_overrides(ROOT / "labels" / "overrides.yaml")
    assert 1 <= len(ov.rules) <= 3 and all(f"{rule.id} " in r.stdout for rule in ov.rules)
    assert ov.version(VERSION) == f"{VERSION}+ov.{hashlib.sha256((ROOT / 'labels' / 'overrides.yaml').read_bytes()).hexdigest()[:8]}"


def test_serve_does_not_start_with_a_malformed_rules_file(tmp_path):
    import subprocess
    import sys

    from ..conftest import free_port

    rules = tmp_path / "overrides.yaml"
    _write(rules, ADD_TRANSPORT.replace("head: industry", "head: industries"))
    env = {**os.environ, "TAGGER_OVERRIDES_FILE": str(rules), "TAGGER_VAR_DIR": str(tmp_path / "var")}
    r = subprocess.run([sys.executable, "-m", "tagger.cli", "serve", "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "'head' must be one of topic, measure, industry" in lines[0], r.stderr


# --- rules that cannot hang (reliability issue: catastrophic regexes, reload on the event loop,
# absolute paths in messages) ----------------------------------------------------------------

CATASTROPHIC = """
  - id: catastrophic
    pattern: "(x+x+)+y"
    head: industry
    add: transport
    author: test
    why: exponential under a backtracking engine
    examples: [xxxxy]
"""


def _bulk(n: int) -> str:
    return "".join(
        f"\n  - id: bulk-{i}\n    phrases: [词语{i}号]\n    head: industry\n    add: transport\n    author: test\n"
        f"    why: load test rule {i}\n    examples: [建设词语{i}号。]\n"
        for i in range(n)
    )


def test_a_catastrophic_pattern_matches_in_linear_time(tmp_path):
    """(x+x+)+y took exponential time in Python's re on a clause of x's: it never finished
    (and held the GIL, so not even a signal stopped it). In a subprocess, so that the old
    engine fails the test by its timeout instead of hanging the run."""
    import subprocess
    import sys

    rules = tmp_path / "overrides.yaml"
    _write(rules, CATASTROPHIC)
    script = (
        "import sys, time\n"
        "from tagger.model.overrides import load_overrides\n"
        "rule, = load_overrides(sys.argv[1]).rules\n"
        "for text, want in (('x' * 100_000, []), ('x' * 100_000 + 'y', [(0, 100_001)]), ('x' * 30, [])):\n"
        "    t = time.perf_counter()\n"
        "    got = rule.spans(text)\n"
        "    print(time.perf_counter() - t, got == want)\n"
    )
    try:
        r = subprocess.run([sys.executable, "-c", script, str(rules)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("matching (x+x+)+y on 100,000 x's did not finish in 60 s")
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        seconds, right = line.split()
        assert float(seconds) < 0.5 and right == "True", r.stdout


def test_cli_tag_with_a_catastrophic_rule_finishes(tmp_path):
    import subprocess
    import sys

    rules = tmp_path / "overrides.yaml"
    stamp = _write(rules, CATASTROPHIC)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "xs", "text": "x" * 5000}) + "\n" + json.dumps({"id": "xy", "text": "x" * 40 + "y"}) + "\n", encoding="utf-8")
    try:
        r = subprocess.run([sys.executable, "-m", "tagger.cli", "tag", str(src), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TAGGER_OVERRIDES_FILE": str(rules)})
    except subprocess.TimeoutExpired:
        pytest.fail("tagger tag hung on a clause of x's with the rule (x+x+)+y")
    assert r.returncode == 0, r.stderr
    got = {rec["id"]: rec for rec in map(json.loads, r.stdout.splitlines())}
    assert got["xs"]["model"] == stamp and "transport" not in got["xs"]["industry"]
    assert got["xy"]["provenance"]["industry"]["transport"] == "override:catastrophic"


@pytest.mark.parametrize(
    "pattern",
    [r"(补助)\1", "资金(?=补助)", "(?<!不)补助", "(?<=给予)补助", "补助(?!资金)", r"补助++", r"补助\Z"],
)
def test_patterns_re2_cannot_run_are_refused_with_one_line(tmp_path, pattern):
    """Backreferences and lookarounds need a backtracking engine: refused at load, one line
    naming the file and the rule (the old loader compiled them with re and accepted them)."""
    rules = tmp_path / "overrides.yaml"
    _write(rules, REMOVE_GRANT.replace('"资金补助$|资金补助。"', json.dumps(pattern)).replace("[给予资金补助。]", "[给予资金补助补助。]"))
    with pytest.raises(InvalidOverrides) as err:
        load_overrides(rules)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith("overrides file overrides.yaml: rule 'no-grant-test': bad regular expression"), msg
    assert "RE2" in msg and str(tmp_path) not in msg


def test_rules_and_patterns_are_bounded(tmp_path):
    from tagger.model import overrides as mod

    rules = tmp_path / "overrides.yaml"
    _write(rules, REMOVE_GRANT.replace('"资金补助$|资金补助。"', '"资金补助|' + "补" * mod.MAX_PATTERN_CHARS + '"'))
    with pytest.raises(InvalidOverrides, match=rf"rule 'no-grant-test': 'pattern' has {mod.MAX_PATTERN_CHARS + 5} characters; the limit is"):
        load_overrides(rules)
    many = ", ".join(f"词{i:05d}" for i in range(mod.MAX_PATTERN_CHARS // 6 + 1))
    _write(rules, ADD_TRANSPORT.replace("[通用机场]", f"[通用机场, {many}]"))
    with pytest.raises(InvalidOverrides, match=r"rule 'airport-transport': 'phrases' make a pattern of \d+ characters; the limit is"):
        load_overrides(rules)
    _write(rules, _bulk(mod.MAX_RULES + 1))
    with pytest.raises(InvalidOverrides, match=rf"overrides file overrides.yaml: {mod.MAX_RULES + 1} rules; the limit is {mod.MAX_RULES}"):
        load_overrides(rules)
    rules.write_bytes(b"rules: []\n" + b"#" * mod.MAX_FILE_BYTES)
    with pytest.raises(InvalidOverrides, match=rf"overrides file overrides.yaml: larger than the limit of {mod.MAX_FILE_BYTES} bytes"):
        load_overrides(rules)


def test_malformed_file_messages_name_the_file_not_its_folder(tmp_path):
    rules = tmp_path / "deep" / "er" / "overrides.yaml"
    rules.parent.mkdir(parents=True)
    assert rules.is_absolute()
    for text in ("rules: [\n", "rules:\n" + ADD_TRANSPORT.replace("add: transport", "add: trains"), "other: 1\n", "\xff\xfe"):
        rules.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode("utf-8"))
        with pytest.raises(InvalidOverrides) as err:
            load_overrides(rules)
        msg = str(err.value)
        assert msg.startswith("overrides file overrides.yaml: ") and "deep" not in msg and str(tmp_path) not in msg, msg


def test_a_broken_file_is_parsed_once_not_per_request(tmp_path, monkeypatch):
    from tagger.model import overrides as mod

    rules = tmp_path / "overrides.yaml"
    _write(rules, ADD_TRANSPORT.replace("add: transport", "add: trains"))
    calls = []
    real = mod.load_overrides
    monkeypatch.setattr(mod, "load_overrides", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(3):
        with pytest.raises(InvalidOverrides, match="trains"):
            current_overrides(rules)
    assert len(calls) == 1
    _write(rules, ADD_TRANSPORT)  # fixed: read again, at once
    assert [r.id for r in current_overrides(rules).rules] == ["airport-transport"] and len(calls) == 2


def test_api_503_for_a_malformed_file_does_not_show_the_server_path(api):
    url, rules = api
    _write(rules, ADD_TRANSPORT.replace("add: transport", "add: trains"))
    for path, body in (("/v1/tag", {"text": AIRPORT}), ("/v1/documents?evidence=false", {"text": "第一条 " + AIRPORT})):
        r = httpx.post(url + path, json=body, timeout=60)
        j = r.json()
        assert r.status_code == 503 and j["error"] == "invalid_overrides", (path, r.text)
        assert j["message"].startswith("overrides file overrides.yaml: rule 'airport-transport'") and str(rules.parent) not in r.text, j


@pytest.mark.slow  # a latency bound (< 1 s while 10,000 rules are parsed): timing belongs to the slow set
def test_health_answers_while_a_large_rules_file_is_reloaded(api):
    """The reload (stat and parse) runs in a worker thread: /v1/health keeps answering while a
    10,000-rule file is parsed (on the event loop it stalled the server ~5 s)."""
    import threading
    import time

    url, rules = api
    stamp = _write(rules, ADD_TRANSPORT, _bulk(9_999))  # 10,000 rules, the most a file may hold (MAX_RULES)
    latencies: list[float] = []
    stop = threading.Event()

    def poll():
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                t = time.perf_counter()
                assert client.get(url + "/v1/health").status_code == 200
                latencies.append(time.perf_counter() - t)
                time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.2)
    try:
        t = time.perf_counter()
        r = httpx.post(url + "/v1/tag?evidence=false", json={"clauses": [{"id": "air", "text": AIRPORT}]}, timeout=120)
        took = time.perf_counter() - t
        time.sleep(0.2)
    finally:
        stop.set()
        poller.join(60)
    assert r.status_code == 200 and r.json()["model"] == stamp, r.text
    assert r.json()["data"][0]["provenance"]["industry"]["transport"] == "override:airport-transport"
    assert len(latencies) >= 5 and max(latencies) < 1.0, (took, max(latencies), len(latencies))


def test_plain_string_rules_skip_re2_only_where_it_would_find_nothing():
    """A pattern of plain alternatives (every 'phrases' rule) is checked with `in` first;
    anything with RE2 syntax is not."""
    import re2

    from tagger.model.overrides import _literals

    assert _literals("加速折旧|折旧年限|计算折旧") == ("加速折旧", "折旧年限", "计算折旧")
    assert _literals("|".join(re2.escape(p) for p in ["首购", "a.b", "x|y", "c\\d", "空 格"])) == ("首购", "a.b", "x|y", "c\\d", "空 格")
    for pattern in (r"\d+元", "a(b)", "ab\\", r"\n", "a|", "[首]购", "首购?", r"\x41", "(?i)ai"):
        assert _literals(pattern) is None, pattern
    from dataclasses import replace

    from tagger.model.bundle import read_manifest
    from tagger.taxonomy import HEADS

    manifest = read_manifest(ROOT / "models" / "policy-tagger")
    order = {h: manifest.labels(h) for h in HEADS}
    shipped = current_overrides(ROOT / "labels" / "overrides.yaml", order)
    assert shipped.rules and all(r.literals for r in shipped.rules)
    plain = replace(shipped, rules=tuple(replace(r, literals=None) for r in shipped.rules))
    rows = [json.loads(line) for line in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()]
    nothing = {h: [] for h in HEADS}
    for row in rows:
        for labels in (nothing, {h: list(row.get(h) or []) if h != "kind" else [row.get(h)] for h in HEADS}):
            assert shipped.apply(row["text"], labels, order) == plain.apply(row["text"], labels, order)
