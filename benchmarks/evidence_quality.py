"""Evidence quality, both methods, on labeled clauses (issue #20): figures, and a file for a blind read.

    python benchmarks/evidence_quality.py [--clauses 300] [--seed 21] [--read 50] [--out benchmarks/evidence_read]
    python benchmarks/evidence_quality.py --score benchmarks/evidence_read   # after the read

Takes ``--clauses`` clauses of ``labels/clauses.jsonl`` at random (seeded), tags them with
the bundled model (no override rules: their evidence is the rule's match) and evidence by
each method, and prints per method over the labels the model assigned (topic, measure,
industry): the share with any evidence, spans per label, and the share of spans that are a
single character or a function word (``tagger.model.evidence.is_trivial_span``).

It also writes ``<out>.md``: ``--read`` assigned labels drawn at random, half of them among
the confident ones (score >= 0.9), each with its clause and the top span of each method in
a random order (A/B), and ``<out>.key.json`` (which letter is which method; not to be read
before the verdicts). The reader fills ``<out>.verdicts.json``: ``{"1": {"A": true, "B":
false}, ...}``, true when the span, shown alone, tells a reader why the clause has the
label. ``--score`` then prints the share of labels whose top span justifies it, per method.

``--baseline DIR`` compares the default method with another version of it instead of with
occlusion: DIR holds that version's ``tagger`` package (a checkout, e.g. ``git worktree add
/tmp/main main``, with its compiled ``_kernels`` if it has one); the same clauses, model and
seed are tagged by that code in a subprocess (``EVIDENCE_CODE=DIR``, ``--dump``), its figures
are printed as ``baseline``, and the read shows ``contributions`` (this code) against
``baseline`` as A/B. ``--json FILE`` also writes the printed figures to FILE.

    python benchmarks/evidence_quality.py --seed 23 --baseline /tmp/main --out benchmarks/evidence_read2

``--changed SEED`` (with ``--baseline``): a read of only the labels whose top span the change
moved, drawn with SEED, A/B in random order, and the reader's preference recorded too:

    python benchmarks/evidence_quality.py --seed 25 --clauses 1500 --read 40 --baseline /tmp/main --changed 26 --out benchmarks/evidence_read5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The code under test: this checkout's, or (the baseline's subprocess) another one's.
# Clauses and model always come from this checkout.
sys.path.insert(0, os.environ.get("EVIDENCE_CODE") or str(ROOT))

from tagger.model.evidence import METHODS, is_trivial_span  # noqa: E402
from tagger.model.inference import Tagger  # noqa: E402
from tagger.model.overrides import NO_OVERRIDES  # noqa: E402
from tagger.tagging import tag_clauses  # noqa: E402
from tagger.taxonomy import MULTI_HEADS  # noqa: E402

CONFIDENT = 0.9


def figures(records: list[dict]) -> dict:
    labels = [(r, h, lab) for r in records for h in MULTI_HEADS for lab in r[h]]
    spans = [s for r, h, lab in labels for s in r["evidence"][h][lab]]
    trivial = [s["text"] for s in spans if is_trivial_span(s["text"])]
    return {
        "labels": len(labels),
        "with_evidence": round(sum(bool(r["evidence"][h][lab]) for r, h, lab in labels) / max(len(labels), 1), 4),
        "spans_per_label": round(len(spans) / max(len(labels), 1), 2),
        "spans": len(spans),
        "top_span_chars": round(sum(len(r["evidence"][h][lab][0]["text"]) for r, h, lab in labels if r["evidence"][h][lab])
                                / max(sum(bool(r["evidence"][h][lab]) for r, h, lab in labels), 1), 2),
        "trivial_spans": round(len(trivial) / max(len(spans), 1), 4),
        "trivial_examples": sorted(set(trivial))[:20],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clauses", type=int, default=300)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--read", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "evidence_read"))
    ap.add_argument("--score", metavar="OUT", help="score the verdicts of a finished read and exit")
    ap.add_argument("--baseline", metavar="DIR", help="read: the default method against the one of the code in DIR")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    ap.add_argument("--changed", type=int, metavar="SEED",
                    help="with --baseline: read only labels whose top span differs between the two codes, drawn with this seed")
    ap.add_argument("--dump", metavar="FILE", help=argparse.SUPPRESS)  # the baseline's subprocess: records out, nothing else
    args = ap.parse_args()
    if args.score:
        return score(Path(args.score))

    rows = [json.loads(line) for line in (ROOT / "labels" / "clauses.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(args.seed)
    sample = [{"id": r["id"], "text": r["text"]} for r in rng.sample(rows, args.clauses)]
    tagger = Tagger(ROOT / "models" / "policy-tagger")
    if args.dump:
        recs = tag_clauses(tagger, sample, evidence=True, overrides=NO_OVERRIDES, evidence_method=METHODS[0])
        Path(args.dump).write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
        return
    by_method = {m: tag_clauses(tagger, sample, evidence=True, overrides=NO_OVERRIDES, evidence_method=m) for m in METHODS}
    shown = list(METHODS)  # the two methods the read compares
    if args.baseline:
        dump = Path(args.out).with_suffix(".baseline.tmp.json")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--seed", str(args.seed), "--clauses", str(args.clauses), "--dump", str(dump)]
        subprocess.run(cmd, check=True, env={**os.environ, "EVIDENCE_CODE": str(Path(args.baseline).resolve())})
        by_method["baseline"] = json.loads(dump.read_text(encoding="utf-8"))
        dump.unlink()
        if [r["id"] for r in by_method["baseline"]] != [r["id"] for r in by_method[METHODS[0]]]:
            raise SystemExit("the baseline tagged other clauses")
        shown = [METHODS[0], "baseline"]
    report = {"clauses": len(sample), "seed": args.seed, "model": tagger.version, "methods": {m: figures(recs) for m, recs in by_method.items()}}
    if args.baseline:
        report["baseline"] = str(args.baseline)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    if args.changed is not None:
        if not args.baseline:
            raise SystemExit("--changed needs --baseline")
        return write_changed_read(by_method[METHODS[0]], by_method["baseline"], args)
    # The read: labels both methods saw (the same model, so the same labels), half confident.
    base = by_method[METHODS[0]]
    labels = [(i, h, lab) for i, r in enumerate(base) for h in MULTI_HEADS for lab in r[h]]
    confident = [x for x in labels if base[x[0]]["scores"][x[1]][x[2]] >= CONFIDENT]
    other = [x for x in labels if base[x[0]]["scores"][x[1]][x[2]] < CONFIDENT]
    half = args.read // 2
    picked = rng.sample(confident, min(half, len(confident)))
    picked += rng.sample(other, min(args.read - len(picked), len(other)))
    rng.shuffle(picked)
    lines = ["# Evidence, blind read", "",
             "For each label: does the span, shown alone, tell a reader why the clause has the label? "
             "Verdicts go into the .verdicts.json file next to this one (see benchmarks/evidence_quality.py).", ""]
    key = {}
    for n, (i, h, lab) in enumerate(picked, 1):
        order = list(shown)
        rng.shuffle(order)
        key[str(n)] = dict(zip("AB", order))
        rec = base[i]
        lines += [f"## {n}. {h}: {lab} (score {rec['scores'][h][lab]:.3f})", "", f"> {rec['text']}", ""]
        for letter, m in zip("AB", order):
            spans = by_method[m][i]["evidence"][h][lab]
            lines.append(f"- {letter}: " + (f"`{spans[0]['text']}`" if spans else "(none)"))
        lines.append("")
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    out.with_suffix(".key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} ({len(picked)} labels, {sum(1 for x in picked if x in confident)} confident) and the key")


def write_changed_read(new: list[dict], old: list[dict], args) -> None:
    """A read of what a change of the span code changed: ``--read`` labels, drawn with seed
    ``--changed`` among those whose top span differs, the two top spans as A/B (random order;
    the key names them ``new`` and ``baseline``). The reader also says which one they prefer
    (``"prefer": "A" | "B" | "="``)."""
    def top(rec, h, lab):
        sp = rec["evidence"][h][lab]
        return sp[0]["text"] if sp else None

    changed = [(h, lab, a["text"], top(b, h, lab), top(a, h, lab), a["scores"][h][lab])
               for a, b in zip(new, old) for h in ("measure", "topic", "industry") for lab in b["evidence"][h]
               if top(a, h, lab) != top(b, h, lab)]
    rng = random.Random(args.changed)
    picked = rng.sample(changed, min(args.read, len(changed)))
    lines = ["# Evidence, blind read (changed spans)", "",
             "For each label: does the span, shown alone, tell a reader why the clause has the label?", ""]
    key = {}
    for n, (h, lab, text, s_old, s_new, p) in enumerate(picked, 1):
        order = [("baseline", s_old), ("new", s_new)]
        rng.shuffle(order)
        key[str(n)] = {"A": order[0][0], "B": order[1][0]}
        lines += [f"## {n}. {h}: {lab} (score {p:.3f})", "", f"> {text}", ""]
        lines += [f"- {letter}: `{span}`" for letter, (_, span) in zip("AB", order)]
        lines.append("")
    out = Path(args.out)
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    out.with_suffix(".key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} ({len(picked)} of {len(changed)} changed labels) and the key")


def score(out: Path) -> None:
    key = json.loads(out.with_suffix(".key.json").read_text(encoding="utf-8"))
    verdicts = json.loads(out.with_suffix(".verdicts.json").read_text(encoding="utf-8"))
    missing = sorted(set(key) - set(verdicts), key=int)
    if missing:
        raise SystemExit(f"no verdict for labels {', '.join(missing)}")
    methods = sorted({m for letters in key.values() for m in letters.values()})
    good = {m: 0 for m in methods}
    for n, letters in key.items():
        for letter, m in letters.items():
            good[m] += bool(verdicts[n][letter])
    result = {m: {"justified": good[m], "of": len(key), "share": round(good[m] / len(key), 3)} for m in methods}
    prefs = [verdicts[n].get("prefer") for n in key]
    if any(p is not None for p in prefs):
        result["preferred"] = {m: sum(1 for n, p in zip(key, prefs) if p in ("A", "B") and key[n][p] == m) for m in methods}
        result["preferred"]["neither"] = sum(1 for p in prefs if p == "=")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
