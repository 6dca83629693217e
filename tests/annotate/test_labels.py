"""`tagger labels validate|stats` on small fixtures, and on the committed labels."""

import json

import pytest

from tagger.annotate.labels import label_stats, validate_labels
from tagger.taxonomy import load_taxonomy

from ..conftest import ROOT, run_cli

TAX = load_taxonomy(ROOT / "labels" / "taxonomy.yaml")


def _write(tmp_path, records):
    p = tmp_path / "clauses.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return p


def _rec(i, **kw):
    base = {"id": f"d-{i}", "doc": "d", "section": "", "text": f"第{i}条", "topic": [], "measure": [], "industry": [], "kind": "provision", "source": "annotator:pass1"}
    base.update(kw)
    return base


def test_validate_names_offending_records(tmp_path):
    p = _write(
        tmp_path,
        [
            _rec(1, measure=["rent_subsidy"]),
            _rec(2, measure=["rent"]),  # not a taxonomy id
            _rec(1),  # duplicate
            {k: v for k, v in _rec(3).items() if k != "source"},
            _rec(4, source="rules:proposal"),  # unreviewed proposal
            _rec(5, topic="talent"),
            _rec(6, kind=["title"]),  # kind is one id, not a list
            _rec(7, kind="headline"),
            {k: v for k, v in _rec(8).items() if k != "kind"},
        ],
    )
    rep = validate_labels(p, TAX, documents=None)
    msgs = "\n".join(rep.errors)
    assert not rep.ok
    assert "(d-2): unknown measure id(s) ['rent']" in msgs
    assert "(d-1): duplicate id, first at line 1" in msgs
    assert "(d-3): missing field(s) source" in msgs
    assert "rules:proposal" in msgs
    assert "(d-5): topic must be a list" in msgs
    assert "(d-6): kind must be one id (a string)" in msgs
    assert "(d-7): unknown kind id(s) ['headline']" in msgs
    assert "(d-8): missing field(s) kind" in msgs


def test_validate_against_segmentation(tmp_path):
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "a.txt").write_text("第一条 支持企业发展。\n第二条 支持平台建设。\n", encoding="utf-8")
    from tagger.ingest.corpus import segment_paths

    clauses = [c for _, cs in segment_paths([docs]) for c in cs]
    good = [_rec(0, id=c.id, doc=c.doc, text=c.text) for c in clauses]
    assert validate_labels(_write(tmp_path, good), TAX, docs).ok
    stale = [good[0], dict(good[1], text="第二条 改过的文字。")]
    rep = validate_labels(_write(tmp_path, stale), TAX, docs)
    assert any("text differs from the current segmentation" in e for e in rep.errors)
    rep = validate_labels(_write(tmp_path, good[:1]), TAX, docs)
    assert any("is not labeled" in e for e in rep.errors)


def test_stats_counts(tmp_path):
    p = _write(tmp_path, [_rec(1, measure=["grant", "tax_relief"]), _rec(2, measure=["grant"], topic=["talent"])])
    s = label_stats(p, TAX)
    assert s["labels"]["measure"]["grant"] == 2 and s["labels"]["measure"]["rent_subsidy"] == 0
    assert s["measure_cooccurrence"] == {"grant+tax_relief": 1}
    assert s["documents"]["d"]["clauses"] == 2
    assert s["labels"]["kind"]["provision"] == 2 and s["documents_labeled_on_all_heads"] == "1 of 1"
    p = _write(tmp_path, [_rec(1), {k: v for k, v in _rec(2, doc="e").items() if k != "kind"}])
    s = label_stats(p, TAX)
    assert s["unlabeled"]["kind"] == 1 and s["documents_labeled_on_all_heads"] == "1 of 2"


@pytest.mark.slow
def test_committed_labels_validate_and_meet_counts():
    r = run_cli("labels", "validate")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("labels", "stats", "--json")
    stats = json.loads(r.stdout)
    assert stats["labels"]["measure"]["rent_subsidy"] >= 40
    assert stats["labels"]["measure"]["tax_relief"] >= 40
    for head, counts in stats["labels"].items():
        for lab, n in counts.items():
            assert n >= 15, (head, lab, n)
    assert all(s.startswith("annotator:") for s in stats["sources"])
    # rules v1.1 (#18): every document labeled on all four heads, housing reachable
    assert stats["unlabeled"] == {"topic": 0, "measure": 0, "industry": 0, "kind": 0}
    assert stats["labels"]["measure"]["housing"] >= 25
