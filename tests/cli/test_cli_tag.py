"""`tagger tag` as a subprocess: the output contract, JSONL input, resume, errors."""

import json

import pytest

from tagger.tagging import OUTPUT_FIELDS

from ..conftest import DOCS, run_cli

DOC = DOCS / "miit-2018-ai-industry-three-year-action-plan.txt"


def _read(p):
    return [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines()]


def test_tag_document_contract(tmp_path):
    out = tmp_path / "out.jsonl"
    r = run_cli("tag", str(DOC), "-o", str(out))
    assert r.returncode == 0, r.stderr
    recs = _read(out)
    assert len(recs) > 30
    assert list(recs[0])[: len(OUTPUT_FIELDS)] == list(OUTPUT_FIELDS)
    assert recs[0]["doc"] == "miit-2018-ai-industry-three-year-action-plan"
    assert set(recs[0]["scores"]) == {"topic", "measure", "industry", "kind"}
    assert all(isinstance(recs[0][h], list) for h in ("topic", "measure", "industry"))
    # kind: one id per clause, the most probable one
    assert all(r["kind"] == max(r["scores"]["kind"], key=r["scores"]["kind"].get) for r in recs)
    assert {r["kind"] for r in recs} >= {"provision", "target"}
    seg = [json.loads(l) for l in run_cli("segment", str(DOC), "-q").stdout.splitlines()]
    assert [r["id"] for r in recs] == [s["id"] for s in seg]  # input order


def test_jsonl_input_passes_extra_fields_and_reports_bad_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id": "a", "text": "对租用办公用房的企业给予三年房租补贴。", "source_url": "http://x"}\n'
        "not json\n"
        '{"text": "没有编号"}\n'
        '{"id": 7, "text": "支持无人机产业发展。"}\n',
        encoding="utf-8",
    )
    r = run_cli("tag", str(src))
    assert r.returncode == 1
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    assert [x["id"] for x in recs] == ["a", "7"]
    assert recs[0]["source_url"] == "http://x"
    assert "in.jsonl:2: invalid JSON" in r.stderr and "in.jsonl:3: record needs a non-empty 'id'" in r.stderr


def test_resume_skips_written_clauses_and_repairs_a_cut_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"c{i}", "text": f"第{i}条 支持人工智能企业发展，给予{i}万元奖励。"}, ensure_ascii=False) + "\n" for i in range(50)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    full = run_cli("tag", str(src), "-o", str(out), "--batch-size", "8")
    assert full.returncode == 0
    expected = out.read_text(encoding="utf-8")
    # Simulate a crash: 20 records written plus half a line, no final file.
    lines = expected.splitlines(keepends=True)
    out.unlink()
    (tmp_path / "out.jsonl.partial").write_text("".join(lines[:20]) + lines[20][:30], encoding="utf-8")
    again = run_cli("tag", str(src), "-o", str(out), "--batch-size", "8")
    assert again.returncode == 0, again.stderr
    assert "skipped 20" in again.stderr
    assert out.read_text(encoding="utf-8") == expected
    assert not (tmp_path / "out.jsonl.partial").exists()
    # Re-running on a finished output tags nothing new.
    third = run_cli("tag", str(src), "-o", str(out))
    assert "tagged 0 clauses, skipped 50" in third.stderr and out.read_text(encoding="utf-8") == expected


