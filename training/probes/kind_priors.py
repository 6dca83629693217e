"""Probe (2026-12-07, not kept): kind decided by argmax of probabilities rescaled by training priors
or by per-kind weights tuned inside the training folds, time split. Usage: python -m training.probes.kind_priors logreg avg:nb_logreg+lgbm"""
if __name__ != "__main__":
    raise ImportError("a probe script: run it (python -m training.probes.<name>), do not import it")

import sys
import numpy as np
from tagger.taxonomy import KIND
from training.probe_time_split import _TimeOnly
from training.experiments import ModelSpec
from training.probes.common import time_split_inputs

ds, years, tokens = time_split_inputs()
ds.texts, tax = tokens, ds.taxonomy
ev = _TimeOnly(ds, years, log=lambda *a: None); ev.heads = (KIND,)
L = tax.labels[KIND]; Y = ds.Y[KIND]
def macro(y, p):
    t = y.argmax(1); q = p.argmax(1)
    f = []
    for j in range(y.shape[1]):
        tp = ((t==j)&(q==j)).sum(); fp=((t!=j)&(q==j)).sum(); fn=((t==j)&(q!=j)).sum()
        f.append(2*tp/(2*tp+fp+fn) if tp else 0.0)
    return np.mean(f), (t==q).mean()
for models in sys.argv[1:]:
    spec = ModelSpec.parse(models)
    P = ev.spec_probs("lexicon+structure", spec, KIND)
    tr = ev.time_train; te = ev.time_test
    prior = Y[tr].mean(0)
    inner_idx = np.concatenate([t for _, t in ev.inner]); inner_p = np.concatenate([P[f"inner{k}"] for k in range(len(ev.inner))])
    pn = P["time"] / P["time"].sum(1, keepdims=True)
    print(models, "argmax", macro(Y[te], P["time"]))
    for a in (0.25, 0.5, 0.75, 1.0):
        print("  prior^", a, "time", macro(Y[te], pn / prior**a), "inner", macro(Y[inner_idx], inner_p / prior**a))
    # weights tuned on inner folds by coordinate ascent
    w = np.ones(len(L))
    grid = np.exp(np.linspace(-1.5, 1.5, 31))
    for it in range(3):
        for j in range(len(L)):
            best = None
            for g in grid:
                w2 = w.copy(); w2[j] = g
                m = macro(Y[inner_idx], inner_p * w2)[0]
                if best is None or m > best[0] + 1e-9: best = (m, g)
            w[j] = best[1]
    print("  tuned w", np.round(w, 2), "inner", macro(Y[inner_idx], inner_p*w), "time", macro(Y[te], P["time"]*w))
