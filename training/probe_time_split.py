"""Cheap probes of the time split (logistic regression only, time split + its inner folds;
~1-2 min per variant on 2 cores), used to decide what goes into a full training run.

    python -m training.probe_time_split            # the variants below, one line each
    python -m training.probe_time_split --ceilings # topic: how far thresholds or a perfect kind could go

Figures of 2026-12-07 (labels 3897a555), topic = macro-F1 over the four required topics:

| variant | kind acc | kind macro | topic, no gate | topic, hard gate |
|---|---:|---:|---:|---:|
| lexicon (the previous bundle's features) | 0.818 | 0.777 | 0.597 | 0.564 |
| + structure markers (shipped) | 0.830 | 0.794 | 0.592 | 0.559 |
| + guide v1.1 words as topic lexicon flags | 0.815 | 0.775 | 0.575 | 0.554 |
| topic trained only on provision/target/procedure clauses | 0.818 | 0.777 | 0.549 | 0.528 |

Ceilings (``--ceilings``): thresholds chosen on the test documents themselves 0.657 / 0.627
(no gate / hard gate; with markers 0.653 / 0.626), against 0.597 / 0.564 with nested
thresholds; gating by the *labeled* kind 0.639 (with markers 0.632). So neither thresholds
nor a better kind head can bring this split's four required topics to 0.75: the 2023+
documents' topic words (大模型应用, 智能体, 人工智能+, 算力) are absent before 2023 and the
ranking itself fails (`applications` would need a threshold of 0.05).
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from tagger.config import get_settings
from tagger.model.features import Tokenizer
from tagger.model.gates import RULES_V11, apply_gate
from tagger.taxonomy import KIND, load_taxonomy

from .data import document_years, load_dataset
from .evaluate import scores, tune_thresholds
from .experiments import REQUIRED_TOPICS, Evaluator, ModelSpec

HEADS = (KIND, "topic")


class _TimeOnly(Evaluator):
    """Only the time split and its inner folds, only the kind and topic heads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.heads = HEADS

    def _splits(self):
        yield "time", self.time_train, self.time_test
        yield from ((f"inner{k}", tr, te) for k, (tr, te) in enumerate(self.inner))


def _required(s: dict) -> float:
    return round(float(np.mean([s["labels"][l]["f1"] for l in REQUIRED_TOPICS])), 3)


def probe(ds, years, fset: str) -> dict:
    ev = _TimeOnly(ds, years, log=lambda *a: None)
    spec = ModelSpec("logreg")
    k = ev.timesplit(fset, spec, KIND)
    ev.kind_spec = spec
    row = {"kind_acc": k["accuracy"], "kind_macro": k["macro_f1"]}
    for mode in ("none", "hard"):
        ev.set_gate("topic", mode, RULES_V11.get("topic"))
        row[f"topic_{mode}"] = ev.timesplit(fset, spec, "topic")["macro_f1_required"]
    return row, ev


def ceilings(ds, years, ev: Evaluator, fset: str) -> dict:
    P = ev.probs(fset, "logreg", False)
    L, Y, te = ds.taxonomy.labels, ds.Y["topic"], ev.time_test
    gate = {"by": KIND, "mode": "hard", "allowed": RULES_V11["topic"]}
    out = {}
    for mode in ("none", "hard"):
        g = (lambda p, k: p) if mode == "none" else (lambda p, k: apply_gate(p, k, L[KIND], L["topic"], gate))
        idx = np.concatenate([t for _, t in ev.inner])
        th = tune_thresholds(Y[idx], np.concatenate([g(P[f"inner{k}"]["topic"], P[f"inner{k}"][KIND]) for k in range(len(ev.inner))]))
        pt = g(P["time"]["topic"], P["time"][KIND])
        gold = apply_gate(P["time"]["topic"], ds.Y[KIND][te].astype(float), L[KIND], L["topic"], gate)
        out[mode] = {
            "nested": _required(scores(Y[te], (pt >= th).astype(int), L["topic"])),
            "thresholds_from_test": _required(scores(Y[te], (pt >= tune_thresholds(Y[te], pt)).astype(int), L["topic"])),
            "labeled_kind_gate": _required(scores(Y[te], (gold >= th).astype(int), L["topic"])),
        }
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ceilings", action="store_true")
    args = ap.parse_args(argv)
    st = get_settings()
    tax = load_taxonomy(st.taxonomy_file)
    base = load_dataset(st.clauses_file, tax)
    by_doc = document_years(st.documents_dir)
    years = [by_doc.get(d) for d in base.docs]
    raw = list(base.texts)
    for name, structure in (("lexicon", False), ("lexicon+structure", True)):
        ds = copy.copy(base)
        ds.texts = Tokenizer(engine="jieba", structure=structure).batch(raw)
        row, ev = probe(ds, years, name)
        print(name, row, flush=True)
        if args.ceilings:
            print("  ceilings", ceilings(ds, years, ev, name), flush=True)


if __name__ == "__main__":
    main()
