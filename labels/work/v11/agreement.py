"""Second-pass agreement on the v1.1 relabeling (issue #18): pass 1 (out_N) against the
blind second pass (pass2/out_*) on the sampled records, per head: micro-F1 for topic,
measure, industry (pass 2 as reference) and accuracy for kind. Before and after
adjudication (the adjudicated label replaces pass 1's where they differ).

usage: python labels/work/v11/agreement.py [--json]
"""
import json
import sys

from build import MULTI, W, load  # the same readers as the assembly (this folder is on sys.path)


def micro(a, b, ids, h):
    tp = fp = fn = 0
    for i in ids:
        x, y = set(a[i][h]), set(b[i][h])
        tp += len(x & y); fp += len(x - y); fn += len(y - x)
    return round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else 1.0


def report(p1, p2, ids):
    out = {h: micro(p1, p2, ids, h) for h in MULTI}
    out["kind_accuracy"] = round(sum(p1[i]["kind"] == p2[i]["kind"] for i in ids) / len(ids), 4) if ids else None
    out["n"] = len(ids)
    return out


def main():
    p1, p2, adj = load("out_*.jsonl"), load("pass2/out_*.jsonl"), load("adjudication/out.jsonl")
    ids = sorted(i for i in p2 if i in p1)
    final = {i: adj.get(i, p1[i]) for i in ids}
    res = {"pass1_vs_pass2": report(p1, p2, ids), "final_vs_pass2": report(final, p2, ids)}
    if "--json" in sys.argv:
        print(json.dumps(res, indent=1))
    else:
        for k, v in res.items():
            print(k, v)


if __name__ == "__main__":
    main()
