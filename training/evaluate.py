"""Grouped folds, per-label thresholds, metrics and the keyword rules (the runs themselves:
``training/experiments.py``).

Folds are grouped by document: clauses of one document share wording, so a random
split would put near-duplicates on both sides and flatter the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from sklearn.model_selection import GroupKFold

from tagger.taxonomy import HEADS

from .data import Dataset

__all__ = ["grouped_folds", "tune_thresholds", "scores", "keyword_predict", "load_keyword_rules", "CVResult"]

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def grouped_folds(ds: Dataset, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    # Shuffle documents (seeded) so folds are not ordered by source collection.
    docs = sorted(set(ds.docs))
    rng = np.random.default_rng(seed)
    order = {d: i for i, d in enumerate(rng.permutation(docs))}
    groups = np.array([order[d] for d in ds.docs])
    return list(GroupKFold(n_splits=n_splits).split(ds.texts, groups=groups))


def tune_thresholds(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per label, the grid threshold with the best F1 on out-of-fold probabilities."""
    out = np.full(y.shape[1], 0.5)
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            continue
        best, best_f = 0.5, -1.0
        for t in THRESHOLD_GRID:
            pred = p[:, j] >= t
            tp = float((pred & (y[:, j] == 1)).sum())
            f = 2 * tp / (pred.sum() + y[:, j].sum()) if pred.sum() + y[:, j].sum() else 0.0
            if f > best_f + 1e-12:
                best, best_f = float(t), f
        out[j] = best
    return out


def scores(y: np.ndarray, pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Per-label P/R/F1/support plus micro and macro F1 (macro over labels with support)."""
    per = {}
    tps = fps = fns = 0
    f1s = []
    for j, lab in enumerate(labels):
        t, p_ = y[:, j] == 1, pred[:, j] == 1
        tp, fp, fn = int((t & p_).sum()), int((~t & p_).sum()), int((t & ~p_).sum())
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "support": int(t.sum())}
        tps, fps, fns = tps + tp, fps + fp, fns + fn
        if t.sum():
            f1s.append(f1)
    micro_p = tps / (tps + fps) if tps + fps else 0.0
    micro_r = tps / (tps + fns) if tps + fns else 0.0
    micro = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
    return {"micro_f1": round(micro, 4), "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4), "labels": per}


@dataclass
class CVResult:
    oof: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # kind -> head -> (n, L)
    thresholds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    metrics: dict[str, dict[str, dict]] = field(default_factory=dict)  # kind -> head -> scores
    chosen: dict[str, str] = field(default_factory=dict)  # head -> kind
    baseline: dict[str, dict] = field(default_factory=dict)  # head -> scores

    def report(self) -> dict:
        return {
            "chosen": self.chosen,
            "heads": {
                h: {
                    "model": self.chosen[h],
                    **{k: self.metrics[k][h] for k in self.metrics},
                    "keyword_baseline": self.baseline.get(h),
                }
                for h in self.chosen
            },
            "score": self.score,
        }

    @property
    def score(self) -> float:
        """One number to compare runs: mean over heads of the chosen model's macro-F1."""
        return round(float(np.mean([self.metrics[self.chosen[h]][h]["macro_f1"] for h in self.chosen])), 4)


def load_keyword_rules(path: Path | None = None) -> dict[str, dict[str, list[str]]]:
    path = path or Path(__file__).with_name("keyword_rules.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def keyword_predict(texts, rules: dict[str, dict[str, list[str]]], head: str, labels: tuple[str, ...]) -> np.ndarray:
    pats = [re.compile("|".join(map(re.escape, rules.get(head, {}).get(l, []))) or r"(?!x)x") for l in labels]
    return np.array([[1 if p.search(t) else 0 for p in pats] for t in texts], dtype=int)


OOF_FORMAT = "policy-tagger-oof/1"


def oof_document(ds: Dataset, res: CVResult, kinds: dict[str, str] | None = None) -> dict:
    """Out-of-fold probabilities per clause, for ``tagger review suspects``."""
    kinds = kinds or res.chosen
    return {
        "format": OOF_FORMAT,
        "data_hash": ds.hash,
        "heads": {
            h: {"labels": list(ds.taxonomy.labels[h]), "thresholds": [float(t) for t in res.thresholds[kinds[h]][h]], "model": kinds[h]}
            for h in HEADS
        },
        "ids": list(ds.ids),
        "probs": {h: np.round(res.oof[kinds[h]][h], 5).tolist() for h in HEADS},
    }
