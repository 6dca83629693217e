"""Calibrating the staleness verdict (issue 22) on the project's own time split.

Protocol (logistic regression only, on the word + char TF-IDF features without the lexicon
flags, for speed: six fits instead of the shipped ensemble's dozens; gates are left out for
the same reason):

* documents up to ``CUTOFF_YEAR`` (2022) are the training years. They are cut into 5
  grouped folds; each fold's documents are profiled by the model fitted on the other 4
  folds, against the reference profile of that model's own training clauses (what
  ``tagger-train profile`` writes for a bundle). Group **(a)**: those held-out documents,
  except the Zhejiang ones, which form group **(c)** (tourism, employment, emission rules
  and other non-AI county policies, listed in ``labels/documents/zhejiang/SOURCES.tsv``);
* group **(b)**: the 2023+ documents, profiled by the model fitted on every ≤2022 document;
* thresholds per label are tuned once on the out-of-fold probabilities of the ≤2022
  documents (the time split's nested thresholds; slightly optimistic for (a), equally
  for every document there);
* per document: the staleness score (OOV rate) and the other candidate statistics, so the
  choice of score is measured, not assumed (AUC of each for (a) against (b), with a bootstrap
  interval over documents).

The score's form is chosen on a **selection split** that holds no 2023+ document: the same
protocol with ``SELECTION_CUTOFF`` (2020) as the cutoff and the 2021-2022 documents as the later
group (:func:`choose_score`: a candidate replaces the current score only if it beats it there
with a bootstrap interval above 0.5). The <= 2022 / 2023+ comparison is then reported once.

The thresholds: ``watch`` = the 95th percentile of the (a) document scores (one document in
twenty that looks like the training data is flagged, the cost of a look); ``retrain`` = the
median of the (b) document scores, but never below the highest (a) score (a level held-out
documents of the training years never reached in the calibration, and that half of the
later documents do).
"""

from __future__ import annotations

import csv
import json
import pickle
import time
from pathlib import Path

import numpy as np

from tagger.model.drift import HEADS, SCORE, DriftProfiler, build_reference, verdict_for
from tagger.model.features import DEFAULT_USERDICT, Tokenizer
from tagger.model.gates import most_probable
from tagger.taxonomy import SINGLE_HEADS

from .data import document_years, load_dataset
from .evaluate import grouped_folds, tune_thresholds
from .experiments import CUTOFF_YEAR, FEATURE_SETS, fit_heads, time_split
from .models import fit_vectorizer

__all__ = ["calibrate", "choose_thresholds", "auc", "markdown", "zhejiang_documents"]

# The word and char TF-IDF blocks of the shipped features without the lexicon flags: the
# lexicon's char 1-7-gram counting made one fit take minutes on the shared 2-core machine.
# The score does not change (it reads the word block's vocabulary, the same with or without
# the flags); the accuracies are those of a slightly weaker model than the shipped one.
FEATURE_SET = "base"
N_FOLDS = 5
# The selection split: train <= 2020, held-out <= 2020 documents against 2021-2022 ones (no 2023+
# document): where the score's form is chosen, before the reported <= 2022 / 2023+ comparison.
SELECTION_CUTOFF = 2020


def auc(neg, pos) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    if not len(neg) or not len(pos):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(neg) * len(pos)))


