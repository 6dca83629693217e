import sys, json
from screen import S
seen = set(json.loads(l)['id'] for l in open('read.jsonl')) if __import__('os').path.exists('read.jsonl') else set()
keys = sys.argv[1].split(',')
n = 0
with open('read.jsonl', 'a') as fo:
    for k in keys:
        for r in S[k]:
            if r['id'] in seen: continue
            seen.add(r['id']); n += 1
            fo.write(json.dumps({'id': r['id'], 'screen': k}, ensure_ascii=False) + '\n')
            print(f"{r['id']} [{k}] {r['kind']} T={','.join(r['topic'])} M={','.join(r['measure'])} §{(r['section'] or '')[-50:]}\n   {r['text'][:260]}")
print(n)
