"""Probe (2026-12-07, measured only): the clause's place in its document as marker tokens
(first clause, second/third, first fifth, last fifth, last clause; order = the order of
labels/clauses.jsonl, which is segmentation order), on the time split with logistic regression.
A runtime use would need the position on every input (documents have it, /v1/tag clauses not).
Usage: python -m training.probes.position_tokens none pos"""
if __name__ != "__main__":
    raise ImportError("a probe script: run it (python -m training.probes.<name>), do not import it")

import copy, sys
from collections import defaultdict
from training.probe_time_split import probe
from training.probes.common import time_split_inputs

base, years, body = time_split_inputs()
order = defaultdict(list)
for i, d in enumerate(base.docs):
    order[d].append(i)
pos = {}
for d, idx in order.items():
    n = len(idx)
    for k, i in enumerate(idx):
        m = []
        if k == 0: m.append("\ue040")
        elif k <= 2: m.append("\ue041")
        if k < 0.2 * n: m.append("\ue042")
        if k >= 0.8 * n: m.append("\ue043")
        if k == n - 1: m.append("\ue044")
        pos[i] = " ".join(m)
for mode in sys.argv[1:]:
    ds = copy.copy(base)
    ds.texts = body if mode == "none" else [(pos[i] + " " + b).strip() for i, b in enumerate(body)]
    row, ev = probe(ds, years, "lexicon+structure")
    print(mode, row, flush=True)