def auc_interval(neg, pos, draws: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Bootstrap interval of :func:`auc` over documents (each group resampled with replacement)."""
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    if not len(neg) or not len(pos):
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    vals = [auc(rng.choice(neg, len(neg)), rng.choice(pos, len(pos))) for _ in range(draws)]
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


# The candidate per-document scores the selection split compares (issue 22: the 0.80 target per
# document). Each reads a document's clause counts (DocStats per clause) and the reference's
# long OOV rate (the Beta-prior centre of the shrunk rates); ``m`` is the prior's weight in words.
SHRINK_WORDS = (50, 200, 800)


def candidate_statistics(cs: dict, ref_long: float, model: bool = True) -> dict:
    c = {k: np.asarray(v, float) for k, v in cs.items()}
    words, long = c["words"].sum(), c["long"].sum()
    out = {
        "long_oov_rate": long / max(words, 1),
        "oov_rate": c["oov"].sum() / max(words, 1),
        "new_word_rate": c["new"].sum() / max(words, 1),
        "share_of_clauses_with_a_long_unseen_word": float((c["long"] > 0).mean()),
        "mean_clause_long_oov_rate": float(np.mean(np.where(c["words"] > 0, c["long"] / np.maximum(c["words"], 1), 0.0))),
        "long_oov_z": (long - words * ref_long) / max(np.sqrt(words * ref_long * (1 - ref_long)), 1e-9),
    }
    for m in SHRINK_WORDS:
        out[f"long_oov_rate_shrunk_{m}"] = (long + m * ref_long) / (words + m)
    if model:  # confidence and labels need the classifiers
        out["no_label_share"] = float(c["no_label"].mean())
        out["low_confidence"] = -float(c["conf_sum"].mean())
        out["rank_average_long_oov_no_label"] = None  # filled by compare_candidates (ranks need the pool)
    return out


def compare_candidates(rows: list[dict], ref_long: float) -> dict:
    """AUC (with its bootstrap interval) of every candidate for (a) against (b) of ``rows``."""
    model = bool(rows) and rows[0]["clause_accuracy"] is not None
    a = [candidate_statistics(r["clause_stats"], r.get("ref_long_oov_rate", ref_long), model) for r in rows if r["group"] == "a"]
    b = [candidate_statistics(r["clause_stats"], r.get("ref_long_oov_rate", ref_long), model) for r in rows if r["group"] == "b"]
    if a and "no_label_share" in a[0]:
        from scipy.stats import rankdata

        pool = a + b
        ranks = [rankdata([x[k] for x in pool]) / len(pool) for k in ("long_oov_rate", "no_label_share")]
        for i, x in enumerate(pool):
            x["rank_average_long_oov_no_label"] = float((ranks[0][i] + ranks[1][i]) / 2)
    return {"documents": {"a": len(a), "b": len(b)},
            "auc": {k: {"auc": round(auc([x[k] for x in a], [x[k] for x in b]), 4),
                        "interval": auc_interval([x[k] for x in a], [x[k] for x in b])} for k in (a[0] if a else {})}}


def choose_score(selection: dict, current: str = SCORE) -> str:
    """The selection rule, fixed before the reported comparison is looked at: a candidate replaces
    the current score only if it separates the selection split's groups (bootstrap interval above
    0.5) and beats the current score's AUC there; otherwise the current score stays."""
    auc_ = selection["auc"]
    best = max(auc_, key=lambda k: auc_[k]["auc"])
    if best != current and auc_[best]["interval"][0] > 0.5 and auc_[best]["auc"] > auc_[current]["auc"]:
        return best
    return current


def zhejiang_documents(documents_dir: Path) -> set[str]:
    path = Path(documents_dir) / "zhejiang" / "SOURCES.tsv"
    with open(path, encoding="utf-8") as fh:
        return {row["doc"] for row in csv.DictReader(fh, delimiter="\t") if row.get("doc")}


def _word_vocabulary(vec) -> set[str]:
    """The words with a column: the word block's unigrams (what the sparse tables hold)."""
    for name, tf in vec.union.transformer_list:
        if name == "word":
            return {t for t in tf.vocabulary_ if " " not in t}
    return set()


def _fit(texts, Y: dict, order, seed: int = 0):
    vec = fit_vectorizer(FEATURE_SETS[FEATURE_SET], texts, order)
    X = vec.transform(texts)
    return vec, {h: fit_heads("logreg", X, Y[h], None, seed) for h in HEADS}, X


def _probs(vec, models, texts=None, X=None) -> dict:
    X = vec.transform(texts) if X is None else X
    return {h: models[h].predict_proba(X).astype(np.float32) for h in HEADS}


def _profile(profiler: DriftProfiler, ids, docs, tokens, probs):
    acc = profiler.new_accumulator()
    profiler.add(acc, ids, docs, tokens, probs)
    return acc


