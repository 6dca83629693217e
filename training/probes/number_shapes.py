"""Probe (2026-12-07): numbers as their shape (a year 20xx/19xx one token, other numbers by
digit count), so that 到2027年 in a 2023+ target reads like 到2020年 in the training years.
Time split, logistic regression. Usage: python -m training.probes.number_shapes none digits years"""
if __name__ != "__main__":
    raise ImportError("a probe script: run it (python -m training.probes.<name>), do not import it")

import copy, re, sys
from training.probe_time_split import probe
from training.probes.common import time_split_inputs

base, years, body = time_split_inputs()
YEAR = re.compile(r"^(19|20)\d\d$")
DIG = re.compile(r"\d")

def shape(tok, mode):
    if not DIG.search(tok):
        return tok
    if mode == "digits":
        return DIG.sub("0", tok)
    if YEAR.match(tok):
        return "\ue030"
    if tok.isdigit():
        return "\ue031" if len(tok) <= 2 else "\ue032" if len(tok) <= 4 else "\ue033"
    return DIG.sub("0", tok)

for mode in sys.argv[1:]:
    ds = copy.copy(base)
    ds.texts = body if mode == "none" else [" ".join(shape(t, mode) for t in b.split(" ")) for b in body]
    row, ev = probe(ds, years, "lexicon+structure")
    print(mode, row, flush=True)
