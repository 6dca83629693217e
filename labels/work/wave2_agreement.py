"""Agreement of the second wave (2023-2026 and Zhejiang county policies): pass 1 against
the blind pass 2 on its random sample (350 clauses, seed 2026), per head and per label.

usage: python labels/work/wave2_agreement.py [--disputed OUT.jsonl]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from agreement import HEADS, LABELS, compare, load, table  # noqa: E402


def main():
    p1, p2 = load("wave2/pass1/out_*.jsonl"), load("wave2/pass2/out_1.jsonl")
    ids = [i for i in p2 if i in p1]
    res = compare(p1, p2, ids)
    disputed = [i for i in ids if any(p1[i][h] != p2[i][h] for h in HEADS)]
    lines = [f"Sample: {len(ids)} of the new clauses drawn at random (seed 2026); {len(disputed)} differ on at least one head.", ""]
    lines += table(res, "Second wave: pass 1 vs blind pass 2") + [""]
    lines += ["| head | label | pass 1 + | pass 2 + | F1 | kappa |", "|---|---|---:|---:|---:|---:|"]
    for h in HEADS:
        for lab in LABELS[h]:
            a, b, f, k = res[h]["labels"][lab]
            if a or b:
                lines.append(f"| {h} | {lab} | {a} | {b} | {f:.3f} | {k:.3f} |")
    print("\n".join(lines))
    if len(sys.argv) > 2 and sys.argv[1] == "--disputed":
        texts = {}
        for f in Path("labels/work/wave2/pass2").glob("in_*.jsonl"):
            for l in f.read_text(encoding="utf-8").splitlines():
                r = json.loads(l)
                texts[r["id"]] = r["text"]
        with open(sys.argv[2], "w", encoding="utf-8") as fh:
            for i in disputed:
                rec = {"id": i, "text": texts[i]}
                # Readings are shown as A/B without saying which pass produced which.
                for h in HEADS:
                    rec[f"{h}_A"], rec[f"{h}_B"] = sorted(p1[i][h]), sorted(p2[i][h])
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
