"""`tagger segment` as a subprocess: batch behaviour, errors, atomic output."""

import json

from ..conftest import DOCS, run_cli


def test_segment_whole_corpus_glob(tmp_path):
    out = tmp_path / "clauses.jsonl"
    paths = sorted(str(p) for p in DOCS.iterdir())  # what the shell makes of labels/documents/*
    r = run_cli("segment", *paths, "-o", str(out))
    assert r.returncode == 0, r.stderr
    recs = [json.loads(l) for l in out.read_text(encoding="utf-8").splitlines()]
    assert len({r["doc"] for r in recs}) == 311
    assert set(recs[0]) == {"id", "doc", "section", "text", "start", "end"}
    # Chinese is written unescaped
    assert "\\u" not in out.read_text(encoding="utf-8")[:2000]


def test_bad_file_reported_others_processed(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("第一条 支持企业发展。\n", encoding="utf-8")
    bad = tmp_path / "bad.docx"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out.jsonl"
    r = run_cli("segment", str(bad), str(good), str(tmp_path / "missing.txt"), "-o", str(out))
    assert r.returncode == 1
    errors = [l for l in r.stderr.splitlines() if l.startswith("tagger: ")]
    assert len(errors) == 2 and "bad.docx" in errors[0] and "missing.txt: no such file" in errors[1]
    assert [json.loads(l)["text"] for l in out.read_text(encoding="utf-8").splitlines()] == ["第一条支持企业发展。"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_stdout_when_no_output(tmp_path):
    good = tmp_path / "good.md"
    good.write_text("# 标题\n\n对企业给予奖励。\n", encoding="utf-8")
    r = run_cli("segment", str(good), "-q")
    assert r.returncode == 0 and json.loads(r.stdout)["text"] == "对企业给予奖励。"
