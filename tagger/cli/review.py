"""Annotator commands: ``tagger review uncertain|suspects``, ``tagger labels export|import``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..annotate.labelstudio import file_sha256
from ..errors import InvalidInput
from ..jsonio import atomic_writer, dumps, read_jsonl, write_jsonl
from ..taxonomy import HEADS, SINGLE_HEADS, as_labels

__all__ = ["add_review", "add_labels_io"]


def _err(msg: str) -> None:
    print(f"tagger: {msg}", file=sys.stderr)


def _write_records(records: list[dict], out: str | None, fmt: str, tagger=None, taxonomy=None) -> None:
    """JSONL, or Label Studio tasks (+ config beside them) — atomically."""
    if fmt == "label-studio":
        from ..annotate.labelstudio import make_tasks

        preds = tagger.predict([r["text"] for r in records]) if tagger is not None else None
        reasons = [f"不确定 uncertain #{r['rank']}" for r in records] if records and "uncertainty" in records[0] else None
        _write_tasks(make_tasks(records, preds, tagger.version if tagger else "", reasons), out, taxonomy)
        return
    if out:
        write_jsonl(Path(out), records)
        print(f"wrote {len(records)} records to {out}", file=sys.stderr)
    else:
        sys.stdout.write("".join(dumps(r) + "\n" for r in records))


def cmd_uncertain(args: argparse.Namespace) -> int:
    from ..annotate.review import rank_uncertain
    from ..config import get_settings
    from ..ingest.corpus import iter_files
    from ..model.inference import load_tagger
    from ..tagging import iter_input_clauses
    from ..taxonomy import load_taxonomy

    st = get_settings()
    tagger = load_tagger(Path(args.model) if args.model else None)
    labeled = set()
    if not args.include_labeled and st.clauses_file.exists():
        labeled = {r["id"] for r in read_jsonl(st.clauses_file)}
    pool: list[dict] = []
    errors: list[str] = []
    seen = 0
    for path in iter_files(args.paths):
        # A document's path and hash travel with its clauses (queue -> tasks -> import), so
        # that importing them can copy the document into the corpus, or at least name it.
        src = {} if path.suffix.lower() == ".jsonl" else {"source_file": str(path.resolve()), "source_sha256": file_sha256(path)}
        for c in iter_input_clauses(path, errors):
            seen += 1
            if c["id"] not in labeled:
                pool.append({**c, **src})
    if args.from_store:
        from ..store.db import ClauseQuery, Store

        store = Store(st.db_url)
        for r in store.iter_all(ClauseQuery(sort="position", order="asc")):
            seen += 1
            if r["id"] not in labeled:
                pool.append({"id": r["id"], "doc": r["doc"], "section": r["section"], "text": r["text"]})
    for e in errors:
        _err(e)
    if not pool:
        if seen:
            where = " and ".join(w for w, on in (("the given files", bool(args.paths)), ("the store", args.from_store)) if on)
            _err(f"no unlabeled clauses to rank: all {seen} clauses of {where} are already in {st.clauses_file.name} "
                 "(--include-labeled ranks them anyway)")
        elif args.from_store and not args.paths:
            _err("no unlabeled clauses to rank: the store holds no clauses; 'tagger ingest' fills it")
        else:
            _err("no unlabeled clauses to rank: give documents/JSONL files or --from-store")
        return 1
    heads = [args.head] if args.head else list(HEADS)
    tokens, probs, _ = tagger.predict_detailed([c["text"] for c in pool])
    th = {h: np.asarray(tagger.manifest.thresholds(h)) for h in HEADS}
    order, detail = rank_uncertain(probs, th, heads)
    held: list[list[str]] = [[] for _ in pool]
    if args.new_terms:
        order, held = _new_terms_first(tagger, pool, tokens, probs, order, args.new_terms)
    out = []
    for rank, i in enumerate(order[: args.n], 1):
        rec = dict(pool[i])
        rec["rank"] = rank
        if args.new_terms:
            rec["new_terms"] = held[i]
        rec["uncertainty"] = round(float(detail["_score"][i]), 4)
        rec["nearest"] = {h: tagger.manifest.labels(h)[int(detail[h][1][i])] for h in heads}
        rec["scores"] = {h: {l: round(float(p), 4) for l, p in zip(tagger.manifest.labels(h), probs[h][i])} for h in heads}
        out.append(rec)
    _write_records(out, args.output, args.format, tagger, load_taxonomy(st.taxonomy_file))
    return 0


def _new_terms_first(tagger, pool: list[dict], tokens: list[str], probs: dict, order, k: int):
    """Clauses holding the pool's top ``k`` unseen terms (tagger.model.drift) first, by the
    best-ranked term they hold, each group in uncertainty order; then the others."""
    from ..model.drift import DriftProfiler

    profiler = DriftProfiler.for_tagger(tagger)
    acc = profiler.new_accumulator()
    profiler.add(acc, [c["id"] for c in pool], [c.get("doc", "") for c in pool], tokens, probs)
    rank = {t["term"]: r for r, t in enumerate(profiler.top_terms(acc, k))}
    held = [sorted({t for t in toks.split(" ") if t in rank}, key=rank.get) for toks in tokens]
    pos = {int(i): n for n, i in enumerate(order)}
    new_order = sorted(range(len(pool)), key=lambda i: (rank[held[i][0]] if held[i] else len(rank), pos[i]))
    return new_order, held


def _proposed(head: str, labels: list[str], p, th):
    if head in SINGLE_HEADS:  # one label: the most probable
        return labels[int(np.argmax(p))]
    return [l for l, q, t in zip(labels, p, th) if q >= t]


def cmd_suspects(args: argparse.Namespace) -> int:
    from ..annotate.review import find_label_issues
    from ..config import get_settings
    from ..taxonomy import load_taxonomy

    st = get_settings()
    labels_file = Path(args.labels or st.clauses_file)
    oof_file = Path(args.oof or st.var_dir / "oof" / "latest.json")
    if not oof_file.is_file():
        _err(f"{oof_file}: no out-of-fold probabilities; run 'tagger-train oof' (or 'tagger-train train') first")
        return 1
    oof = json.loads(oof_file.read_text(encoding="utf-8"))
    if oof.get("format") != "policy-tagger-oof/1":
        _err(f"{oof_file}: not an out-of-fold file (format {oof.get('format')!r})")
        return 1
    records = {r["id"]: r for r in read_jsonl(labels_file)}
    from ..annotate.labels import data_hash, trainable

    current_hash = data_hash(trainable(records.values()))
    if oof.get("data_hash") and oof["data_hash"] != current_hash:
        # Proposals computed on other labels would flag as suspects the very clauses fixed since.
        msg = (f"{oof_file} was computed on other labels (data hash {oof['data_hash'][:12]}, now {current_hash[:12]}): "
               "run 'tagger-train oof' again (--fast: logistic regression only)")
        if not args.force:
            _err(msg + ", or add --force to use it anyway")
            return 2
        _err("warning: " + msg)
    ids = [i for i in oof["ids"] if i in records]
    if len(ids) < len(oof["ids"]):
        _err(f"{len(oof['ids']) - len(ids)} clauses in {oof_file.name} are no longer labeled; ignored")
    row = {i: k for k, i in enumerate(oof["ids"])}
    sel = [row[i] for i in ids]
    labels = {h: oof["heads"][h]["labels"] for h in HEADS}
    Y = {h: np.array([[1 if l in (as_labels(h, records[i].get(h)) or []) else 0 for l in labels[h]] for i in ids]) for h in HEADS}
    P = {h: np.asarray(oof["probs"][h])[sel] for h in HEADS}
    th = {h: np.asarray(oof["heads"][h]["thresholds"]) for h in HEADS}
    all_labels, all_P, all_th = labels, P, th
    reviewed: dict[str, set] | None = None  # with --head/--label: the labels under review
    if args.head or args.label:
        # Review one head or a few labels at a time: within one label the queue is far
        # sharper than across all 32 (see the closing note of the annotator issue).
        keep: dict[str, list[int]] = {}
        for spec in args.label or []:
            head, _, lab = spec.partition(":")
            if head not in labels or lab not in labels[head]:
                _err(f"--label {spec}: expected head:label with ids from the taxonomy")
                return 1
            keep.setdefault(head, []).append(labels[head].index(lab))
        if args.head:
            keep.setdefault(args.head, list(range(len(labels[args.head]))))
        reviewed = {h: {labels[h][c] for c in cols} for h, cols in keep.items()}
        Y = {h: Y[h][:, cols] for h, cols in keep.items()}
        P = {h: P[h][:, cols] for h, cols in keep.items()}
        th = {h: th[h][cols] for h, cols in keep.items()}
        labels = {h: [labels[h][c] for c in cols] for h, cols in keep.items()}
    suspects = find_label_issues(Y, P, labels, th)
    out = []
    for rank, s in enumerate(suspects[: args.n], 1):
        rec = records[ids[s.index]]
        k = s.index
        out.append(
            {
                "rank": rank,
                "id": rec["id"],
                "doc": rec.get("doc", ""),
                "section": rec.get("section", ""),
                "text": rec["text"],
                "score": round(s.score, 4),
                "issues": s.issues,
                "current": {h: rec.get(h) or ([] if h not in SINGLE_HEADS else None) for h in HEADS},
                "proposed": {h: _proposed(h, all_labels[h], all_P[h][k], all_th[h]) for h in HEADS},
                "probabilities": {h: {l: round(float(p), 4) for l, p in zip(all_labels[h], all_P[h][k])} for h in HEADS},
                "source": rec.get("source", ""),
            }
        )
    n_conf = sum(any(i["confident"] for i in s.issues) for s in suspects)
    print(f"{len(suspects)} clauses where the out-of-fold model disagrees with the labels, {n_conf} of them confident "
          f"(estimated label errors); {len(out)} written, most suspicious first", file=sys.stderr)
    if args.format == "label-studio":
        from ..annotate.labelstudio import make_tasks, prediction

        # The pre-annotation is the out-of-fold proposal, the model that did not see the
        # clause's label: the bundled model, trained on these very labels, mostly repeats them.
        version = f"oof:{oof.get('data_hash', '')[:12]}:" + "+".join(sorted({oof["heads"][h].get("model", "?") for h in HEADS}))
        preds = [prediction(_pre_annotation(o, reviewed), o["score"], version) for o in out]
        tasks = make_tasks([records[o["id"]] for o in out], preds, version, reasons=[_reason(o) for o in out])
        _write_tasks(tasks, args.output, load_taxonomy(st.taxonomy_file))
    else:
        _write_records(out, args.output, "jsonl")
    return 0


def _as_list(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _pre_annotation(o: dict, reviewed: dict[str, set] | None) -> dict[str, list[str]]:
    """The out-of-fold proposal; with --head/--label, for the labels under review only, the
    rest as labeled now, so that accepting a task changes nothing it was not queued for."""
    proposed = {h: _as_list(o["proposed"][h]) for h in HEADS}
    if reviewed is None:
        return proposed
    out = {}
    for h in HEADS:
        current = _as_list(o["current"][h])
        if h not in reviewed:
            out[h] = current
        elif h in SINGLE_HEADS:
            out[h] = proposed[h]
        else:
            out[h] = sorted((set(current) - reviewed[h]) | (set(proposed[h]) & reviewed[h]))
    return out


def _reason(o: dict) -> str:
    """Why a clause is a suspect, in one line an annotator can read beside the text."""
    parts = []
    for i in o["issues"][:4]:
        side = "labeled, but the model says no" if i["given"] else "not labeled, but the model says yes"
        parts.append(f"{i['head']}:{i['label']} {side} (p={i['probability']:.2f}{', confident' if i['confident'] else ''})")
    more = f" (+{len(o['issues']) - 4} more)" if len(o["issues"]) > 4 else ""
    return f"疑似错标 suspect #{o['rank']}: " + "; ".join(parts) + more + " — pre-selected: the out-of-fold proposal"


def _write_tasks(tasks: list[dict], out: str | None, taxonomy) -> None:
    from ..annotate.labelstudio import labeling_config

    payload = json.dumps(tasks, ensure_ascii=False, indent=1)
    if out:
        with atomic_writer(Path(out)) as fh:
            fh.write(payload)
        cfg = Path(out).with_suffix(".config.xml")
        with atomic_writer(cfg) as fh:
            fh.write(labeling_config(taxonomy))
        print(f"wrote {len(tasks)} Label Studio tasks to {out} and the labeling config to {cfg}", file=sys.stderr)
    else:
        print(payload)


def add_review(sub) -> None:
    p = sub.add_parser("review", help="annotator queues: uncertain predictions, suspected label errors")
    rsub = p.add_subparsers(dest="review_command", required=True)
    u = rsub.add_parser("uncertain", help="unlabeled or stored clauses ranked by model uncertainty")
    u.add_argument("paths", nargs="*", help="documents or JSONL clause files")
    u.add_argument("--from-store", action="store_true", help="rank the clauses in the analysts' store")
    u.add_argument("--n", type=int, default=200)
    u.add_argument("--head", choices=HEADS, help="only this head (default: all three)")
    u.add_argument("--include-labeled", action="store_true", help="do not skip clauses already in labels/clauses.jsonl")
    u.add_argument("--model", help="bundle folder")
    u.add_argument("--format", choices=["jsonl", "label-studio"], default="jsonl")
    u.add_argument("--new-terms", type=int, nargs="?", const=20, default=0, metavar="K",
                   help="clauses holding the K (default 20) most frequent unseen terms first (see 'tagger drift')")
    u.add_argument("-o", "--output")
    u.set_defaults(func=cmd_uncertain)
    s = rsub.add_parser("suspects", help="likely label errors in labels/clauses.jsonl (confident learning on out-of-fold probabilities)")
    s.add_argument("--labels", help="default: labels/clauses.jsonl")
    s.add_argument("--oof", help="out-of-fold file from 'tagger-train oof' (default: var/oof/latest.json)")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--head", choices=HEADS, help="only issues of this head")
    s.add_argument("--label", action="append", metavar="HEAD:LABEL", help="only issues of this label (repeatable), e.g. measure:rent_subsidy")
    s.add_argument("--format", choices=["jsonl", "label-studio"], default="jsonl",
                   help="label-studio: tasks pre-annotated with the out-of-fold proposal, showing the current labels and why")
    s.add_argument("--force", action="store_true", help="use an oof file computed on other labels (its data hash differs)")
    s.add_argument("-o", "--output")
    s.set_defaults(func=cmd_suspects)


def cmd_labels_export(args: argparse.Namespace) -> int:
    from ..config import get_settings
    from ..model.inference import load_tagger
    from ..taxonomy import load_taxonomy

    st = get_settings()
    records = list(read_jsonl(Path(args.labels or st.clauses_file)))
    if args.ids:
        wanted = list(read_jsonl(Path(args.ids)))
        by_id = {r["id"]: r for r in records}
        # A clause not yet labeled (a 'review uncertain' queue) becomes a task from its own
        # record: text, doc, section and the source document's path and hash.
        missing = [w["id"] for w in wanted if w["id"] not in by_id and not (isinstance(w.get("text"), str) and w.get("doc"))]
        if missing:
            raise InvalidInput(args.ids, f"{len(missing)} ids are neither labeled clauses nor records with text and doc, e.g. {missing[0]}")
        records = [{**by_id[w["id"]], **{f: w[f] for f in ("source_file", "source_sha256") if w.get(f)}} if w["id"] in by_id
                   else {k: w[k] for k in ("id", "doc", "section", "text", "source_file", "source_sha256", "rank", "uncertainty") if k in w}
                   for w in wanted]
    tagger = None if args.no_predictions else load_tagger(Path(args.model) if args.model else None)
    _write_records(records, args.output, "label-studio", tagger, load_taxonomy(st.taxonomy_file))
    return 0


def cmd_labels_import(args: argparse.Namespace) -> int:
    from ..annotate.labelstudio import apply_import, parse_export
    from ..config import get_settings
    from ..taxonomy import load_taxonomy

    st = get_settings()
    path = Path(args.file)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(str(path), "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(str(path), f"not valid JSON ({exc})") from None
    annotations, skipped = parse_export(raw, load_taxonomy(st.taxonomy_file))
    labels_file = Path(args.labels or st.clauses_file)
    # Imported documents go beside the labels they belong to (a --labels file elsewhere
    # brings its own documents/ folder, as a labels folder does).
    documents_dir = labels_file.parent / "documents" if args.labels else st.documents_dir
    audit = labels_file.with_name("audit.jsonl")
    rep = apply_import(labels_file, audit, annotations, source_file=path.name, force=args.force, dry_run=args.dry_run,
                       documents_dir=documents_dir)
    rep.skipped = skipped
    for line in rep.conflicts:
        print(f"conflict: {line}", file=sys.stderr)
    for line in rep.incomplete:
        print(f"incomplete: {line}", file=sys.stderr)
    if args.dry_run:
        # What would change, one line each, on stdout (a list to read or grep).
        for a in rep.added:
            print(f"add\t{a['id']}\t{a['doc']}\t" + " ".join(f"{h}={','.join(a['labels'][h]) or '-'}" for h in HEADS))
        for u in rep.updated:
            diff = " ".join(f"{h}={','.join(u['before'][h]) or '-'}->{','.join(u['after'][h]) or '-'}" for h in HEADS if u["before"][h] != u["after"][h])
            print(f"update\t{u['id']}\t{diff}")
        for d in rep.documents:
            print(f"document\t{d['doc']}\t{d['action'] if d['action'] != 'copied' else 'copy'}\t{d['file'] or d['sha256'] or '-'}")
    for d in rep.documents:
        if d["action"] == "referenced" and rep.added:
            _err(f"document {d['doc']}: not copied into {documents_dir} ({d['note']}); its clauses keep its sha256 "
                 f"({(d['sha256'] or '?')[:12]}) — copy the file into {documents_dir} for 'tagger labels validate' to check their text")
    if not args.dry_run:
        _report_unlabeled(rep, documents_dir, labels_file)
    verb = "would add" if args.dry_run else "added"
    print(
        f"labels import: {verb} {len(rep.added)}, {'would update' if args.dry_run else 'updated'} {len(rep.updated)}, "
        f"unchanged {len(rep.unchanged)}, conflicts {len(rep.conflicts)}, incomplete {len(rep.incomplete)}, tasks without annotation {skipped}"
        + ("" if args.dry_run or not (rep.updated or rep.added) else f"; audit trail: {audit}"),
        file=sys.stderr,
    )
    # A refusal (conflict, incomplete task) exits 2 like every refusal of the tool; what
    # could be applied was applied.
    return 2 if rep.refused else 0


def _report_unlabeled(rep, documents_dir: Path, labels_file: Path) -> None:
    """A copied document is in the corpus now: 'labels validate' wants every clause of it
    labeled, so say how many are still missing and how to queue them."""
    from ..ingest.corpus import segment_paths

    labeled = {r["id"] for r in read_jsonl(labels_file)}
    for d in rep.documents:
        if d["action"] not in ("copied", "present"):
            continue
        f = documents_dir / d["file"]
        ids = [c.id for doc, clauses in segment_paths([f]) if doc.id == d["doc"] for c in clauses]
        left = [i for i in ids if i not in labeled]
        if left:
            _err(f"document {d['doc']} ({f}): {len(ids) - len(left)} of {len(ids)} clauses labeled; "
                 f"'tagger review uncertain {f}' queues the other {len(left)}")


def add_labels_io(lsub) -> None:
    e = lsub.add_parser("export", help="Label Studio tasks with pre-annotations, plus a labeling config")
    e.add_argument("--format", choices=["label-studio"], default="label-studio")
    e.add_argument("--labels", help="default: labels/clauses.jsonl")
    e.add_argument("--ids", help="JSONL whose 'id' fields select the clauses (e.g. 'tagger review suspects' output)")
    e.add_argument("--model", help="bundle folder for the pre-annotations")
    e.add_argument("--no-predictions", action="store_true")
    e.add_argument("-o", "--output", help="tasks JSON (the config is written beside it as .config.xml)")
    e.set_defaults(func=cmd_labels_export)
    i = lsub.add_parser("import", help="Label Studio JSON export -> labels/clauses.jsonl: updates and new clauses (validated, audited)")
    i.add_argument("file")
    i.add_argument("--labels", help="default: labels/clauses.jsonl")
    i.add_argument("--force", action="store_true", help="overwrite labels changed since the export")
    i.add_argument("--dry-run", action="store_true", help="list additions, updates, documents and conflicts; write nothing")
    i.set_defaults(func=cmd_labels_import)
