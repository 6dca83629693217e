"""Draw the blind second-pass sample: 20% of the records whose topic/measure/industry the
v1.1 pass changed (or that are new), per batch, seeded; writes pass2/in_K.jsonl (text only).

usage: python labels/work/v11/sample.py K BATCH [BATCH ...]
"""
import json
import random
import sys
from pathlib import Path

W = Path(__file__).resolve().parent
MULTI = ("topic", "measure", "industry")


def main():
    k, batches = sys.argv[1], sys.argv[2:]
    prev = {json.loads(l)["id"]: json.loads(l) for l in open(W / "previous-clauses.jsonl", encoding="utf-8")}
    rng = random.Random(1100 + int(k))
    sample, texts = [], {}
    for n in batches:
        for line in open(W / f"in_{n}.jsonl", encoding="utf-8"):
            r = json.loads(line)
            texts[r["id"]] = r
        dec = {}
        for line in open(W / f"out_{n}.jsonl", encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                dec[r["id"]] = r
        changed = sorted(i for i, r in dec.items() if i not in prev or any(sorted(prev[i][h]) != sorted(r[h]) for h in MULTI))
        pick = rng.sample(changed, max(1, round(len(changed) * 0.2)))
        print(f"batch {n}: {len(changed)} changed or new, {len(pick)} sampled")
        sample += pick
    rng.shuffle(sample)
    with open(W / "pass2" / f"in_{k}.jsonl", "w", encoding="utf-8") as fh:
        for i in sample:
            fh.write(json.dumps({"id": i, "doc": texts[i]["doc"], "text": texts[i]["text"]}, ensure_ascii=False) + "\n")
    print(f"{len(sample)} records in pass2/in_{k}.jsonl")


if __name__ == "__main__":
    main()
