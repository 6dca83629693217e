"""Check a labeling batch: every input id labeled once, every label id valid.

usage: python labels/work/check.py IN.jsonl OUT.jsonl
"""
import json, sys
import yaml

tax = yaml.safe_load(open("labels/taxonomy.yaml", encoding="utf-8"))
valid = {h: {l["id"] for l in spec["labels"]} for h, spec in tax["heads"].items()}
ins = [json.loads(l)["id"] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
seen, problems = {}, []
for n, line in enumerate(open(sys.argv[2], encoding="utf-8"), 1):
    if not line.strip():
        continue
    try:
        r = json.loads(line)
    except Exception as e:
        problems.append(f"line {n}: bad JSON {e}"); continue
    if r.get("id") in seen:
        problems.append(f"line {n}: duplicate id {r.get('id')}")
    seen[r.get("id")] = r
    for h in valid:
        if not isinstance(r.get(h), list):
            problems.append(f"line {n}: {h} missing or not a list")
            continue
        bad = [x for x in r[h] if x not in valid[h]]
        if bad:
            problems.append(f"line {n}: invalid {h} ids {bad}")
unknown = [i for i in seen if i not in set(ins)]
missing = [i for i in ins if i not in seen]
for p in problems[:30]: print(p)
if unknown: print("ids not in input:", unknown[:10])
print(f"{len(seen)}/{len(ins)} labeled, {len(missing)} missing, {len(problems)} problems")
if missing: print("first missing:", missing[:5])
