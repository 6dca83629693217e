"""Probe (2026-12-07, not kept): the clause's section heading as extra namespaced tokens (§word),
on the time split with logistic regression. Usage: python -m training.probes.section_tokens none last all"""
if __name__ != "__main__":
    raise ImportError("a probe script: run it (python -m training.probes.<name>), do not import it")

import copy, json, sys
import numpy as np
from tagger.config import get_settings
from tagger.model.features import Tokenizer
from tagger.taxonomy import load_taxonomy
from tagger.jsonio import read_jsonl
from tagger.annotate.labels import trainable
from training.data import document_years, load_dataset
from training.probe_time_split import probe
st = get_settings()
tax = load_taxonomy(st.taxonomy_file)
base = load_dataset(st.clauses_file, tax)
sec = {r["id"]: r.get("section", "") for r in trainable(read_jsonl(st.clauses_file))}
by_doc = document_years(st.documents_dir)
years = [by_doc.get(d) for d in base.docs]
tok = Tokenizer(engine="jieba", structure=True)
plain = Tokenizer(engine="jieba", structure=False)
body = tok.batch(base.texts)
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
