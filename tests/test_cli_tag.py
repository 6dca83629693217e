"""`tagger tag` as a subprocess: the output contract, JSONL input, resume, errors."""

import json

from tagger.tagging import OUTPUT_FIELDS

from .conftest import DOCS, run_cli

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
    assert set(recs[0]["scores"]) == {"topic", "measure", "industry"}
    assert all(isinstance(recs[0][h], list) for h in ("topic", "measure", "industry"))
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


def test_resume_refuses_mismatched_output(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "x", "text": "支持。"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "other"}\n', encoding="utf-8")
    r = run_cli("tag", str(src), "-o", str(out))
    assert r.returncode == 1 and "does not match the input" in r.stderr


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
