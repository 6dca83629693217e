"""Inter-annotator agreement for labels/AGREEMENT.md.

Compares pass 1 with the blind pass 2 on the random sample (before), and the same
with every disputed clause replaced by its two independent re-annotations under the
sharpened guidelines (after). Per head: micro-F1 between passes, exact-match rate,
pooled Cohen's kappa; per label: F1 and Cohen's kappa.

usage: python labels/work/agreement.py > /tmp/agreement.md
"""

import glob
import json
from pathlib import Path

import yaml

HEADS = ("topic", "measure", "industry")
W = Path("labels/work")
TAX = yaml.safe_load(open("labels/taxonomy.yaml", encoding="utf-8"))
LABELS = {h: [l["id"] for l in TAX["heads"][h]["labels"]] for h in HEADS}


def load(pattern):
    out = {}
    for f in sorted(glob.glob(str(W / pattern))):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                out[r["id"]] = {h: set(r[h]) for h in HEADS}
    return out


def kappa(a, b):
    n = len(a)
    if n == 0:
        return float("nan")
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def f1(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def compare(A, B, ids):
    res = {}
    for h in HEADS:
        tp = fp = fn = 0
        per = {}
        pooled_a, pooled_b = [], []
        for lab in LABELS[h]:
            a = [int(lab in A[i][h]) for i in ids]
            b = [int(lab in B[i][h]) for i in ids]
            ltp = sum(x and y for x, y in zip(a, b))
            lfp = sum((not x) and y for x, y in zip(a, b))
            lfn = sum(x and (not y) for x, y in zip(a, b))
            tp, fp, fn = tp + ltp, fp + lfp, fn + lfn
            per[lab] = (sum(a), sum(b), f1(ltp, lfp, lfn), kappa(a, b))
            pooled_a += a
            pooled_b += b
        exact = sum(A[i][h] == B[i][h] for i in ids) / len(ids)
        res[h] = {"micro_f1": f1(tp, fp, fn), "exact": exact, "kappa": kappa(pooled_a, pooled_b), "labels": per}
    return res


def table(res, title):
    out = [f"### {title}", "", "| head | micro-F1 | exact match | Cohen's kappa (pooled) |", "|---|---:|---:|---:|"]
    for h in HEADS:
        r = res[h]
        out.append(f"| {h} | {r['micro_f1']:.3f} | {r['exact']:.3f} | {r['kappa']:.3f} |")
    return out


def main():
    p1, p2 = load("pass1/out_*.jsonl"), load("pass2/out_1.jsonl")
    r1, r2 = load("revise_r1/out.jsonl"), load("revise_r2/out.jsonl")
    ids = [i for i in p2 if i in p1]
    before = compare(p1, p2, ids)
    disputed = [i for i in ids if any(p1[i][h] != p2[i][h] for h in HEADS)]
    A = {i: (r1[i] if i in disputed else p1[i]) for i in ids}
    B = {i: (r2[i] if i in disputed else p2[i]) for i in ids}
    after = compare(A, B, ids)
    still = [i for i in ids if any(A[i][h] != B[i][h] for h in HEADS)]
    lines = [f"Sample: {len(ids)} clauses drawn at random (seed 20261126) from the segmentation; "
             f"{len(disputed)} disputed after the first comparison, {len(still)} still disputed after re-annotation.", ""]
    lines += table(before, "Before guideline fixes: pass 1 vs blind pass 2") + [""]
    lines += table(after, "After guideline fixes: disputed clauses re-annotated independently under the sharpened guide") + [""]
    lines += ["### Per label (before → after)", "", "| head | label | pass 1 + | pass 2 + | F1 before | kappa before | F1 after | kappa after |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for h in HEADS:
        for lab in LABELS[h]:
            a, b, fb, kb = before[h]["labels"][lab]
            _, _, fa, ka = after[h]["labels"][lab]
            lines.append(f"| {h} | {lab} | {a} | {b} | {fb:.3f} | {kb:.3f} | {fa:.3f} | {ka:.3f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
