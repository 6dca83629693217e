"""Assemble labels/clauses.jsonl and the agreement numbers from the labeling passes.

Inputs (all under labels/work/):
  pass1/out_*.jsonl      first pass, every clause (7 annotators + 1 for clauses added later)
  pass2/out_1.jsonl      blind second pass on a random sample of 420 clauses
  revise_r1, revise_r2   two independent re-annotations of the sample's disputed clauses
                         under the sharpened guidelines
  adjudication/out.jsonl final decision on clauses still disputed after revision
  sweep/out_*.jsonl      review of pass-1 labels touched by the sharpened rules
Priority: adjudicated > revised-and-agreed > pass1/pass2-agreed (sample) > sweep review > pass 1.

Second wave (wave2/, the Zhejiang county policies and the 2023-2026 policies):
  wave2/pass1/out_*.jsonl       first pass, every new clause (7 annotators)
  wave2/pass2/out_1.jsonl       blind second pass on a random 350 (seed 2026)
  wave2/adjudication/out.jsonl  final decision where the two passes differ
First-wave records are kept as they are; a clause is labeled by the second wave only if
the first wave never saw it.

usage: python labels/work/build.py [--agreement-only]
"""

import glob
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

HEADS = ("topic", "measure", "industry")
W = Path("labels/work")


def load(pattern):
    out = {}
    for f in sorted(glob.glob(str(W / pattern))):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                out[r["id"]] = r
    return out


def same(a, b):
    return all(set(a[h]) == set(b[h]) for h in HEADS)


def main():
    seg = [json.loads(l) for l in subprocess.run(
        [sys.executable, "-m", "tagger.cli", "segment", "labels/documents", "-q"], capture_output=True, text=True, check=True
    ).stdout.splitlines()]
    p1, p2 = load("pass1/out_*.jsonl"), load("pass2/out_1.jsonl")
    r1, r2 = load("revise_r1/out.jsonl"), load("revise_r2/out.jsonl")
    adj, sweep = load("adjudication/out.jsonl"), load("sweep/out_*.jsonl")
    w1, w2, wadj = load("wave2/pass1/out_*.jsonl"), load("wave2/pass2/out_1.jsonl"), load("wave2/adjudication/out.jsonl")
    today = date.today().isoformat()
    # A record whose labels and source did not change keeps its date.
    prev = {r["id"]: r for r in map(json.loads, open("labels/clauses.jsonl", encoding="utf-8"))}
    out, missing = [], []
    for c in seg:
        i = c["id"]
        if i in p2 and i in p1:
            if same(p1[i], p2[i]):
                lab, src = p1[i], "annotator:pass1+pass2-agreed"
            elif i in adj:
                lab, src = adj[i], "annotator:adjudicated"
            elif i in r1 and i in r2 and same(r1[i], r2[i]):
                lab, src = r1[i], "annotator:revised-agreed"
            else:
                missing.append(i)
                continue
        elif i in sweep:
            lab, src = sweep[i], "annotator:review" if sweep[i].get("changed") else "annotator:pass1+review"
        elif i in p1:
            lab, src = p1[i], "annotator:pass1"
        elif i in w2 and i in w1:
            if same(w1[i], w2[i]):
                lab, src = w1[i], "annotator:wave2-pass1+pass2-agreed"
            elif i in wadj:
                lab, src = wadj[i], "annotator:wave2-adjudicated"
            else:
                missing.append(i)
                continue
        elif i in w1:
            lab, src = w1[i], "annotator:wave2-pass1"
        else:
            missing.append(i)
            continue
        rec = {"id": i, "doc": c["doc"], "section": c["section"], "text": c["text"],
               **{h: sorted(set(lab[h])) for h in HEADS}, "source": src}
        old = prev.get(i)
        keep = old and all(old[h] == rec[h] for h in HEADS) and old["source"] == src
        out.append({**rec, "updated": old["updated"] if keep else today})
    if missing:
        print(f"{len(missing)} clauses have no final label yet, e.g. {missing[:3]}", file=sys.stderr)
        return 1
    tmp = Path("labels/clauses.jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in out:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace("labels/clauses.jsonl")
    print(f"wrote {len(out)} records to labels/clauses.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
