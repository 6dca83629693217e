"""Apply the hand decisions of changes.txt to labels/clauses.jsonl (atomic replace).
changes.txt + changes3.txt (second, wider reading rounds): id|new kind|topics (comma list; empty = none)|measure (empty = keep)|reason
Every screened-and-read record (read.jsonl) gets a line in decisions.jsonl."""
import json, os
P = '/work/main/labels/clauses.jsonl'
lines = open(P, encoding='utf-8').read().splitlines()
recs = [json.loads(l) for l in lines]
byid = {r['id']: r for r in recs}
ch = {}
for l in [x for fn in ('changes.txt', 'changes3.txt') for x in open(fn, encoding='utf-8')]:
    if not l.strip(): continue
    i, k, t, m, why = l.rstrip('\n').split('|', 4)
    assert i in byid, i
    ch[i] = (k, [x for x in t.split(',') if x], m, why)
read = [json.loads(l) for l in open('read.jsonl')]
assert set(ch) <= {x['id'] for x in read}
with open('previous.jsonl', 'w', encoding='utf-8') as fp, open('decisions.jsonl', 'w', encoding='utf-8') as fd:
    for x in read:
        r = byid[x['id']]
        if x['id'] in ch:
            k, t, m, why = ch[x['id']]
            assert k != r['kind'], x['id']
            fp.write(json.dumps(r, ensure_ascii=False) + '\n')
            fd.write(json.dumps({'id': r['id'], 'old_kind': r['kind'], 'new_kind': k, 'screen': x['screen'], 'reason': why}, ensure_ascii=False) + '\n')
        else:
            fd.write(json.dumps({'id': r['id'], 'old_kind': r['kind'], 'new_kind': r['kind'], 'screen': x['screen'], 'reason': 'kept: read, stored kind fits head4-rev'}, ensure_ascii=False) + '\n')
other = {'topic': 0, 'measure': 0}
out = []
for r in recs:
    if r['id'] in ch:
        k, t, m, why = ch[r['id']]
        n = dict(r)  # same key order
        n['kind'] = k
        if k in ('principle', 'title', 'condition'):
            t = []
        if k == 'procedure':
            assert set(t) <= {'governance'}
        if t != r['topic']:
            other['topic'] += 1
        n['topic'] = t
        if m:
            nm = [] if m == '-' else m.split(',')
            if nm != r['measure']: other['measure'] += 1
            n['measure'] = nm
        n['source'] = r['source'] + '+v11-kind-rev'
        n['updated'] = '2026-12-07'
        out.append(json.dumps(n, ensure_ascii=False))
    else:
        out.append(json.dumps(r, ensure_ascii=False))
tmp = P + '.tmp'
with open(tmp, 'w', encoding='utf-8') as f:
    f.write('\n'.join(out) + '\n')
os.replace(tmp, P)
print('changed', len(ch), 'other-head', other)
