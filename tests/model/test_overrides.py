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
from tagger.model.inference import Tagger
from tagger.model.overrides import InvalidOverrides, load_overrides
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
        assert needles[name] in lines[0] and str(rules) in lines[0], (name, lines[0])
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
def api(tmp_path):
    rules = tmp_path / "overrides.yaml"
    _write(rules)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", overrides_file=rules, work_processes=1)
    for url in serve(create_app(settings, tagger=Tagger(BUNDLE))):
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
    # 机器人 alone: gold has robotics on ~90% of the clauses that say it (robot programming
    # courses, cloud-robot algorithms ... are not the robotics segment).
    robots = "\n  - id: robots-word\n    phrases: [机器人]\n    head: industry\n    add: robotics\n    author: test\n    why: too broad\n    examples: [发展工业机器人。]\n"
    unseen = "\n  - id: never-seen\n    phrases: [量子引力券]\n    head: measure\n    add: grant\n    author: test\n    why: no labeled clause says it\n    examples: [发放量子引力券。]\n"
    _write(rules, ADD_TRANSPORT.replace("[通用机场]", "[人工智能芯片]").replace("[建设通用机场。]", "[人工智能芯片。]"), robots, unseen)
    r = run_cli("labels", "overrides", "check", "--file", str(rules), "--no-model")
    assert r.returncode == 1, r.stdout + r.stderr
    table = {line.split()[0]: line for line in r.stdout.splitlines() if line.split() and line.split()[0] in ("airport-transport", "robots-word", "never-seen")}
    assert table["robots-word"].endswith("REFUSED") and table["never-seen"].endswith("REFUSED") and table["airport-transport"].endswith("REFUSED")
    assert "rule 'robots-word' refused: precision 0.8" in r.stderr and "counterexample(s) where gold lacks industry:robotics" in r.stderr
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