def _decide(probs: dict, th: dict) -> dict:
    return {h: (most_probable(probs[h]) if h in SINGLE_HEADS else probs[h] >= th[h]).astype(int) for h in HEADS}


def _fits(ds, old, new, order, log, t0, seed: int = 0) -> dict:
    """The six logistic-regression fits and what the profiles need of them."""
    old_ds = ds.subset(old)
    folds = grouped_folds(old_ds, N_FOLDS, seed)
    oof = {h: np.zeros(old_ds.Y[h].shape, dtype=np.float32) for h in HEADS}
    parts = []
    for k, (tr, te) in enumerate(folds):
        vec, models, X = _fit([old_ds.texts[i] for i in tr], {h: old_ds.Y[h][tr] for h in HEADS}, order, seed)
        p_te = _probs(vec, models, [old_ds.texts[i] for i in te])
        for h in HEADS:
            oof[h][te] = p_te[h]
        parts.append({"train": old[tr], "test": old[te], "vocab": _word_vocabulary(vec),
                      "p_train": _probs(vec, models, X=X), "p_test": p_te, "group": "old"})
        log(f"  fold {k}: fitted on {len(tr)} clauses ({time.time() - t0:.0f}s)")
    vec, models, X = _fit(old_ds.texts, {h: old_ds.Y[h] for h in HEADS}, order, seed)
    parts.append({"train": old, "test": new, "vocab": _word_vocabulary(vec), "p_train": _probs(vec, models, X=X),
                  "p_test": _probs(vec, models, [ds.texts[i] for i in new]), "group": "new"})
    log(f"  model on every old document fitted ({time.time() - t0:.0f}s)")
    th = {h: tune_thresholds(old_ds.Y[h], oof[h]).astype(np.float32) for h in HEADS}
    return {"parts": parts, "thresholds": th}


def _vocabulary_fits(ds, old, new, order, log, t0, seed: int = 0) -> dict:
    """The same splits without classifiers: the score reads only the word vocabulary, which
    is the word vectoriser's alone (seconds instead of the classifiers' hour on a busy machine).
    Probabilities are left at zero: no accuracy, confidence or label-mix figures."""
    from .models import _closed_vocabulary, _tfidf

    cfg = FEATURE_SETS[FEATURE_SET]

    def vocab(texts):
        v = _tfidf("word", cfg.word_ngram, cfg, min_df=cfg.min_df, max_features=cfg.word_max_features).fit(texts)
        return {t for t in _closed_vocabulary(v, "word") if " " not in t}

    widths = {h: ds.Y[h].shape[1] for h in HEADS}
    zeros = lambda n: {h: np.zeros((n, w), dtype=np.float32) for h, w in widths.items()}  # noqa: E731
    old_ds = ds.subset(old)
    parts = [{"train": old[tr], "test": old[te], "vocab": vocab([old_ds.texts[i] for i in tr]), "p_train": zeros(len(tr)),
              "p_test": zeros(len(te)), "group": "old"} for tr, te in grouped_folds(old_ds, N_FOLDS, seed)]
    parts.append({"train": old, "test": new, "vocab": vocab(old_ds.texts), "p_train": zeros(len(old)), "p_test": zeros(len(new)),
                  "group": "new"})
    log(f"  vocabularies of {len(parts)} splits ({time.time() - t0:.0f}s)")
    return {"parts": parts, "thresholds": {h: np.full(w, 0.5, dtype=np.float32) for h, w in widths.items()}, "model": False}


