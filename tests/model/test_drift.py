"""Drift profile (issue 22): real bundle, real corpus text, real SQLite store, the CLI as a subprocess."""

import json
import os
import shutil

import numpy as np
import pytest

from tagger.model.drift import DRIFT_FILE, NO_REFERENCE, DriftProfiler, is_word, js_divergence, verdict_for
from tagger.model.inference import Tagger

from ..conftest import DOCS, ROOT, run_cli
from ..drift_bundle import BUNDLE, FOREIGN, profiled_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return profiled_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def tagger(bundle):
    return Tagger(bundle)


def _profile(tagger, texts, ids=None, doc="d"):
    prof = DriftProfiler.for_tagger(tagger)
    acc = prof.new_accumulator()
    tokens, probs, _ = tagger.predict_detailed(texts)
    ids = ids or [f"c{i}" for i in range(len(texts))]
    rates = prof.add(acc, ids, [doc] * len(texts), tokens, probs)
    return prof, acc, rates


def _corpus_texts(corpus_clauses, doc_id):
    return [c["text"] if isinstance(c, dict) else c.text for d, c in corpus_clauses if d.id == doc_id]


def test_words_exclude_numbers_punctuation_and_pua_markers(tagger):
    assert is_word("大模型") and is_word("AI") and is_word("5G")
    assert not is_word("2023") and not is_word("，") and not is_word("%")
    assert not is_word("\ue000") and not is_word("\ue0ff") and not is_word("\ue001大")
    text = "对新引进的人工智能企业，按实际租金的50%给予三年房租补贴。"
    marked = "\ue010" + text[:9] + "\ue011\ue0ff" + text[9:] + "\ue020"
    _, plain, _ = _profile(tagger, [text])
    _, with_markers, _ = _profile(tagger, [marked])
    # The markers are neither words nor unseen words: same counts, no marker among the terms.
    assert (with_markers.words, with_markers.oov) == (plain.words, plain.oov) and plain.words >= 8
    assert not any("\ue000" <= ch <= "\ue0ff" for t in with_markers.terms for ch in t)