def test_resume_refuses_mismatched_partial(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "x", "text": "支持。"}\n{"id": "y", "text": "补贴。"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert run_cli("tag", str(src), "-o", str(out)).returncode == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    partial = tmp_path / "out.jsonl.partial"
    partial.write_text(lines[0] + lines[1].replace('"id":"y"', '"id":"z"'), encoding="utf-8")
    r = run_cli("tag", str(src), "-o", str(out))
    assert r.returncode == 2 and "out.jsonl.partial: existing output does not match the input at record 2" in r.stderr  # a refusal
    assert out.read_text(encoding="utf-8") == "".join(lines) and partial.exists()


def _refused(r):
    """Refusals are one line on stderr, saying why and how to force, and exit 2."""
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("tagger: ") and "--force" in r.stderr, r.stderr
    return r.stderr


def test_output_refuses_a_folder_or_an_input_even_forced(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "x", "text": "支持工业机器人研发。"}\n', encoding="utf-8")
    folder = tmp_path / "results"
    (folder / "keep.txt").parent.mkdir()
    (folder / "keep.txt").write_text("mine", encoding="utf-8")
    assert "is a directory" in _refused(run_cli("tag", str(src), "-o", str(folder)))
    assert "is a directory" in _refused(run_cli("tag", str(src), "-o", str(folder), "--force"))
    # The same file spelled another way is still the input.
    same = tmp_path / "results" / ".." / "in.jsonl"
    assert "is one of the input files" in _refused(run_cli("tag", str(tmp_path), "-o", str(same), "--force"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "results"]
    assert (folder / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert src.read_text(encoding="utf-8") == '{"id": "x", "text": "支持工业机器人研发。"}\n'


def test_output_refuses_a_file_that_is_not_a_previous_output(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "x", "text": "支持工业机器人研发。"}\n{"id": "y", "text": "给予房租补贴。"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert run_cli("tag", str(src), "-o", str(out)).returncode == 0
    tagged = out.read_text(encoding="utf-8")
    other_input, other_model = tmp_path / "other-input.jsonl", tmp_path / "other-model.jsonl"
    other_input.write_text(tagged.replace('"id":"x"', '"id":"w"'), encoding="utf-8")
    other_model.write_text(tagged.replace('"model":"', '"model":"old-'), encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    assert "is not tagger output" in _refused(run_cli("tag", str(src), "-o", str(notes)))
    assert "starts with clause 'w'" in _refused(run_cli("tag", str(src), "-o", str(other_input)))
    assert "was tagged by model 'old-" in _refused(run_cli("tag", str(src), "-o", str(other_model)))
    assert notes.read_text(encoding="utf-8") == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "notes.txt", "other-input.jsonl", "other-model.jsonl", "out.jsonl"]
    forced = run_cli("tag", str(src), "-o", str(notes), "--force")
    assert forced.returncode == 0, forced.stderr
    assert notes.read_text(encoding="utf-8") == tagged and not (tmp_path / "notes.txt.partial").exists()


def test_rerun_never_moves_a_finished_output_away(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from ..conftest import ROOT

    src = tmp_path / "in.jsonl"
    rows = [json.dumps({"id": f"c{i}", "text": f"第{i}条 支持人工智能企业发展，给予{i}万元奖励。"}, ensure_ascii=False) + "\n" for i in range(50)]
    src.write_text("".join(rows), encoding="utf-8")
    out, partial = tmp_path / "out.jsonl", tmp_path / "out.jsonl.partial"
    assert run_cli("tag", str(src), "-o", str(out)).returncode == 0
    finished = out.read_bytes()
    # The input changed under a finished output: the run stops, the output stays.
    src.write_text("".join(rows[:30]) + rows[30].replace('"c30"', '"changed"') + "".join(rows[31:]), encoding="utf-8")
    r = run_cli("tag", str(src), "-o", str(out))
    assert r.returncode == 2 and "does not match the input at record 31" in r.stderr
    assert out.read_bytes() == finished and not partial.exists()
    # The input grew: kill the run as soon as it starts writing; the output is still whole.
    more = [json.dumps({"id": f"n{i}", "text": f"建设第{i}个人工智能算力中心。"}, ensure_ascii=False) + "\n" for i in range(1500)]
    src.write_text("".join(rows + more), encoding="utf-8")
    cmd = [sys.executable, "-m", "tagger.cli", "tag", str(src), "-o", str(out), "--batch-size", "8", "--workers", "1", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == finished or proc.returncode == 0
    again = run_cli("tag", str(src), "-o", str(out), "-q")
    assert again.returncode == 0, again.stderr
    assert out.read_bytes().startswith(finished) and not partial.exists()
    assert [r["id"] for r in _read(out)] == [f"c{i}" for i in range(50)] + [f"n{i}" for i in range(1500)]


def test_unreadable_file_reported_others_tagged(tmp_path):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-nope")
    r = run_cli("tag", str(bad), str(DOC))
    assert r.returncode == 1
    assert "bad.pdf" in r.stderr
    assert len(r.stdout.splitlines()) > 30


def test_parallel_workers_keep_order_and_results(tmp_path):
    src = tmp_path / "in.jsonl"
    texts = ["支持工业机器人研发。", "对新引进的企业给予房租补贴。", "落实研发费用加计扣除政策。", "建设人工智能算力中心。"]
    src.write_text("".join(json.dumps({"id": f"c{i}", "text": texts[i % 4]}, ensure_ascii=False) + "\n" for i in range(300)), encoding="utf-8")
    one, two = tmp_path / "w1.jsonl", tmp_path / "w2.jsonl"
    assert run_cli("tag", str(src), "-o", str(one), "--workers", "1", "--batch-size", "16").returncode == 0
    assert run_cli("tag", str(src), "-o", str(two), "--workers", "2", "--batch-size", "16").returncode == 0
    a, b = _read(one), _read(two)
    assert [r["id"] for r in a] == [f"c{i}" for i in range(300)] == [r["id"] for r in b]
    assert [(r["topic"], r["measure"], r["industry"]) for r in a] == [(r["topic"], r["measure"], r["industry"]) for r in b]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bad_records_are_reported_and_skipped(tmp_path, workers):
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        '{"id": "a", "text": "对租用办公用房的企业给予三年房租补贴。"}\n'
        '{"id": "s", "text": "\\ud800 补贴"}\n'  # a lone surrogate, written as the JSON escape
        "[1, 2]\n"
        '{"id": "nt"}\n'.encode("utf-8")
        + b'{"id": "latin1", "text": "\xe9"}\n'
        + '{"id": "x", "text": "支持。", "note": "\\udc00"}\n'
        '{"id": "b", "text": "支持无人机产业发展。"}\n'
        '{"id": "e", "text": "表情 \\ud83d\\ude00 成对的代理项是合法的"}\n'.encode("utf-8")
    )
    out = tmp_path / "out.jsonl"
    r = run_cli("tag", str(src), "-o", str(out), "-q", "--workers", workers, "--batch-size", "2")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"tagger: {src}:2: lone surrogate \\ud800 is not valid Unicode",
        f"tagger: {src}:3: expected a JSON object",
        f"tagger: {src}:4: record needs a string 'text'",
        f"tagger: {src}:5: not valid UTF-8",
        f"tagger: {src}:6: lone surrogate \\udc00 is not valid Unicode",
    ]
    recs = _read(out)
    assert [x["id"] for x in recs] == ["a", "b", "e"]
    assert recs[2]["text"] == "表情 😀 成对的代理项是合法的"


def test_jsonl_records_with_nothing_visible_are_bad_records(tmp_path):
    # The API's rule (422): a text that is empty once white space, control and invisible
    # characters are left out is a bad record, reported with file:line and skipped.
    src = tmp_path / "in.jsonl"
    lines = [{"id": "a", "text": "对租用办公用房的企业给予三年房租补贴。"}, {"id": "b", "text": ""}, {"id": "c", "text": "\u200b"},
             {"id": "d", "text": "\ufeff"}, {"id": "e", "text": "\u0000"}, {"id": "f", "text": " \u200d\n\u3000\u2060"},
             {"id": "g", "text": "\u200b支持无人机产业发展。"}]
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    r = run_cli("tag", str(src))
    assert r.returncode == 1
    assert [x["id"] for x in map(json.loads, r.stdout.splitlines())] == ["a", "g"]
    errors = [l for l in r.stderr.splitlines() if "in.jsonl:" in l]
    assert [e.split("in.jsonl:")[1].split(":")[0] for e in errors] == ["2", "3", "4", "5", "6"], r.stderr
    assert all("'text' is empty" in e for e in errors)


def test_occlusion_evidence_refuses_a_jsonl_clause_longer_than_the_api_limit(tmp_path):
    # Occlusion's cost grows with the square of the length: a JSONL clause over
    # TAGGER_MAX_EVIDENCE_CLAUSE_CHARS is a bad record for it (file:line, skipped, exit 1),
    # as the API answers 413; contributions (linear) tag it.
    src = tmp_path / "in.jsonl"
    long_text = "对新引进的人工智能企业给予房租补贴。" * 70  # 1,260 characters
    src.write_text(json.dumps({"id": "a", "text": "对租用办公用房的企业给予三年房租补贴。"}, ensure_ascii=False) + "\n"
                   + json.dumps({"id": "long", "text": long_text}, ensure_ascii=False) + "\n", encoding="utf-8")
    r = run_cli("tag", str(src), "--evidence", "--evidence-method", "occlusion", "-q")
    assert r.returncode == 1
    assert [x["id"] for x in map(json.loads, r.stdout.splitlines())] == ["a"]
    assert r.stderr.splitlines() == [f"tagger: {src}:2: text has 1260 characters; occlusion evidence is computed for clauses of at most "
                                     "1000 characters (TAGGER_MAX_EVIDENCE_CLAUSE_CHARS): use the default --evidence-method "
                                     "contributions, or split the text"]
    r = run_cli("tag", str(src), "--evidence", "-q")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(l) for l in r.stdout.splitlines()]
    assert [x["id"] for x in recs] == ["a", "long"] and any(recs[1]["evidence"][h] for h in ("topic", "measure"))
