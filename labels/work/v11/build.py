"""Assemble labels/clauses.jsonl under rules v1.1 (issue #18) from the v1.1 passes.

Inputs (labels/work/v11/):
  previous-clauses.jsonl  labels/clauses.jsonl before v1.1 (rules v1.0, no kind), kept as it was
  in_N.jsonl / out_N.jsonl the v1.1 pass: every clause of labels/documents/ re-read under the
                           shared guide's rules v1.1, kind decided for each, the five new
                           Zhejiang documents labeled from scratch (7 annotators, one batch each)
  pass2/out_*.jsonl        blind second pass (text only) on a random sample of the changed records
  adjudication/out.jsonl   decision where pass 1 and pass 2 disagree on the sample
Priority: adjudicated > pass-1 decision. ``source`` says who decided:
  annotator:v11-review            pass 1 changed topic/measure/industry of an existing record
  annotator:v11-pass1             a clause of the five new documents
  <previous source>+v11-kind      labels kept as they were; kind added by the v1.1 pass
  ...+v11-pass2-agreed            the blind second pass agreed on every head
  annotator:v11-adjudicated       decided by adjudication after the two passes differed

usage: python labels/work/v11/build.py
"""

import glob
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

W = Path(__file__).resolve().parent
MULTI = ("topic", "measure", "industry")


def load(pattern):
    out = {}
    for f in sorted(glob.glob(str(W / pattern))):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                out[r["id"]] = r
    return out


def main():
    seg = [json.loads(l) for l in subprocess.run(
        [sys.executable, "-m", "tagger.cli", "segment", "labels/documents", "-q"], capture_output=True, text=True, check=True
    ).stdout.splitlines()]
    prev = {r["id"]: r for r in map(json.loads, open(W / "previous-clauses.jsonl", encoding="utf-8"))}
    p1, p2, adj = load("out_*.jsonl"), load("pass2/out_*.jsonl"), load("adjudication/out.jsonl")
    today = date.today().isoformat()
    out, missing = [], []
    for c in seg:
        i = c["id"]
        d = p1.get(i)
        if d is None:
            missing.append(i)
            continue
        old = prev.get(i)
        if i in adj:
            d, src = adj[i], "annotator:v11-adjudicated"
        elif old is None:
            src = "annotator:v11-pass1"
        elif any(sorted(d[h]) != sorted(old[h]) for h in MULTI):
            src = "annotator:v11-review"
        else:
            src = old["source"] + "+v11-kind"
        if i in p2 and i not in adj and all(sorted(p2[i][h]) == sorted(d[h]) for h in MULTI) and p2[i]["kind"] == d["kind"]:
            src += "+v11-pass2-agreed"
        rec = {"id": i, "doc": c["doc"], "section": c["section"], "text": c["text"],
               **{h: [l for l in d[h]] for h in MULTI}, "kind": d["kind"], "source": src}
        same = old is not None and all(sorted(old[h]) == sorted(rec[h]) for h in MULTI) and old.get("kind") == rec["kind"] and old["source"] == src
        rec["updated"] = old["updated"] if same else today
        out.append(rec)
    if missing:
        sys.exit(f"{len(missing)} clauses have no v1.1 decision yet, e.g. {missing[:3]}")
    tmp = Path("labels/clauses.jsonl.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    tmp.replace("labels/clauses.jsonl")
    changed = sum(1 for r in out if r["source"].startswith(("annotator:v11-review", "annotator:v11-adjudicated")))
    print(f"{len(out)} records written; {changed} with topic/measure/industry changed under v1.1; "
          f"{sum(1 for r in out if r['id'] not in prev)} new")


if __name__ == "__main__":
    main()
