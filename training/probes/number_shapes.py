"""Probe (2026-12-07): numbers as their shape (a year 20xx/19xx one token, other numbers by
digit count), so that 到2027年 in a 2023+ target reads like 到2020年 in the training years.
Time split, logistic regression. Usage: python -m training.probes.number_shapes none digits years"""
if __name__ != "__main__":
    raise ImportError("a probe script: run it (python -m training.probes.<name>), do not import it")

import copy, re, sys
from tagger.config import get_settings
from tagger.model.features import Tokenizer
from tagger.taxonomy import load_taxonomy
from training.data import document_years, load_dataset
from training.probe_time_split import probe

st = get_settings()
tax = load_taxonomy(st.taxonomy_file)
base = load_dataset(st.clauses_file, tax)
by_doc = document_years(st.documents_dir)
years = [by_doc.get(d) for d in base.docs]
body = Tokenizer(engine="jieba", structure=True).batch(base.texts)
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
