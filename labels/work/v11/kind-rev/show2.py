import sys, json
exec(open('screen.py').read().replace("if __name__ == '__main__':", "if False:"))
seen = set(json.loads(l)['id'] for l in open('read.jsonl'))
key, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [r for r in {**S, **S2, **S3, **S4}[key] if r['id'] not in seen][:n]
with open('read.jsonl', 'a') as fo:
    for r in rows:
        fo.write(json.dumps({'id': r['id'], 'screen': key}, ensure_ascii=False) + '\n')
        print(f"{r['id']} {r['kind'][:4]} T={','.join(r['topic'])} M={','.join(r['measure'])} §{(r['section'] or '')[-30:]} | {r['text'][:170]}")
print(len(rows))