def test_reference_is_named_in_the_manifest_with_its_hash(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    ref = json.loads((bundle / DRIFT_FILE).read_text(encoding="utf-8"))
    assert manifest["drift"]["file"] == DRIFT_FILE and len(manifest["drift"]["sha256"]) == 64
    assert ref["clauses"] == manifest["training_data"]["n_clauses"]
    assert ref["score"] == "long_oov_rate" and 0 < ref["long_oov_rate"] < ref["thresholds"]["watch"] < ref["thresholds"]["retrain"]
    assert ref["long_oov_rate"] < ref["oov_rate"] < 1
    assert set(ref["heads"]) == {"topic", "measure", "industry", "kind"}
    # training counts only of words without a column (what names a term as new or cut)
    assert ref["train_counts"] and not set(ref["train_counts"]) & DriftProfiler.for_tagger(Tagger(bundle)).vocabulary


def test_policy_text_is_ok_and_foreign_text_is_retrain(tagger, corpus_clauses):
    texts = _corpus_texts(corpus_clauses, "miit-2018-ai-industry-three-year-action-plan")
    prof, acc, _ = _profile(tagger, texts)
    rep = prof.report(acc)
    th = rep["reference"]["thresholds"]
    assert rep["verdict"] == "ok" and rep["score"] < th["watch"], rep["score"]
    prof, acc, rates = _profile(tagger, FOREIGN, doc="recipes")
    rep = prof.report(acc)
    assert rep["verdict"] == "retrain" and rep["score"] >= th["retrain"], rep["score"]
    assert np.nanmean(rates) >= th["retrain"]
    terms = {t["term"]: t for t in rep["unseen_terms"]}
    # recurring unseen words, new to training, with the clauses that hold them
    assert {"鸡蛋", "主队"} <= set(terms)
    assert terms["鸡蛋"]["train_count"] == 0 and terms["鸡蛋"]["examples"][0] in {"c0", "c1"}
    assert rep["documents"]["recipes"]["verdict"] == "retrain"
    # The foreign batch's label mix moves away from the training mix.
    assert rep["heads"]["kind"]["js_label_mix"] > 0


def test_verdict_is_on_the_threshold_side_of_the_score():
    th = {"watch": 0.2, "retrain": 0.3}
    assert [verdict_for(s, th) for s in (0.0, 0.1999, 0.2, 0.2999, 0.3, 0.9)] == ["ok", "ok", "watch", "watch", "retrain", "retrain"]
    assert verdict_for(0.5, None) == NO_REFERENCE
    assert js_divergence([1, 0], [1, 0]) == 0 and abs(js_divergence([1, 0], [0, 1]) - 1) < 1e-9


def test_bundle_without_or_with_a_damaged_reference_says_so_and_still_profiles(tmp_path, corpus_clauses):
    # The committed bundle without its reference: an older bundle.
    bare = tmp_path / "bare"
    shutil.copytree(BUNDLE, bare)
    (bare / DRIFT_FILE).unlink(missing_ok=True)
    man = json.loads((bare / "manifest.json").read_text(encoding="utf-8"))
    man.pop("drift", None)
    (bare / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    texts = _corpus_texts(corpus_clauses, "miit-2018-ai-industry-three-year-action-plan")[:40]
    prof, acc, _ = _profile(Tagger(bare), texts)
    rep = prof.report(acc)
    assert rep["verdict"] == NO_REFERENCE and "no drift reference" in rep["reference"]
    assert 0 < rep["oov_rate"] < 1 and rep["documents"]["d"]["verdict"] == NO_REFERENCE
    dst = tmp_path / "b"
    shutil.copytree(BUNDLE, dst)
    man = json.loads((dst / "manifest.json").read_text(encoding="utf-8"))
    man["drift"] = {"file": DRIFT_FILE, "sha256": "0" * 64}
    (dst / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    (dst / DRIFT_FILE).write_text("{}", encoding="utf-8")
    prof, acc, _ = _profile(Tagger(dst), texts)
    assert prof.report(acc)["reference"] == f"{DRIFT_FILE} does not match the hash in the manifest"


def test_batches_merge_to_the_same_report_as_one_pass(tagger, corpus_clauses):
    texts = _corpus_texts(corpus_clauses, "state-council-2017-ai-development-plan")[:120] + FOREIGN
    prof, one, _ = _profile(tagger, texts)
    tokens, probs, _ = tagger.predict_detailed(texts)
    parts = []
    for sl in (slice(0, 50), slice(50, None)):
        acc = prof.new_accumulator()
        prof.add(acc, [f"c{i}" for i in range(len(texts))][sl], ["d"] * len(texts[sl]), tokens[sl], {h: p[sl] for h, p in probs.items()})
        parts.append(acc)
    merged, whole = prof.report(parts[0].merge(parts[1])), prof.report(one)
    # Examples are a term's first and last clause per batch: which ones depends on the cut.
    for rep in (merged, whole):
        for t in rep["unseen_terms"]:
            ex = t.pop("examples")
            assert 1 <= len(ex) <= 3 and all(t["term"] in tokens[int(c[1:])].split(" ") for c in ex)
    assert merged == whole and merged["unseen_terms"]


def test_tag_on_the_committed_corpus_says_ok_and_writes_the_report(bundle, tmp_path):
    out, rep_path = tmp_path / "out.jsonl", tmp_path / "drift.json"
    r = run_cli("tag", str(DOCS), "--model", str(bundle), "-o", str(out), "--drift-report", str(rep_path))
    assert r.returncode == 0, r.stderr
    summary = r.stderr.strip().splitlines()[-1]
    assert "drift: ok (score" in summary, summary
    rep = json.loads(rep_path.read_text(encoding="utf-8"))
    n = sum(1 for _ in out.open(encoding="utf-8"))
    assert rep["verdict"] == "ok" and rep["clauses"] == n
    assert len(rep["documents"]) > 300 and all(d["verdict"] in ("ok", "watch", "retrain") for d in rep["documents"].values())


def test_tag_of_foreign_text_names_retrain_and_the_terms(bundle, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"f{i}", "doc": "food", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(FOREIGN)),
                   encoding="utf-8")
    r = run_cli("tag", str(src), "--model", str(bundle), "--workers", "2", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(FOREIGN)
    summary = r.stderr.strip().splitlines()[-1]
    assert "drift: retrain (score" in summary and "top unseen terms:" in summary, summary


def test_store_keeps_document_drift_and_old_databases_gain_the_columns(bundle, tmp_path):
    import sqlite3

    from tagger.ingest.documents import Document, load_documents
    from tagger.store.db import Store, ingest_documents

    path = tmp_path / "old.db"
    # A store from before drift: the documents table without its columns.
    Store(f"sqlite:///{path}")
    con = sqlite3.connect(path)
    for col in ("oov_rate", "mean_confidence", "drift_score", "drift_verdict"):
        con.execute(f"DROP INDEX IF EXISTS ix_documents_{col}")
        con.execute(f"ALTER TABLE documents DROP COLUMN {col}")
    con.commit()
    con.close()
    store = Store(f"sqlite:///{path}")
    tagger = Tagger(bundle)
    docs = load_documents(DOCS / "miit-2018-ai-industry-three-year-action-plan.txt")
    foreign = Document(id="recipes", text="\n".join(FOREIGN), title="家常菜", region="浙江省杭州市")
    ingest_documents(store, tagger, [*docs, foreign])
    by_id = {d["id"]: d for d in store.documents()}
    policy = by_id["miit-2018-ai-industry-three-year-action-plan"]
    assert policy["drift_verdict"] == "ok" and 0 < policy["oov_rate"] < 0.2 and 0 < policy["mean_confidence"] <= 1
    assert by_id["recipes"]["drift_verdict"] == "retrain" and 0 < by_id["recipes"]["drift_score"] < by_id["recipes"]["oov_rate"]

    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    r = run_cli("drift", "--database-url", f"sqlite:///{path}", "--model", str(bundle), "--by", "region", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["region"]: row for row in json.loads(r.stdout)["region"]}
    assert rows["浙江省"]["verdict"] == "retrain" and rows["浙江省"]["flagged"] == 1
    assert rows["全国"]["verdict"] == "ok"
    png = tmp_path / "drift.png"
    r = run_cli("drift", "--database-url", f"sqlite:///{path}", "--model", str(bundle), "--chart", str(png), env=env)
    assert r.returncode == 0 and "verdict" in r.stdout and "浙江省" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_review_new_terms_puts_clauses_with_unseen_terms_first(bundle, tmp_path, corpus_clauses):
    src = tmp_path / "pool.jsonl"
    policy = _corpus_texts(corpus_clauses, "state-council-2017-ai-development-plan")[:30]
    recs = [{"id": f"p{i}", "doc": "p", "text": t} for i, t in enumerate(policy)] + [{"id": f"f{i}", "doc": "f", "text": t} for i, t in enumerate(FOREIGN)]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    r = run_cli("review", "uncertain", str(src), "--model", str(bundle), "--include-labeled", "--new-terms", "5", "--n", "40")
    assert r.returncode == 0, r.stderr
    out = [json.loads(l) for l in r.stdout.splitlines()]
    first = [o for o in out if o["new_terms"]]
    assert first and out[: len(first)] == first  # every clause with a top term before any without
    assert {o["id"] for o in first} <= {f"f{i}" for i in range(len(FOREIGN))} | {f"p{i}" for i in range(30)}
    assert first[0]["id"].startswith("f")


@pytest.mark.parametrize("compiled", [True, False])
def test_profile_from_the_sparse_word_ids_equals_the_token_pass(bundle, corpus_clauses, compiled):
    """Tagging hands the profile the word ids its scoring pass looked up; the report (terms,
    examples, documents) is the one the profile's own pass over the token strings gives."""
    t = Tagger(bundle, self_test=False)
    t.sparse.compiled = compiled and t.sparse.compiled
    prof = DriftProfiler.for_tagger(t)
    assert prof._block is t.sparse.word_block
    texts = [c["text"] if isinstance(c, dict) else c.text for _, c in corpus_clauses][:700] + FOREIGN + ["人工智能\x01大模型 低空经济"]
    ids = [f"c{i % 650}" for i in range(len(texts))]  # repeated ids too
    docs = [f"d{i // 37}" for i in range(len(texts))]
    reports = []
    for use_words in (False, True):
        acc = prof.new_accumulator()
        for a in range(0, len(texts), 300):
            keep = {}
            tokens, probs, _ = t.predict_detailed(texts[a:a + 300], keep)
            rates = prof.add(acc, ids[a:a + 300], docs[a:a + 300], tokens, probs, words=keep["words"] if use_words else None)
            assert rates.shape == (len(tokens),)
        reports.append(json.dumps(prof.report(acc), ensure_ascii=False))
    assert reports[0] == reports[1] and json.loads(reports[1])["unseen_terms"]
