"""Probe (2026-12-07, not kept): the clause's section heading as extra namespaced tokens (§word),
on the time split with logistic regression. Usage: python -m training.probes.section_tokens none last all"""
if __name__ != "__main__":
    raise ImportError("a probe script: run it (python -m training.probes.<name>), do not import it")

import copy, sys
from tagger.config import get_settings
from tagger.model.features import Tokenizer
from tagger.jsonio import read_jsonl
from tagger.annotate.labels import trainable
from training.probe_time_split import probe
from training.probes.common import time_split_inputs

st = get_settings()
base, years, body = time_split_inputs()
sec = {r["id"]: r.get("section", "") for r in trainable(read_jsonl(st.clauses_file))}
plain = Tokenizer(engine="jieba", structure=False)
def sectoks(s, mode):
    parts = [p for p in s.split(" > ") if p]
    if not parts: return "\ue030"
    use = parts[-1:] if mode == "last" else parts
    out = []
    for p in use:
        out += ["§" + t for t in plain(p).split(" ") if t.strip()]
    return " ".join(out)
for mode in sys.argv[1:]:
    ds = copy.copy(base)
    if mode == "none":
        ds.texts = body
    else:
        ds.texts = [b + " " + sectoks(sec[i], mode) for b, i in zip(body, base.ids)]
    row, ev = probe(ds, years, "lexicon+structure")
    print(mode, row, flush=True)
