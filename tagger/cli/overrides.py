"""``tagger labels overrides check``: every override rule measured on the labeled corpus.

A rule is refused (exit 1) when its precision against the gold labels is below
:data:`tagger.model.overrides.MIN_PRECISION`, or when it matches no labeled clause (its precision
is then unknown); the clauses where gold disagrees are listed (id and text) so that the
reviewer sees why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_overrides"]


def cmd_overrides_check(args: argparse.Namespace) -> int:
    from ..config import get_settings
    from ..jsonio import read_jsonl
    from ..model.overrides import MIN_PRECISION, load_overrides
    from ..taxonomy import load_taxonomy

    st = get_settings()
    path = Path(args.file or st.overrides_file)
    labels_file = Path(args.labels or st.clauses_file)
    if not path.is_file():
        print(f"tagger: {path}: no such file", file=sys.stderr)
        return 1
    if not labels_file.is_file():
        print(f"tagger: {labels_file}: no such file (the check needs the labeled corpus of a checkout)", file=sys.stderr)
        return 1
    ov = load_overrides(path, load_taxonomy(st.taxonomy_file).labels)  # InvalidOverrides: one line, exit 1
    if not ov.rules:
        print(f"{path}: no rules")
        return 0
    clauses = [r for r in read_jsonl(labels_file) if isinstance(r.get("text"), str)]

    model_labels, source = None, ""
    oof = Path(args.oof) if args.oof else st.var_dir / "oof" / "latest.json"
    if not args.no_model and (args.oof or (oof.is_file() and not args.model)):
        # Out-of-fold predictions (tagger-train oof): what the model gets wrong on documents it
        # was not trained on, the misses a rule is for.
        model_labels, source = _oof_labels(oof), f"out-of-fold predictions {oof}"
    elif not args.no_model:
        from ..model.inference import load_tagger

        tagger = load_tagger(Path(args.model) if args.model else None)
        # In-sample: the bundle was trained on these clauses, so it misses few of them.
        model_labels = lambda hits: [p.labels for p in tagger.predict([c["text"] for c in hits])]  # noqa: E731  the model alone, no rules
        source = f"model {tagger.version} (in-sample)"

    from ..model.overrides import check_rules

    results = check_rules(ov, clauses, model_labels)
    print(f"{path}: {len(ov.rules)} rules on {len(clauses)} labeled clauses ({labels_file}); minimum precision {MIN_PRECISION}")
    if model_labels:
        print(f"changes: hits where the rule changes {source}; fixes: those where gold agrees with the rule")
    head = f"{'rule':<32} {'action':<28} {'hits':>5} {'agree':>6} {'precision':>9}"
    if model_labels:
        head += f" {'changes':>8} {'fixes':>6}"
    print(head + "  verdict")
    refused = 0
    for rc in results:
        r = rc.rule
        prec = "-" if rc.precision is None else f"{rc.precision:.3f}"
        line = f"{r.id:<32} {r.action + ' ' + r.head + ':' + r.label:<28} {rc.hits:>5} {rc.agree:>6} {prec:>9}"
        if model_labels:
            line += f" {rc.changes:>8} {rc.fixes:>6}"
        print(line + ("  ok" if rc.accepted else "  REFUSED"))
        if not rc.accepted:
            refused += 1
    for rc in results:
        if rc.accepted:
            continue
        r = rc.rule
        if rc.hits == 0:
            print(f"tagger: rule {r.id!r} refused: it matches no labeled clause, so its precision is unknown", file=sys.stderr)
            continue
        print(
            f"tagger: rule {r.id!r} refused: precision {rc.precision:.3f} ({rc.agree}/{rc.hits}) < {MIN_PRECISION}; "
            f"{len(rc.counterexamples)} counterexample(s) where gold {'lacks' if r.action == 'add' else 'has'} {r.head}:{r.label}:",
            file=sys.stderr,
        )
        for c in rc.counterexamples[: args.max_examples]:
            print(f"  {c.get('id')}\t{c['text']}", file=sys.stderr)
        if len(rc.counterexamples) > args.max_examples:
            print(f"  ... and {len(rc.counterexamples) - args.max_examples} more", file=sys.stderr)
    if refused:
        print(f"tagger: {refused} of {len(results)} rules refused; fix or remove them before committing {path}", file=sys.stderr)
        return 1
    return 0


def _oof_labels(path: Path):
    """Labels from an out-of-fold file (``tagger-train oof``): probability >= its threshold."""
    import json

    from ..errors import InvalidInput
    from ..taxonomy import HEADS

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        row = {cid: i for i, cid in enumerate(doc["ids"])}
        heads = {h: (doc["heads"][h]["labels"], doc["heads"][h]["thresholds"], doc["probs"][h]) for h in HEADS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(str(path), f"not an out-of-fold file of tagger-train oof ({type(exc).__name__}: {exc})") from None

    def labels(hits: list[dict]):
        out = []
        for c in hits:
            i = row.get(c.get("id"))
            out.append(None if i is None else {h: [l for l, t, p in zip(labs, ths, probs[i]) if p >= t] for h, (labs, ths, probs) in heads.items()})
        return out

    return labels


def add_overrides(lsub) -> None:
    """``tagger labels overrides check`` (``lsub``: the subparsers of ``tagger labels``)."""
    p = lsub.add_parser("overrides", help="override rules (labels/overrides.yaml): check them on the labeled corpus")
    osub = p.add_subparsers(dest="overrides_command", required=True)
    c = osub.add_parser("check", help="hits and precision of every rule against the gold labels; exit 1 if one is below 0.95")
    c.add_argument("--file", help="overrides file (default: TAGGER_OVERRIDES_FILE, else labels/overrides.yaml)")
    c.add_argument("--labels", help="labeled clauses (default: labels/clauses.jsonl)")
    c.add_argument("--model", help="bundle folder whose misses the rules should fix (default: the bundled model)")
    c.add_argument("--oof", help="out-of-fold predictions to count the model misses a rule fixes (default: var/oof/latest.json if present, else --model in-sample)")
    c.add_argument("--no-model", action="store_true", help="skip the model columns (changes, fixes)")
    c.add_argument("--max-examples", type=int, default=20, help="counterexamples listed per refused rule")
    c.set_defaults(func=cmd_overrides_check)
