"""Honest estimates of accuracy on unseen documents, and the table of model variants.

Two splits, both by document:

* **grouped CV** — 5 folds over documents (seeded shuffle). Thresholds for fold k are
  tuned on the out-of-fold predictions of the *other* folds (cross-fitted), never on the
  predictions they are scored on.
* **time split** — train on documents up to ``CUTOFF_YEAR`` (2022), test on documents
  from 2023 on. Thresholds are tuned on an inner grouped CV inside the training part
  (nested), so nothing about the test documents chooses them.

A *variant* is a feature set, a model per head and optional sample weights. Fits are
cached by (feature set, model, weights), so an average of two models costs no extra fit.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from tagger.model.gates import apply_gate, most_probable
from tagger.taxonomy import HEADS, KIND, MULTI_HEADS, SINGLE_HEADS

from .data import Dataset
from .evaluate import grouped_folds, keyword_predict, load_keyword_rules, scores, tune_thresholds
from .models import FeatureConfig, build_classifier, fit_vectorizer

__all__ = [
    "CUTOFF_YEAR",
    "FEATURE_SETS",
    "REQUIRED_TOPICS",
    "ModelSpec",
    "Evaluator",
    "fit_heads",
    "recency_weights",
    "time_split",
    "VARIANTS",
]

CUTOFF_YEAR = 2022
MODEL_KINDS = ("logreg", "lgbm", "nb_logreg")
# The four topics the product brief requires; the external evaluation reports macro-F1 over these.
REQUIRED_TOPICS = ("talent", "finance", "platforms", "applications")
HEADLINE_MEASURES = ("grant", "rent_subsidy", "tax_relief")

FEATURE_SETS = {
    "base": FeatureConfig(),
    "char4": FeatureConfig(char_ngram=(1, 4)),
    "lexicon": FeatureConfig(lexicon=True),
    "char4+lexicon": FeatureConfig(char_ngram=(1, 4), lexicon=True),
    "lexicon+structure": FeatureConfig(lexicon=True, structure=True),
}


@dataclass(frozen=True)
class ModelSpec:
    """How one head is modelled: ``logreg``, ``lgbm``, ``nb_logreg`` or ``avg:<a>+<b>``."""

    model: str = "logreg"
    recency: bool = False

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.model[4:].split("+")) if self.model.startswith("avg:") else (self.model,)

    def label(self) -> str:
        return self.model + ("@recency" if self.recency else "")

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """``logreg``, ``lgbm``, ``nb_logreg``, ``avg:nb_logreg+lgbm``; ``@recency`` adds weights."""
        model, _, opt = text.strip().partition("@")
        spec = cls(model, recency=opt == "recency")
        bad = [p for p in spec.parts if p not in MODEL_KINDS] + ([opt] if opt not in ("", "recency") else [])
        if bad:
            raise ValueError(f"unknown model spec {text!r} (kinds: {', '.join(MODEL_KINDS)}; avg:a+b; @recency)")
        return spec


def _dur(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def recency_weights(years: list[int | None]) -> np.ndarray:
    """Favour recent documents: 1 up to 2019, 1.5 for 2020-2022, 2 from 2023 (unknown: 1)."""
    return np.array([1.0 if y is None or y <= 2019 else 1.5 if y <= 2022 else 2.0 for y in years])


def cross_fitted(Y: np.ndarray, P: np.ndarray, fold_of: np.ndarray) -> np.ndarray:
    """Decisions for rows scored out of fold: each fold's probabilities at thresholds tuned
    on the other folds' rows (no row's own label sets its threshold)."""
    pred = np.zeros_like(Y)
    for k in np.unique(fold_of):
        mine = fold_of == k
        th = tune_thresholds(Y[~mine], P[~mine])
        pred[mine] = (P[mine] >= th).astype(int)
    return pred


def time_split(years: list[int | None], cutoff: int = CUTOFF_YEAR) -> tuple[np.ndarray, np.ndarray]:
    """Clause indices of documents up to ``cutoff`` and after it.

    A document without a year counts as old: in this corpus those are the undated parts
    of the 2022 pilot-zone compilation and county policies from before 2021.
    """
    new = np.array([y is not None and y > cutoff for y in years])
    return np.flatnonzero(~new), np.flatnonzero(new)


def _nb_ratio(X, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Log-count ratio of Wang & Manning's NBSVM, on binarised features."""
    Xb = (X > 0).astype(np.float64)
    p = alpha + np.asarray(Xb[y == 1].sum(axis=0)).ravel()
    q = alpha + np.asarray(Xb[y == 0].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


def fit_heads(kind: str, X, Y: np.ndarray, weights: np.ndarray | None = None, seed: int = 0):
    """A fitted one-vs-rest classifier for one head (an sklearn object skl2onnx converts).

    ``nb_logreg`` fits each label on NB-scaled features and folds the ratio back into the
    coefficients, so the exported model is a plain logistic regression on the same features.
    """
    base_kind = "logreg" if kind == "nb_logreg" else kind
    clf = build_classifier(base_kind, seed)
    with warnings.catch_warnings():
        # A label absent from a training fold gets a constant predictor: expected.
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(X, Y)
        if kind == "nb_logreg" or weights is not None:
            for j, est in enumerate(clf.estimators_):
                if not hasattr(est, "coef_") and not hasattr(est, "booster_"):
                    continue  # constant predictor
                y = Y[:, j]
                if kind == "nb_logreg":
                    r = _nb_ratio(X, y)
                    est.fit(X @ sparse.diags(r), y, sample_weight=weights)
                    est.coef_ = est.coef_ * r
                else:
                    est.fit(X, y, sample_weight=weights)
    return clf


class Evaluator:
    """Runs and caches fits of (feature set, model, recency) on the two splits."""

    def __init__(self, ds: Dataset, years: list[int | None], n_splits: int = 5, inner_splits: int = 4, seed: int = 0, log=print):
        self.ds, self.years, self.seed, self.log = ds, years, seed, log
        self.texts = np.array(ds.texts, dtype=object)
        self.weights = recency_weights(years)
        self.folds = grouped_folds(ds, n_splits, seed)
        self.fold_of = np.empty(len(ds), dtype=int)
        for k, (_, te) in enumerate(self.folds):
            self.fold_of[te] = k
        self.time_train, self.time_test = time_split(years)
        tr_ds = ds.subset(self.time_train)
        self.inner = [(self.time_train[a], self.time_train[b]) for a, b in grouped_folds(tr_ds, inner_splits, seed)] if len(set(tr_ds.docs)) >= inner_splits else []
        self._X: dict = {}
        self._P: dict = {}
        # Kind gates under evaluation (tagger.model.gates): head -> {"by", "mode", "allowed"};
        # the gate reads the kind head's probabilities of ``kind_spec`` on the same split.
        self.gates: dict[str, dict] = {}
        self.kind_spec: ModelSpec | None = None
        # The heads fitted per split (a probe may fit fewer: training/probe_time_split.py).
        self.heads: tuple[str, ...] = HEADS
        # Progress: fits planned (set by plan()), done, and their time, for the ETA lines.
        self.fits_planned = 0
        self.fits_done = 0
        self.fit_seconds = 0.0

    def plan(self, n_models: int) -> None:
        """Announce how many (model, recency) fits over all splits the run will make."""
        self.fits_planned = n_models * sum(1 for _ in self._splits())

    def set_gate(self, head: str, mode: str, allowed: dict | None = None) -> None:
        if mode == "none":
            self.gates.pop(head, None)
        else:
            self.gates[head] = {"by": KIND, "mode": mode, "allowed": {k: list(v) for k, v in (allowed or {}).items()}}

    # -- fits ---------------------------------------------------------------------------
    def _features(self, fset: str, key: str, tr: np.ndarray, te: np.ndarray):
        if (fset, key) not in self._X:
            order = [(h, l) for h in HEADS for l in self.ds.taxonomy.labels[h]]
            vec = fit_vectorizer(FEATURE_SETS[fset], self.texts[tr], order)
            self._X[(fset, key)] = (vec.transform(self.texts[tr]), vec.transform(self.texts[te]))
        return self._X[(fset, key)]

    def _splits(self):
        yield from ((f"cv{k}", tr, te) for k, (tr, te) in enumerate(self.folds))
        if len(self.time_test):
            yield "time", self.time_train, self.time_test
            yield from ((f"inner{k}", tr, te) for k, (tr, te) in enumerate(self.inner))

    def probs(self, fset: str, kind: str, recency: bool) -> dict[str, dict[str, np.ndarray]]:
        """split key -> head -> probabilities on that split's test rows."""
        key = (fset, kind, recency)
        if key not in self._P:
            t0 = time.time()
            out = {}
            splits = list(self._splits())
            for i, (name, tr, te) in enumerate(splits, 1):
                t1 = time.time()
                Xtr, Xte = self._features(fset, name, tr, te)
                w = self.weights[tr] if recency else None
                out[name] = {h: fit_heads(kind, Xtr, self.ds.Y[h][tr], w, self.seed).predict_proba(Xte) for h in self.heads}
                self.fits_done += 1
                self.fit_seconds += time.time() - t1
                self.log(self._progress(f"{fset}/{kind}{' +recency' if recency else ''}", i, len(splits), time.time() - t0))
            self._P[key] = out
            self.log(f"  fitted {fset}/{kind}{' +recency' if recency else ''} on {len(out)} splits in {time.time() - t0:.0f}s")
        return self._P[key]

    def _progress(self, stage: str, i: int, n: int, elapsed: float) -> str:
        """One line per fitted split: the stage's ETA, and the run's while fits remain planned
        (a long run must not look hung: the issue saw 43 silent minutes)."""
        msg = f"  {stage}: split {i}/{n} in {_dur(elapsed)}, stage ETA {_dur(elapsed / i * (n - i))}"
        left = self.fits_planned - self.fits_done
        if left > 0:
            msg += f"; run: {self.fits_done}/{self.fits_planned} fits, ETA {_dur(self.fit_seconds / self.fits_done * left)}"
        return msg

    def spec_probs(self, fset: str, spec: ModelSpec, head: str) -> dict[str, np.ndarray]:
        parts = [self.probs(fset, k, spec.recency) for k in spec.parts]
        out = {name: np.mean([p[name][head] for p in parts], axis=0) for name in parts[0]}
        gate = self.gates.get(head)
        if gate and self.kind_spec is not None:
            kp = self.spec_probs(fset, self.kind_spec, gate["by"])
            labels = self.ds.taxonomy.labels
            out = {name: apply_gate(p, kp[name], labels[gate["by"]], labels[head], gate) for name, p in out.items()}
        return out

    # -- scores ---------------------------------------------------------------------------
    def oof(self, fset: str, spec: ModelSpec, head: str) -> np.ndarray:
        P = self.spec_probs(fset, spec, head)
        out = np.zeros(self.ds.Y[head].shape)
        for k, (_, te) in enumerate(self.folds):
            out[te] = P[f"cv{k}"]
        return out

    def grouped_pred(self, fset: str, spec: ModelSpec, head: str) -> np.ndarray:
        """Out-of-fold decisions: argmax for a single-label head, else each fold's
        probabilities at thresholds tuned on the other folds (cross-fitted)."""
        Y, oof = self.ds.Y[head], self.oof(fset, spec, head)
        if head in SINGLE_HEADS:
            return most_probable(oof).astype(int)
        return cross_fitted(Y, oof, self.fold_of)

    def grouped(self, fset: str, spec: ModelSpec, head: str) -> dict:
        """Grouped CV with cross-fitted thresholds, plus the old optimistic figure."""
        Y = self.ds.Y[head]
        m = self._scores(Y, self.grouped_pred(fset, spec, head), head)
        if head in SINGLE_HEADS:  # no thresholds: nothing to flatter
            m["optimistic"] = m.copy()
            return m
        oof = self.oof(fset, spec, head)
        m["optimistic"] = self._scores(Y, (oof >= tune_thresholds(Y, oof)).astype(int), head)
        return m

    def time_pred(self, fset: str, spec: ModelSpec, head: str) -> np.ndarray | None:
        """Decisions on the time split's test rows (thresholds from the nested inner CV)."""
        if not len(self.time_test):
            return None
        P, Y = self.spec_probs(fset, spec, head), self.ds.Y[head]
        if head in SINGLE_HEADS:
            return most_probable(P["time"]).astype(int)
        if self.inner:
            inner_idx = np.concatenate([te for _, te in self.inner])
            inner_p = np.concatenate([P[f"inner{k}"] for k in range(len(self.inner))])
            th = tune_thresholds(Y[inner_idx], inner_p)
        else:
            th = np.full(Y.shape[1], 0.5)
        return (P["time"] >= th).astype(int)

    def inner_scores(self, fset: str, spec: ModelSpec, head: str) -> dict | None:
        """Grouped CV inside the time split's training part (documents up to the cutoff only):
        each inner fold's held-out rows at thresholds tuned on the other inner folds. The
        figure that chooses models and gates, so that no document of the time split's test
        part chooses anything and its figure stays a held-out one."""
        if not self.inner or not len(self.time_test):  # no time split: the inner folds are not fitted
            return None
        P, Y = self.spec_probs(fset, spec, head), self.ds.Y[head]
        idx = np.concatenate([te for _, te in self.inner])
        probs = np.concatenate([P[f"inner{k}"] for k in range(len(self.inner))])
        if head in SINGLE_HEADS:
            pred = most_probable(probs).astype(int)
        else:
            pred = cross_fitted(Y[idx], probs, np.concatenate([np.full(len(te), k) for k, (_, te) in enumerate(self.inner)]))
        return self._scores(Y[idx], pred, head)

    def timesplit(self, fset: str, spec: ModelSpec, head: str) -> dict | None:
        pred = self.time_pred(fset, spec, head)
        return None if pred is None else self._scores(self.ds.Y[head][self.time_test], pred, head)

    def _scores(self, Y, pred, head) -> dict:
        labels = self.ds.taxonomy.labels[head]
        s = scores(Y, pred, labels)
        if head == "topic":
            s["macro_f1_required"] = round(float(np.mean([s["labels"][l]["f1"] for l in REQUIRED_TOPICS if l in s["labels"]])), 4)
        if head == "measure":
            s["macro_f1_headline"] = round(float(np.mean([s["labels"][l]["f1"] for l in HEADLINE_MEASURES if l in s["labels"]])), 4)
        if head in SINGLE_HEADS:
            t, p = np.argmax(Y, axis=1), np.argmax(pred, axis=1)
            s["accuracy"] = round(float((t == p).mean()), 4) if len(t) else 0.0
            # rows: the labeled kind, columns: the predicted kind
            s["confusion"] = {a: {b: int(((t == i) & (p == j)).sum()) for j, b in enumerate(labels)} for i, a in enumerate(labels)}
        return s

    def keyword(self) -> dict:
        rules = load_keyword_rules()
        out = {}
        for split, idx in (("grouped", np.arange(len(self.ds))), ("time", self.time_test)):
            texts = [self.ds.texts[i].replace(" ", "") for i in idx]
            out[split] = {
                h: self._scores(self.ds.Y[h][idx], self._keyword_pred(texts, rules, h), h) for h in HEADS
            } if len(idx) else None
        return out

    # A single-label head's word list: the first of these kinds whose words occur, else the first
    # label of the taxonomy (provision): the more specific sentence types are checked first.
    KIND_PRIORITY = ("title", "procedure", "condition", "target", "principle")

    def _keyword_pred(self, texts, rules, head: str) -> np.ndarray:
        labels = self.ds.taxonomy.labels[head]
        hits = keyword_predict(texts, rules, head, labels)
        if head not in SINGLE_HEADS:
            return hits
        col = {l: j for j, l in enumerate(labels)}
        pred = np.zeros_like(hits)
        for i, row in enumerate(hits):
            pick = next((col[k] for k in self.KIND_PRIORITY if k in col and row[col[k]]), 0)
            pred[i, pick] = 1
        return pred

    def thresholds(self, fset: str, spec: ModelSpec, head: str) -> np.ndarray:
        """Thresholds for the model fitted on all data: tuned on its grouped-CV OOF (a
        single-label head decides by argmax: its thresholds are recorded, not used)."""
        return tune_thresholds(self.ds.Y[head], self.oof(fset, spec, head))


@dataclass(frozen=True)
class Variant:
    name: str
    features: str
    specs: dict  # head -> ModelSpec


def _same(spec: ModelSpec) -> dict:
    return {h: spec for h in HEADS}


# The first-wave choice: logreg for topic, LightGBM for measure and industry.
PREVIOUS = {"topic": ModelSpec("logreg"), "measure": ModelSpec("lgbm"), "industry": ModelSpec("lgbm")}

# Each variant changes one or two things against the first-wave setup (word 1-2 + char 1-3
# TF-IDF, per-head choice of logreg / LightGBM).
VARIANTS = [
    Variant("per-head choice (first wave)", "base", PREVIOUS),
    Variant("logreg", "base", _same(ModelSpec("logreg"))),
    Variant("LightGBM", "base", _same(ModelSpec("lgbm"))),
    Variant("avg(logreg, LightGBM)", "base", _same(ModelSpec("avg:logreg+lgbm"))),
    Variant("NB-logreg", "base", _same(ModelSpec("nb_logreg"))),
    Variant("logreg, recency weights", "base", _same(ModelSpec("logreg", recency=True))),
    Variant("NB-logreg, recency weights", "base", _same(ModelSpec("nb_logreg", recency=True))),
    Variant("logreg, char 1-4", "char4", _same(ModelSpec("logreg"))),
    Variant("NB-logreg, char 1-4", "char4", _same(ModelSpec("nb_logreg"))),
    Variant("logreg + lexicon", "lexicon", _same(ModelSpec("logreg"))),
    Variant("NB-logreg + lexicon", "lexicon", _same(ModelSpec("nb_logreg"))),
    Variant("NB-logreg + lexicon, recency weights", "lexicon", _same(ModelSpec("nb_logreg", recency=True))),
    Variant("LightGBM + lexicon", "lexicon", _same(ModelSpec("lgbm"))),
    Variant("avg(logreg, LightGBM) + lexicon", "lexicon", _same(ModelSpec("avg:logreg+lgbm"))),
    Variant("avg(NB-logreg, LightGBM) + lexicon", "lexicon", _same(ModelSpec("avg:nb_logreg+lgbm"))),
    Variant("per-head choice + lexicon", "lexicon", PREVIOUS),
]


def _head_summary(s: dict | None, head: str) -> dict | None:
    if s is None:
        return None
    out = {"micro_f1": s["micro_f1"], "macro_f1": s["macro_f1"]}
    for k in ("macro_f1_required", "macro_f1_headline", "accuracy"):
        if k in s:
            out[k] = s[k]
    if head == "measure":
        out["labels"] = {l: m["f1"] for l, m in s["labels"].items()}
    return out


def run_variants(ev: Evaluator, variants=VARIANTS, log=print) -> dict:
    """Every variant on both splits, plus the keyword baseline on the same test rows."""
    rows = []
    for v in variants:
        log(f"variant: {v.name}")
        rows.append({
            "name": v.name,
            "features": v.features,
            "specs": {h: v.specs[h].label() for h in MULTI_HEADS},  # variants predate the kind head
            "grouped": {h: _head_summary(ev.grouped(v.features, v.specs[h], h), h) for h in MULTI_HEADS},
            "time": {h: _head_summary(ev.timesplit(v.features, v.specs[h], h), h) for h in MULTI_HEADS},
        })
    kw = ev.keyword()
    return {
        "cutoff_year": CUTOFF_YEAR,
        "time_split": split_info(ev),
        "keyword_baseline": {split: ({h: _head_summary(kw[split][h], h) for h in MULTI_HEADS} if kw[split] else None) for split in kw},
        "variants": rows,
    }


# Relief on a tax the clause names (the outside evaluation's misses: "…给予房产税和城镇土地使用税的
#减免优惠", "…免征契税", "…可实行递延纳税政策", "…列入当年税前成本"). Used to select clauses for a
# recall figure only; the labels are the annotators'.
NAMED_TAX = re.compile(r"房产税|城镇土地使用税|土地使用税|契税|所得税|增值税|印花税|营业税|消费税|资源税|耕地占用税|车船税|纳税|税前")
RELIEF = re.compile(r"减免|免征|减征|免税|减半|递延|税前|加计扣除|退税|返还|抵扣|抵免|优惠|减按")


def named_tax_relief(ev: Evaluator, fset: str, spec: ModelSpec) -> dict:
    """Recall of `tax_relief` on labeled clauses that grant relief on a named tax, grouped CV
    and time split (the model's decisions at the shipped protocol's thresholds)."""
    j = ev.ds.taxonomy.labels["measure"].index("tax_relief")
    y = ev.ds.Y["measure"][:, j] == 1
    named = np.array([bool(NAMED_TAX.search(t.replace(" ", "")) and RELIEF.search(t.replace(" ", ""))) for t in ev.ds.texts])
    sel = named & y
    out = {"definition": "labeled tax_relief and the text names a tax and a relief word (training/experiments.py NAMED_TAX, RELIEF)"}
    g = ev.grouped_pred(fset, spec, "measure")[:, j] == 1
    out["grouped"] = {"n": int(sel.sum()), "recall": round(float(g[sel].mean()), 4) if sel.any() else None}
    t = ev.time_pred(fset, spec, "measure")
    if t is not None:
        ts = sel[ev.time_test]
        out["time"] = {"n": int(ts.sum()), "recall": round(float((t[:, j] == 1)[ts].mean()), 4) if ts.any() else None}
    return out


def split_info(ev: Evaluator) -> dict:
    docs = lambda idx: len({ev.ds.docs[i] for i in idx})  # noqa: E731
    return {
        "train_clauses": len(ev.time_train), "train_documents": docs(ev.time_train),
        "test_clauses": len(ev.time_test), "test_documents": docs(ev.time_test),
        "threshold_tuning": f"nested: grouped {len(ev.inner)}-fold CV inside the training part",
    }


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def variants_table(rep: dict) -> str:
    """Markdown: per variant and head, grouped-CV and time-split figures; then the measure
    head per label; the keyword baseline as the last row of each table."""
    def cells(s: dict | None, head: str) -> list[str]:
        if s is None:
            return ["–", "–"]
        extra = s.get("macro_f1_required", s.get("macro_f1_headline"))
        if head == "industry":
            return [_f(s["micro_f1"]), _f(s["macro_f1"])]
        return [_f(s["macro_f1"]), _f(extra)]

    hdr = ("| variant | topic macro (CV) | topic 4-req (CV) | topic macro (time) | topic 4-req (time) "
           "| measure macro (CV) | grant/rent/tax (CV) | measure macro (time) | grant/rent/tax (time) "
           "| industry micro (CV) | industry macro (CV) | industry micro (time) | industry macro (time) |")
    lines = [hdr, "|---" + "|---:" * 12 + "|"]
    rows = [(v["name"], v["grouped"], v["time"]) for v in rep["variants"]]
    kw = rep["keyword_baseline"]
    rows.append(("keyword rules (the guide's words)", kw["grouped"], kw["time"] or {h: None for h in MULTI_HEADS}))
    for name, g, t in rows:
        c = []
        for h in MULTI_HEADS:
            c += cells(g[h], h) + cells(t[h], h)
        lines.append(f"| {name} | " + " | ".join(c) + " |")
    labels = list(rep["variants"][0]["grouped"]["measure"]["labels"])
    lines += ["", "Measure head, F1 per label, grouped CV / time split:", "",
              "| variant | " + " | ".join(labels) + " |", "|---" + "|---:" * len(labels) + "|"]
    for name, g, t in rows:
        gl, tl = g["measure"]["labels"], (t["measure"] or {}).get("labels", {})
        lines.append(f"| {name} | " + " | ".join(f"{gl[l]:.2f} / {_f(tl.get(l))}" for l in labels) + " |")
    return "\n".join(lines)