def calibrate(labels_file: Path, taxonomy, documents_dir: Path, log=print, seed: int = 0, cache: Path | None = None,
              model: bool = True, cutoff: int = CUTOFF_YEAR, upto: int | None = None, rows_only: bool = False):
    """The calibration on the time split at ``cutoff``; ``upto``: leave out documents after that
    year (the selection split: cutoff 2020, upto 2022, never sees a 2023+ document)."""
    t0 = time.time()
    ds = load_dataset(labels_file, taxonomy)
    years_by_doc = document_years(documents_dir)
    if upto is not None:
        ds = ds.subset([i for i, d in enumerate(ds.docs) if (years_by_doc.get(d) or 0) <= upto])
    years = [years_by_doc.get(d) for d in ds.docs]
    zj = zhejiang_documents(documents_dir)
    ds.texts = Tokenizer(DEFAULT_USERDICT).batch(ds.texts)
    order = [(h, l) for h in HEADS for l in taxonomy.labels[h]]
    old, new = time_split(years, cutoff)
    log(f"{len(ds)} clauses; <= {cutoff}: {len(set(ds.docs[i] for i in old))} documents, later: "
        f"{len(set(ds.docs[i] for i in new))}; tokenised in {time.time() - t0:.0f}s")
    fits = None if model else _vocabulary_fits(ds, old, new, order, log, t0, seed)
    if model and cache and Path(cache).is_file():
        with open(cache, "rb") as fh:
            got = pickle.load(fh)
        fits = got["fits"] if got.get("key") == (ds.hash, FEATURE_SET, seed, cutoff, upto) else None
    if fits is None:
        fits = _fits(ds, old, new, order, log, t0, seed)
        if cache:
            with open(cache, "wb") as fh:
                pickle.dump({"key": (ds.hash, FEATURE_SET, seed, cutoff, upto), "fits": fits}, fh)
    th = fits["thresholds"]
    labels = {h: list(taxonomy.labels[h]) for h in HEADS}
    rows = []  # one per document: group, score and the other candidate statistics
    batch_rep = ref = None
    for part in fits["parts"]:
        tr, te = part["train"], part["test"]
        # The reference of this model: its own training clauses, as `tagger-train profile` does.
        base = DriftProfiler(part["vocab"], labels, th)
        ref_acc = _profile(base, [ds.ids[i] for i in tr], [ds.docs[i] for i in tr], [ds.texts[i] for i in tr], part["p_train"])
        ref = build_reference(base, ref_acc, {})
        prof = DriftProfiler(part["vocab"], labels, th, ref)
        dec = _decide(part["p_test"], th)
        by_doc: dict[str, list[int]] = {}
        for j, i in enumerate(te):
            by_doc.setdefault(ds.docs[i], []).append(j)
        for doc, js in by_doc.items():
            idx = te[js]
            p = {h: part["p_test"][h][js] for h in HEADS}
            cids = [ds.ids[i] for i in idx]
            # One accumulator entry per clause (the clause id as its "document"): the
            # document's clauses' own counts, for the statistics that read them.
            acc = _profile(prof, cids, cids, [ds.texts[i] for i in idx], p)
            rep = prof.report(acc, documents=False, top_terms=0)
            per_clause = [acc.docs[c] for c in cids]
            correct = np.mean([(dec[h][js] == ds.Y[h][idx]).all(axis=1) for h in HEADS], axis=0)
            group = "b" if part["group"] == "new" else "c" if doc in zj else "a"
            rows.append({
                "doc": doc, "group": group, "clauses": len(idx), "year": years_by_doc.get(doc), "words": rep["words"],
                "score": rep["score"], "oov_rate": rep["oov_rate"], "new_word_rate": rep["new_word_rate"],
                "long_oov_rate": rep["long_oov_rate"],
                "mean_confidence": rep["mean_confidence"], "no_label_share": rep["no_label_share"],
                **{f"js_mix_{h}": rep["heads"][h].get("js_label_mix", 0.0) for h in HEADS},
                **{f"js_conf_{h}": rep["heads"][h].get("js_confidence", 0.0) for h in HEADS},
                "clause_accuracy": correct.tolist() if model else None,
                "ref_long_oov_rate": ref["long_oov_rate"],
                "clause_stats": {k: [getattr(c, k) for c in per_clause] for k in ("words", "oov", "new", "long", "conf_sum", "no_label")},
            })
        if part["group"] == "new":
            # The unseen terms of all 2023+ clauses together, as one batch.
            batch = prof.new_accumulator()
            prof.add(batch, [ds.ids[i] for i in te], [ds.docs[i] for i in te], [ds.texts[i] for i in te], part["p_test"])
            batch_rep = prof.report(batch, documents=False, top_terms=30)
    if rows_only:
        return rows, ref
    res = summarise(rows)
    res["candidates"] = compare_candidates(rows, ref["long_oov_rate"])
    res["batch_2023"] = {k: batch_rep[k] for k in ("clauses", "oov_rate", "new_word_rate", "mean_confidence", "no_label_share", "unseen_terms")}
    res["batch_2023"]["js_label_mix"] = {h: batch_rep["heads"][h].get("js_label_mix") for h in HEADS}
    res["reference_oov_rate"] = ref["oov_rate"]
    what = f"logreg on the '{FEATURE_SET}' features, no gates" if model else "vocabulary only (no classifiers: no accuracy or confidence figures)"
    res["protocol"] = {"model": what, "cutoff_year": cutoff, "folds": N_FOLDS,
                       "score": SCORE, "seconds": round(time.time() - t0)}
    res["documents"] = [{k: v for k, v in r.items() if k not in ("clause_accuracy", "clause_stats")} for r in rows]
    return res


