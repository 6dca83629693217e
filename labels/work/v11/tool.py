"""Helper for the rules-v1.1 relabeling pass (issue #18).

  python labels/work/v11/tool.py show  BATCH START COUNT   # print records START..START+COUNT-1 of in_BATCH.jsonl
  python labels/work/v11/tool.py check BATCH               # validate out_BATCH.jsonl, list ids still missing

Decisions are appended by the annotator to out_BATCH.jsonl, one JSON object per line:
  {"id": ..., "kind": "provision", "topic": [...], "measure": [...], "industry": [...]}
(optionally "note": short reason when a label changed). A later line for the same id wins.
"""
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TAX = yaml.safe_load(open(HERE.parents[1] / "taxonomy.yaml", encoding="utf-8"))["heads"]
VALID = {h: {l["id"] for l in TAX[h]["labels"]} for h in ("topic", "measure", "industry")}
KINDS = {"provision", "target", "principle", "condition", "procedure", "title"}


def files(batch):
    """'3' -> in_3/out_3 here; 'pass2/1' -> pass2/in_1, pass2/out_1."""
    sub, _, n = batch.rpartition("/")
    d = HERE / sub if sub else HERE
    return d / f"in_{n}.jsonl", d / f"out_{n}.jsonl"


def read(p):
    return [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()] if p.exists() else []


def show(batch, start, count):
    recs = read(files(batch)[0])
    for i, r in enumerate(recs[start:start + count], start):
        cur = "NEW (unlabeled)" if r.get("topic") is None else (
            f"topic={','.join(r['topic']) or '-'} measure={','.join(r['measure']) or '-'} industry={','.join(r['industry']) or '-'}")
        print(f"[{i}] {r['id']}\n    {r['text']}\n    current: {cur}")
    print(f"-- shown {start}..{min(start + count, len(recs)) - 1} of {len(recs)}")


def check(batch):
    fin, fout = files(batch)
    ids = [r["id"] for r in read(fin)]
    out = {}
    bad = 0
    for n, line in enumerate(open(fout, encoding="utf-8") if fout.exists() else [], 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            print(f"line {n}: not JSON ({e})"); bad += 1; continue
        errs = []
        if r.get("id") not in ids:
            errs.append("unknown id")
        if r.get("kind") not in KINDS:
            errs.append(f"kind {r.get('kind')!r}")
        for h in VALID:
            v = r.get(h)
            if not isinstance(v, list) or any(x not in VALID[h] for x in v):
                errs.append(f"{h} {v!r}")
        if errs:
            print(f"line {n}: {r.get('id')}: {'; '.join(errs)}"); bad += 1
        else:
            out[r["id"]] = r
    missing = [i for i in ids if i not in out]
    print(f"{len(out)} of {len(ids)} decided, {bad} bad lines, {len(missing)} missing")
    if missing:
        first = ids.index(missing[0])
        print(f"first missing at index {first}: {missing[:5]}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "show":
        show(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        check(sys.argv[2])
