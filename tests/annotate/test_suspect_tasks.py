"""Suspect tasks explain themselves: the pre-annotation is the out-of-fold proposal, and the
current labels and the reason are task fields the labeling config displays; an oof file made
on other labels is refused (or, with --force, used with a warning)."""

import json
from xml.etree import ElementTree

import numpy as np
import pytest

from tagger.annotate.labels import data_hash, trainable
from tagger.taxonomy import HEADS, load_taxonomy

from ..conftest import ROOT, run_cli

TAX = load_taxonomy(ROOT / "labels" / "taxonomy.yaml")


@pytest.fixture
def labels_and_oof(tmp_path):
    """12 real labeled clauses and an oof file for them whose probabilities disagree with
    the labels here and there (seeded), thresholds varying per label."""
    labels = tmp_path / "clauses.jsonl"
    labels.write_text("\n".join((ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines()[:12]) + "\n", encoding="utf-8")
    recs = [json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()]
    rng = np.random.default_rng(3)
    heads, probs = {}, {}
    for h in HEADS:
        labs = list(TAX.labels[h])
        y = np.array([[1.0 if l in ([r[h]] if h == "kind" else r[h]) else 0.0 for l in labs] for r in recs])
        # Mostly agreeing with the labels, a third of the cells flipped towards the other side.
        p = np.where(y == 1, 0.8, 0.1) + rng.normal(0, 0.05, y.shape)
        flip = rng.random(y.shape) < 0.3
        p = np.clip(np.where(flip, 1 - p, p), 0.001, 0.999)
        heads[h] = {"labels": labs, "thresholds": rng.uniform(0.3, 0.6, len(labs)).round(3).tolist(), "model": "logreg"}
        probs[h] = p.round(5).tolist()
    oof = tmp_path / "oof.json"
    doc = {"format": "policy-tagger-oof/1", "data_hash": data_hash(trainable(recs)), "heads": heads, "ids": [r["id"] for r in recs], "probs": probs}
    oof.write_text(json.dumps(doc), encoding="utf-8")
    return labels, oof, doc


def _proposal(doc: dict, k: int) -> dict:
    """The out-of-fold proposal for row k, computed here from the file: every label at or
    above its threshold, and for the single-label kind the most probable one."""
    out = {}
    for h in HEADS:
        p, t, labs = doc["probs"][h][k], doc["heads"][h]["thresholds"], doc["heads"][h]["labels"]
        out[h] = [labs[int(np.argmax(p))]] if h == "kind" else sorted(l for l, q, th in zip(labs, p, t) if q >= th)
    return out


def test_suspect_tasks_carry_the_oof_proposal_current_labels_and_why(tmp_path, labels_and_oof):
    labels, oof, doc = labels_and_oof
    out = tmp_path / "suspects.json"
    r = run_cli("review", "suspects", "--labels", str(labels), "--oof", str(oof), "--format", "label-studio", "-o", str(out))
    assert r.returncode == 0, r.stderr
    tasks = json.loads(out.read_text(encoding="utf-8"))
    recs = {json.loads(l)["id"]: json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()}
    assert len(tasks) >= 5  # the flips make most of the 12 clauses suspects
    row = {i: k for k, i in enumerate(doc["ids"])}
    for t in tasks:
        cid = t["data"]["clause_id"]
        (pred,) = t["predictions"]
        got = {h: [] for h in HEADS} | {x["from_name"]: sorted(x["value"]["choices"]) for x in pred["result"]}
        assert got == _proposal(doc, row[cid]), cid
        assert pred["model_version"].startswith("oof:" + doc["data_hash"][:12])
        rec = recs[cid]
        assert t["data"]["current_kind"] == rec["kind"] and t["data"]["current_measure"] == ", ".join(rec["measure"])
        assert f"kind: {rec['kind']}" in t["data"]["current"]
        assert t["data"]["why"].startswith("疑似错标 suspect #") and ("labeled, but" in t["data"]["why"] or "not labeled, but" in t["data"]["why"])
    # The config beside the tasks displays those fields.
    cfg = ElementTree.parse(out.with_suffix(".config.xml")).getroot()
    shown = {e.get("value") for e in cfg.iter("Header")}
    assert {"$why", "$current"} <= shown

    # The JSONL queue and the tasks agree on the proposal.
    r = run_cli("review", "suspects", "--labels", str(labels), "--oof", str(oof), "-o", str(tmp_path / "s.jsonl"))
    queue = [json.loads(l) for l in (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [q["id"] for q in queue] == [t["data"]["clause_id"] for t in tasks]
    for q in queue:
        assert {h: [q["proposed"][h]] if h == "kind" else sorted(q["proposed"][h]) for h in HEADS} == _proposal(doc, row[q["id"]])


def test_one_label_under_review_changes_only_that_label(tmp_path, labels_and_oof):
    """--label measure:grant: the pre-annotation takes the proposal for grant only; accepting
    it must not change the heads and labels the task was not queued for."""
    labels, oof, doc = labels_and_oof
    out = tmp_path / "grant.json"
    r = run_cli("review", "suspects", "--labels", str(labels), "--oof", str(oof), "--label", "measure:grant", "--format", "label-studio", "-o", str(out))
    assert r.returncode == 0, r.stderr
    tasks = json.loads(out.read_text(encoding="utf-8"))
    recs = {json.loads(l)["id"]: json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()}
    row = {i: k for k, i in enumerate(doc["ids"])}
    assert tasks
    for t in tasks:
        cid = t["data"]["clause_id"]
        got = {h: [] for h in HEADS} | {x["from_name"]: sorted(x["value"]["choices"]) for x in t["predictions"][0]["result"]}
        rec = recs[cid]
        assert {h: got[h] for h in ("topic", "industry", "kind")} == {"topic": sorted(rec["topic"]), "industry": sorted(rec["industry"]), "kind": [rec["kind"]]}
        want_grant = "grant" in _proposal(doc, row[cid])["measure"]
        assert got["measure"] == sorted((set(rec["measure"]) - {"grant"}) | ({"grant"} if want_grant else set()))
        assert want_grant != ("grant" in rec["measure"])  # each task is queued for a disagreement on grant


def test_oof_on_other_labels_is_refused_unless_forced(tmp_path, labels_and_oof):
    labels, oof, doc = labels_and_oof
    recs = [json.loads(l) for l in labels.read_text(encoding="utf-8").splitlines()]
    recs[0]["measure"] = sorted(set(recs[0]["measure"]) ^ {"grant"})  # a label fixed since the oof run
    labels.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    out = tmp_path / "s.jsonl"
    r = run_cli("review", "suspects", "--labels", str(labels), "--oof", str(oof), "-o", str(out))
    assert r.returncode == 2 and not out.exists()
    assert "computed on other labels" in r.stderr and doc["data_hash"][:12] in r.stderr and "--force" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("review", "suspects", "--labels", str(labels), "--oof", str(oof), "--force", "-o", str(out))
    assert r.returncode == 0 and "warning:" in r.stderr and out.exists()