BATCH_DOCS = 10
BATCH_DRAWS = 1000


def batch_scores(rows: list[dict], k: int = BATCH_DOCS, draws: int = BATCH_DRAWS, seed: int = 0) -> np.ndarray:
    """Scores of batches of ``k`` documents drawn from ``rows`` (pooled over their words, as a
    ``tagger tag`` run pools them): what the verdict of a pipeline's batch sees."""
    rng = np.random.default_rng(seed)
    words = np.array([r["words"] for r in rows], float)
    hits = np.array([r["score"] * r["words"] for r in rows], float)
    k = min(k, len(rows))
    picks = np.array([rng.choice(len(rows), k, replace=False) for _ in range(draws)])
    return hits[picks].sum(axis=1) / np.maximum(words[picks].sum(axis=1), 1)


def choose_thresholds(a_rows: list[dict], b_rows: list[dict]) -> dict:
    """On batches of 10 documents: ``watch`` = the 95th percentile of (a) batches (one batch in
    twenty like the training data gets a look), ``retrain`` = the median of (b) batches but at
    least the highest (a) batch (no batch of the training years reached it; half the later ones do)."""
    a, b = batch_scores(a_rows), batch_scores(b_rows, seed=1)
    watch = float(np.quantile(a, 0.95))
    retrain = max(float(np.median(b)), float(a.max()))
    return {"watch": round(watch, 4), "retrain": round(max(retrain, watch + 1e-4), 4)}


def _dist(x) -> dict:
    x = np.asarray(x, float)
    if not len(x):
        return {"n": 0}
    q = np.quantile(x, [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {"n": int(len(x)), **{k: round(float(v), 4) for k, v in zip(("min", "p10", "p25", "median", "p75", "p90", "max"), q)}}


def summarise(rows: list[dict]) -> dict:
    by = {g: [r for r in rows if r["group"] == g] for g in "abc"}
    cands = ["score", "long_oov_rate", "oov_rate", "new_word_rate"]
    if rows[0]["clause_accuracy"] is not None:
        cands += ["mean_confidence", "no_label_share"] + [k for k in rows[0] if k.startswith("js_")]
    aucs = {}
    for c in cands:
        v = auc([r[c] for r in by["a"]], [r[c] for r in by["b"]])
        # A statistic where drift shows as a *lower* value (confidence) counts by its flip.
        aucs[c] = round(v, 4)
    th = choose_thresholds(by["a"], by["b"])
    aucs["score_interval"] = auc_interval([r["score"] for r in by["a"]], [r["score"] for r in by["b"]])
    aucs["score_batches_of_10"] = round(auc(batch_scores(by["a"]), batch_scores(by["b"], seed=1)), 4)
    groups = {}
    for g, rs in by.items():
        verdicts = [verdict_for(r["score"], th) for r in rs]
        bv = [verdict_for(x, th) for x in batch_scores(rs, seed=2)] if rs else []
        groups[g] = {"documents": len(rs), "clauses": sum(r["clauses"] for r in rs), "score": _dist([r["score"] for r in rs]),
                     "batch_verdicts": {v: bv.count(v) for v in ("ok", "watch", "retrain")},
                     "batch_score": _dist(batch_scores(rs, seed=2)) if rs else None,
                     "mean_confidence": _dist([r["mean_confidence"] for r in rs]) if rs and rs[0]["clause_accuracy"] is not None else None,
                     "verdicts": {v: verdicts.count(v) for v in ("ok", "watch", "retrain")}}
    out = {"auc_a_vs_b": aucs, "thresholds": th, "groups": groups}
    if rows[0]["clause_accuracy"] is None:
        return out
    def flagged_vs_not(rs) -> dict:
        flagged = [verdict_for(r["score"], th) != "ok" for r in rs]
        return {"flagged": _acc([x for r, f in zip(rs, flagged) if f for x in r["clause_accuracy"]]),
                "unflagged": _acc([x for r, f in zip(rs, flagged) if not f for x in r["clause_accuracy"]])}

    # The acceptance's own scope is the time split, i.e. groups a and b (c is another domain).
    return {
        **out,
        "accuracy": {**flagged_vs_not(rows), "by_group": {g: flagged_vs_not(rs) for g, rs in by.items()},
                     "time_split": flagged_vs_not([r for g in ("a", "b") for r in by.get(g, [])]),
                     "definition": "per clause, the share of the 4 heads whose decided label set equals the gold one; "
                                   "flagged = the clause's document has verdict watch or retrain"},
    }


def _acc(x) -> dict:
    return {"clauses": len(x), "accuracy": round(float(np.mean(x)), 4) if x else None}


GROUP_NAMES = {"a": "(a) held-out documents ≤ 2022", "b": "(b) documents 2023+", "c": "(c) Zhejiang non-AI documents (held out)"}


def markdown(res: dict) -> str:
    th = res["thresholds"]
    lines = [
        "## Drift: when the model goes stale",
        "",
        "Every `tagger tag` run, `/v1/documents` answer and `tagger drift` table carries a staleness verdict "
        "(`tagger/model/drift.py`): the **score** is the *long OOV rate*, the share of a batch's or document's words "
        "(tokens with a CJK ideograph or a Latin letter) that have no column in the model's word vocabulary and are at "
        f"least 3 characters long. `ok` below **{th['watch']}**, `watch` from there, `retrain` from **{th['retrain']}**. "
        "The bundle's `drift.json` holds the reference profile of the training clauses (label mix and confidence "
        "histogram per head, OOV rates, training counts of words without a column) and these thresholds.",
        "",
        f"Calibration (`python -m training.drift_calibration`; {res['protocol']['model']}): documents up to "
        f"{res['protocol']['cutoff_year']} in {res['protocol']['folds']} grouped folds, each profiled against the vocabulary "
        "fitted on the other folds; 2023+ documents against the vocabulary of all ≤ 2022 documents. Verdicts per document "
        f"and per batch of {BATCH_DOCS} documents drawn from the group ({BATCH_DRAWS} draws; a batch pools its words, as a "
        "`tagger tag` run does).",
        "",
        "| group | documents | clauses | document score p10 / median / p90 (max) | documents ok / watch / retrain "
        "| batch score p10 / median / p90 | batches ok / watch / retrain |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for g, s in res["groups"].items():
        d, v = s["score"], s["verdicts"]
        bd, bv = s["batch_score"], s["batch_verdicts"]
        lines.append(f"| {GROUP_NAMES[g]} | {s['documents']} | {s['clauses']} | {d.get('p10')} / {d.get('median')} / {d.get('p90')} "
                     f"({d.get('max')}) | {v['ok']} / {v['watch']} / {v['retrain']} | {bd.get('p10')} / {bd.get('median')} / "
                     f"{bd.get('p90')} | {bv['ok']} / {bv['watch']} / {bv['retrain']} |")
    a = res["auc_a_vs_b"]
    acc = res.get("accuracy")
    lines += [
        "",
        f"**AUC of the score separating (a) from (b), per document: {a['score']}** (95% bootstrap interval over documents "
        f"{a['score_interval'][0]}-{a['score_interval'][1]}; target 0.80: not reached; per batch of "
        f"{BATCH_DOCS} documents {a['score_batches_of_10']}). The other statistics "
        f"measured for the same job (AUC): plain OOV rate {a['oov_rate']}, share of words training never saw "
        f"{a['new_word_rate']}"
        + (f", mean confidence {a['mean_confidence']} ({'the 2023+ documents get the higher confidence: drift does not show in it' if a['mean_confidence'] > 0.5 else 'below 0.5: drift lowers it'}), share of clauses with no label "
           f"{a['no_label_share']}, Jensen-Shannon of the label mix " + ", ".join(f"{h} {a['js_mix_' + h]}" for h in HEADS)
           + "; of the confidence histogram " + ", ".join(f"{h} {a['js_conf_' + h]}" for h in HEADS) if acc else "")
        + ". New vocabulary comes as long compounds; the short words without a column are mostly ones every "
          "period has and the vocabulary cut.",
        "",
    ]
    sel = res.get("selection")
    if sel:
        def row(k, v):
            return f"{k} {v['auc']} ({v['interval'][0]}-{v['interval'][1]})"
        cand = res.get("candidates", {}).get("auc", {})
        lines += [
            f"How the score was chosen (selection split, no 2023+ document): the same protocol with the model fitted on "
            f"documents up to {sel['cutoff_year']} ({sel['documents']['a']} held-out documents of those years against "
            f"{sel['documents']['b']} documents of {sel['cutoff_year'] + 1}-{sel['upto_year']}); a candidate replaces the "
            f"current score only if its AUC there beats the current one's with a bootstrap interval above 0.5"
            + ("" if sel.get("model") else " (vocabulary only there: the confidence and label statistics depend on the "
               "classifiers, which the calibration's logistic model does not share with the shipped ensemble)")
            + ". AUC per document (95% interval): " + "; ".join(row(k, v) for k, v in sel["auc"].items())
            + f". Chosen: `{sel['chosen']}`"
            + (" (no candidate separates the selection split's groups: the 2021-2022 documents do not read as new "
               "to a <= 2020 model by any of these statistics, so the split cannot justify a change, and the score stays)"
               if sel["chosen"] == SCORE else "") + ".",
            "",
        ]
        if cand:
            lines += [
                "The same candidates on the reported comparison (a against b; measured once, after the choice, not "
                "used for it): " + "; ".join(row(k, v) for k, v in cand.items()) + "."
                + ("".join(f" `{k}` was not measured on the selection split, so this figure is post hoc and chose nothing"
                           + (" (its ranks are taken in the pool of the compared documents, not a score a single document has)"
                              if k.startswith("rank_average") else "") + "." for k in cand if k not in sel["auc"])),
                "",
            ]
    if acc and acc.get("time_split"):
        ts = acc["time_split"]
        lower = (ts["flagged"]["accuracy"] or 0) < (ts["unflagged"]["accuracy"] or 0)
        lines += [
            f"**On the time split (groups a and b), clauses in flagged documents are "
            f"{'less' if lower else '**not** less'} accurate: {ts['flagged']['accuracy']} ({ts['flagged']['clauses']} clauses) "
            f"against {ts['unflagged']['accuracy']} in the others ({ts['unflagged']['clauses']}).** "
            f"{'A small gap: the verdict says where the vocabulary is new, not how wrong the labels are.' if lower else ''}",
            "",
        ]
    if acc:
        lines += [
            f"With the Zhejiang documents too (groups a, b and c): {acc['flagged']['accuracy']} "
            f"({acc['flagged']['clauses']} clauses, flagged) against {acc['unflagged']['accuracy']} in the others "
            f"({acc['unflagged']['clauses']}). {acc['definition']}. Per group: "
            + "; ".join(f"{g} {v['flagged']['accuracy']} flagged / {v['unflagged']['accuracy']} not" for g, v in acc["by_group"].items()) + "."
            + (" Pooled over the three groups, flagged clauses are **not** less accurate: Simpson's "
               "paradox, the groups differ both in how often they are flagged and in how hard their clauses are (the "
               "Zhejiang non-AI documents are flagged for their foreign vocabulary while most of their clauses carry no "
               "label and are easy). The thresholds are not tuned on accuracy."
               if (acc["flagged"]["accuracy"] or 0) >= (acc["unflagged"]["accuracy"] or 0) else ""),
            "",
        ]
    else:
        lines += ["Accuracy of flagged against unflagged clauses: not measured in this run (vocabulary only; "
                  "`python -m training.drift_calibration --summary` with the classifiers measures it).", ""]
    lines += [
        f"Thresholds, set on batches (a pipeline's unit): `watch` = the 95th percentile of the (a) batch scores (one "
        f"batch in twenty like the training data gets a look); `retrain` = the median (b) batch score, but never below the "
        f"highest (a) batch score: a level no batch of the training years reached and half the later batches do. A single "
        f"document is noisier (a few dozen clauses), so more documents than batches of the training years are flagged: "
        f"read a document's verdict as \"look here\", a batch's as the decision. The plain OOV rate of the training "
        f"clauses themselves is {res['reference_oov_rate']} (in-sample).",
        "",
        f"Top unseen terms of all 2023+ clauses under the ≤ 2022 model (found by the code: most documents, then count; "
        f"batch OOV rate {res['batch_2023']['oov_rate']}):",
        "",
        ", ".join(f"{t['term']} ({t['count']} in {t['documents']} docs)" for t in res["batch_2023"]["unseen_terms"][:25]),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import sys

    from tagger.config import get_settings
    from tagger.jsonio import atomic_writer
    from tagger.taxonomy import load_taxonomy

    p = argparse.ArgumentParser(prog="python -m training.drift_calibration", description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write the full result (per-document rows included) here")
    p.add_argument("--markdown", help="write the model-card section here (default: stdout)")
    p.add_argument("--summary", action="store_true", help="write training/drift_calibration.json and .md (what bundles are profiled with)")
    p.add_argument("--cache", help="keep the fits in this pickle and reuse them while the labels are unchanged")
    p.add_argument("--vocabulary-only", action="store_true", help="no classifiers: the score and thresholds only (seconds, not an hour)")
    p.add_argument("--selection-vocabulary-only", action="store_true",
                   help="the selection split without classifiers (its OOV candidates only: minutes, not an hour)")
    p.add_argument("--selection-cache", help="as --cache, for the selection split's fits")
    a = p.parse_args(argv)
    st = get_settings()
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    tax = load_taxonomy(st.taxonomy_file)
    # The selection split first (never sees a 2023+ document): it alone chooses the score.
    sel_rows, sel_ref = calibrate(st.clauses_file, tax, st.documents_dir, log=log,
                                  model=not (a.vocabulary_only or a.selection_vocabulary_only),
                                  cache=Path(a.selection_cache) if a.selection_cache else None,
                                  cutoff=SELECTION_CUTOFF, upto=CUTOFF_YEAR, rows_only=True)
    selection = compare_candidates(sel_rows, sel_ref["long_oov_rate"])
    selection.update(cutoff_year=SELECTION_CUTOFF, upto_year=CUTOFF_YEAR, chosen=choose_score(selection),
                     model=sel_rows[0]["clause_accuracy"] is not None)
    if selection["chosen"] != SCORE:
        log(f"the selection split prefers {selection['chosen']} to {SCORE}: drift.py's score has to follow before thresholds are set")
    res = calibrate(st.clauses_file, tax, st.documents_dir, log=log, cache=Path(a.cache) if a.cache else None, model=not a.vocabulary_only)
    res["selection"] = selection
    md = markdown(res)
    if a.json:
        with atomic_writer(Path(a.json)) as fh:
            json.dump(res, fh, ensure_ascii=False, indent=1)
    if a.markdown:
        with atomic_writer(Path(a.markdown)) as fh:
            fh.write(md)
    if a.summary:
        from .drift_profile import CALIBRATION_FILE, CALIBRATION_MD

        with atomic_writer(CALIBRATION_FILE) as fh:
            json.dump({k: v for k, v in res.items() if k != "documents"}, fh, ensure_ascii=False, indent=1)
        with atomic_writer(CALIBRATION_MD) as fh:
            fh.write(md)
    if not a.markdown and not a.summary:
        print(md)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
