"""The ``tagger`` command: argparse subcommands, one small function each.

Errors a user can cause print one line on stderr and exit non-zero; nothing is
half-written because every output goes through :func:`tagger.jsonio.atomic_writer`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from ..errors import TaggerError

__all__ = ["main"]

# The README's exit-code table ("Tagging (pipelines)"): 2 is every refusal, 130/143 an
# interrupted run (128 + the signal's number, what a shell reports for a killed process).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Interrupted(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that a run
    stops the same way: partial output kept, one line said, no traceback."""


def _trap_sigterm() -> None:
    import signal

    def handler(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, handler)


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def _interrupted(exc: BaseException, done: str) -> int:
    _err(f"interrupted — {done}")
    return EXIT_SIGTERM if isinstance(exc, Interrupted) else EXIT_SIGINT


def _err(msg: str) -> None:
    print(f"tagger: {msg}", file=sys.stderr)


class _Documents:
    """Documents from paths, in order; an unreadable file is reported on stderr and counted."""

    def __init__(self, paths):
        self.paths = paths
        self.failed = 0
        self.files_read = 0

    def __iter__(self):
        from ..ingest.corpus import iter_files
        from ..ingest.documents import load_documents

        for path in iter_files(self.paths):
            self.files_read += 1
            try:
                docs = load_documents(path)
            except TaggerError as exc:
                _err(str(exc))
                self.failed += 1
                continue
            yield from docs


def _open_output(out: str | None):
    from ..jsonio import atomic_writer

    if out and out != "-":
        return atomic_writer(Path(out))
    import contextlib

    return contextlib.nullcontext(sys.stdout)


def cmd_segment(args: argparse.Namespace) -> int:
    from ..ingest.segment import segment
    from ..jsonio import dumps

    docs = _Documents(args.paths)
    n_docs = n_clauses = 0
    with _open_output(args.output) as out:
        for doc in docs:
            n_docs += 1
            for clause in segment(doc):
                out.write(dumps(clause.to_dict()) + "\n")
                n_clauses += 1
    if not args.quiet:
        print(f"segmented {n_docs} documents into {n_clauses} clauses" + (f"; {docs.failed} files failed" if docs.failed else ""), file=sys.stderr)
    return EXIT_FAILED if docs.failed else EXIT_OK


def _add_segment(sub) -> None:
    p = sub.add_parser("segment", help="cut documents into clauses (JSONL)")
    p.add_argument("paths", nargs="+", help="documents or folders (.txt .md .html .docx .pdf)")
    p.add_argument("-o", "--output", help="output JSONL (default: stdout); written atomically")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_segment)


def cmd_labels_validate(args: argparse.Namespace) -> int:
    from ..annotate.labels import validate_labels
    from ..config import get_settings
    from ..taxonomy import load_taxonomy

    st = get_settings()
    labels_file = Path(args.file or st.clauses_file)
    if not labels_file.is_file():
        _err(f"{labels_file}: no such file")
        return EXIT_FAILED
    rep = validate_labels(labels_file, load_taxonomy(st.taxonomy_file), None if args.no_segmentation else st.documents_dir)
    for msg in rep.errors[: args.max_errors]:
        print(msg, file=sys.stderr)
    if len(rep.errors) > args.max_errors:
        print(f"... and {len(rep.errors) - args.max_errors} more", file=sys.stderr)
    status = "ok" if rep.ok else f"{len(rep.errors)} problem(s)"
    external = f", {rep.n_external} records from documents not in the corpus (text not checked)" if rep.n_external else ""
    print(f"labels validate: {rep.n_records} records, {rep.n_clauses} clauses in the current segmentation{external}: {status}", file=sys.stderr)
    return EXIT_OK if rep.ok else EXIT_FAILED


def cmd_labels_stats(args: argparse.Namespace) -> int:
    import json

    from ..annotate.labels import label_stats
    from ..config import get_settings
    from ..taxonomy import load_taxonomy

    st = get_settings()
    tax = load_taxonomy(st.taxonomy_file)
    stats = label_stats(Path(args.file or st.clauses_file), tax)
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=1))
        return EXIT_OK
    print(f"{stats['clauses']} labeled clauses; sources: {stats['sources']}")
    print(f"documents labeled on all {len(stats['labels'])} heads: {stats['documents_labeled_on_all_heads']}; "
          f"records not yet labeled per head: {stats['unlabeled']}")
    for head, counts in stats["labels"].items():
        print(f"\n[{head}]" + (f"  (no {head}: {stats['none'][head]})" if head in stats["none"] else "  (one per clause)"))
        for lab, n in counts.items():
            print(f"  {lab:<18} {tax.names[head][lab]:<12} {n:>5}")
    print("\n[measure co-occurrence]")
    for pair, n in list(stats["measure_cooccurrence"].items())[:15]:
        print(f"  {pair:<36} {n:>5}")
    print("\n[per document]  clauses / topic / measure / industry labels / clauses with a kind")
    for doc, c in stats["documents"].items():
        print(f"  {doc:<48} {c.get('clauses', 0):>4} {c.get('topic', 0):>5} {c.get('measure', 0):>5} {c.get('industry', 0):>5} {c.get('kind', 0):>5}")
    return EXIT_OK


def _add_labels(sub) -> None:
    p = sub.add_parser("labels", help="labeled clauses: validate, stats, Label Studio export/import")
    lsub = p.add_subparsers(dest="labels_command", required=True)
    v = lsub.add_parser("validate", help="check labels/clauses.jsonl against taxonomy and segmentation")
    v.add_argument("--file", help="labels file (default: labels/clauses.jsonl)")
    v.add_argument("--no-segmentation", action="store_true", help="skip the check against the current segmentation")
    v.add_argument("--max-errors", type=int, default=50)
    v.set_defaults(func=cmd_labels_validate)
    s = lsub.add_parser("stats", help="counts per label, per document, measure co-occurrence")
    s.add_argument("--file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_labels_stats)
    from .overrides import add_overrides
    from .review import add_labels_io

    add_labels_io(lsub)
    add_overrides(lsub)


class _Progress:
    """A one-line progress counter on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool):
        import time

        self.enabled = enabled
        self.t0 = time.monotonic()
        self.n = 0

    def update(self, n: int, skipped: int = 0) -> None:
        import time

        self.n += n
        if self.enabled:
            rate = self.n / max(time.monotonic() - self.t0, 1e-9)
            self.show(f"tagged {self.n} clauses ({rate:,.0f}/s), skipped {skipped} already written")

    def show(self, line: str) -> None:
        if self.enabled:
            # \x1b[K clears what a longer previous line left on the right.
            print(f"\r{line}\x1b[K", end="", file=sys.stderr, flush=True)
            self.shown = True

    def close(self) -> None:
        if self.enabled and getattr(self, "shown", False):
            print(file=sys.stderr)
            self.shown = False


_WORKER_TAGGER = None
_WORKER_PROFILER = None


def _worker_init(folder: str | None) -> None:
    global _WORKER_TAGGER, _WORKER_PROFILER
    import signal

    from ..model.drift import DriftProfiler

    # Ctrl-C reaches the whole process group: only the main process answers it (one line);
    # the pool ends its workers with SIGTERM, whose default action exits without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if folder is None:
        return  # forked with the main process's tagger and profiler
    from ..model.inference import Tagger

    # The bundle folder the main process already resolved and checked. One ONNX thread
    # per worker process: the processes are the parallelism.
    _WORKER_TAGGER = Tagger(Path(folder), threads=1)
    _WORKER_PROFILER = DriftProfiler.for_tagger(_WORKER_TAGGER)


def _worker_tag(batch: list[dict], evidence: bool = False, overrides=None, evidence_method: str | None = None):
    """The batch's output lines and its drift counts (merged by the parent)."""
    from ..jsonio import dumps
    from ..tagging import tag_clauses

    acc = _WORKER_PROFILER.new_accumulator()
    recs = tag_clauses(_WORKER_TAGGER, batch, evidence=evidence, overrides=overrides, evidence_method=evidence_method,
                       drift=(_WORKER_PROFILER, acc))
    return [dumps(rec) + "\n" for rec in recs], acc


def _first_clause_id(files: list[Path], max_chars: tuple[int, str] | None = None) -> str | None:
    """Id of the inputs' first good clause; problems are left for the run itself to report."""
    from ..tagging import iter_input_clauses

    for path in files:
        try:
            for clause in iter_input_clauses(path, [], max_chars):
                return clause["id"]
        except TaggerError:
            continue
    return None


def cmd_tag(args: argparse.Namespace) -> int:
    import multiprocessing as mp
    import os

    from ..ingest.corpus import iter_files
    from ..jsonio import dumps
    from ..model.inference import load_tagger
    from ..resume import OutputMismatch, OutputRefused, open_output
    from ..tagging import batched, iter_input_clauses, resolve_overrides, tag_clauses

    if args.evidence_method and not args.evidence:
        _err("--evidence-method needs --evidence (without it no evidence is computed)")
        return EXIT_USAGE
    from ..model.drift import DriftProfiler

    tagger = load_tagger(Path(args.model) if args.model else None)
    profiler = DriftProfiler.for_tagger(tagger)
    drift = profiler.new_accumulator()
    # The override rules are read once per run (a malformed file stops here, with one line):
    # every record of the run, and the -o resume check, carry the same model stamp.
    overrides = resolve_overrides(tagger)
    version = overrides.version(tagger.version)
    errors: list[str] = []
    failed_files = 0
    reported = 0
    # Listed once, up front: -o is checked against exactly the files the run will read.
    files = list(iter_files(args.paths))
    # Occlusion re-scores a clause once per token: its cost grows with the square of the
    # length (a 117,000-character JSONL clause ran for minutes). The API's limit, for this
    # method only: contributions are linear (that clause: 1.6 s, 294 MB).
    max_chars = None
    if args.evidence and args.evidence_method == "occlusion":
        from ..config import get_settings

        limit = get_settings().max_evidence_clause_chars
        max_chars = (limit, f"occlusion evidence is computed for clauses of at most {limit} characters "
                            "(TAGGER_MAX_EVIDENCE_CLAUSE_CHARS): use the default --evidence-method contributions, or split the text")
    writer = None
    if args.output and args.output != "-":
        try:
            writer = open_output(Path(args.output), files, version, lambda: _first_clause_id(files, max_chars), args.force,
                                 evidence=args.evidence)
        except OutputRefused as exc:
            _err(str(exc))
            return EXIT_USAGE
        except OSError as exc:
            _err(f"-o {args.output}: {exc.strerror or exc}")
            return EXIT_FAILED
    progress = _Progress(sys.stderr.isatty() and not args.quiet)
    # The cores this process may run on (a container's CPU set, not the host's count).
    workers = args.workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

    def report_errors() -> None:
        nonlocal reported
        while errors:
            _err(errors.pop(0))
            reported += 1

    def clauses():
        nonlocal failed_files
        for path in files:
            try:
                for clause in iter_input_clauses(path, errors, max_chars):
                    report_errors()
                    yield clause
            except TaggerError as exc:
                errors.append(str(exc))
                failed_files += 1
            report_errors()

    def pending():
        for c in clauses():
            if writer is None or not writer.already_written(c["id"]):
                yield c

    def tagged_batches():
        batches = batched(pending(), args.batch_size)
        if workers <= 1:
            for batch in batches:
                yield [dumps(rec) + "\n" for rec in tag_clauses(tagger, batch, evidence=args.evidence, overrides=overrides,
                                                                  evidence_method=args.evidence_method, drift=(profiler, drift))]
            return
        # Tokenising is pure Python: worker processes tag batches in parallel. The main
        # process reads the input itself (so input errors surface here, not in a pool
        # thread), keeps at most 2 batches per worker in flight (constant memory) and
        # yields results in input order.
        from collections import deque

        # Forked workers inherit the loaded tagger (tokeniser dictionary, sparse tables):
        # loading it again per worker cost ~1.5 CPU-s each. Only the ONNX-graph path loads
        # per worker, because onnxruntime's threads do not survive a fork.
        global _WORKER_TAGGER, _WORKER_PROFILER
        if tagger.serving == "sparse":
            _WORKER_TAGGER, _WORKER_PROFILER, initargs = tagger, profiler, (None,)
        else:
            initargs = (str(tagger.folder),)
        import signal

        # The workers are forked with Ctrl-C ignored and SIGTERM at its default (the
        # initializer sets both again, for a worker the pool replaces later).
        saved = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            pool_cm = mp.get_context("fork").Pool(workers, initializer=_worker_init, initargs=initargs)
        finally:
            signal.signal(signal.SIGINT, saved[0])
            signal.signal(signal.SIGTERM, saved[1])
        with pool_cm as pool:
            inflight: deque = deque()
            for batch in batches:
                inflight.append(pool.apply_async(_worker_tag, (batch, args.evidence, overrides, args.evidence_method)))
                if len(inflight) >= 2 * workers:
                    lines, part = inflight.popleft().get()
                    drift.merge(part)
                    yield lines
            while inflight:
                lines, part = inflight.popleft().get()
                drift.merge(part)
                yield lines

    _trap_sigterm()
    n_stdout = 0
    try:
        for lines in tagged_batches():
            if writer:
                writer.write(lines)
            else:
                sys.stdout.write("".join(lines))
                n_stdout += len(lines)
            progress.update(len(lines), writer.skipped if writer else 0)
        if writer:
            writer.finish()
    except (KeyboardInterrupt, Interrupted) as exc:
        if writer:
            writer.abort()
        progress.close()
        if writer:
            # Counted on disk: the signal may land between a write and its bookkeeping.
            done = _count_lines(writer.partial) if writer.partial.exists() else writer.skipped
            return _interrupted(exc, f"{done} records written; rerun the same command to resume")
        sys.stdout.flush()
        return _interrupted(exc, f"{n_stdout} records written to stdout; with -o FILE a rerun resumes")
    except OutputMismatch as exc:
        writer.abort()
        progress.close()
        _err(str(exc))
        return EXIT_USAGE
    except BaseException:
        if writer:
            writer.abort()
        raise
    finally:
        progress.close()
    report_errors()
    report = profiler.report(drift)
    if args.drift_report:
        import json

        from ..jsonio import atomic_writer

        with atomic_writer(Path(args.drift_report)) as fh:
            json.dump(report, fh, ensure_ascii=False, indent=1)
    if not args.quiet:
        # On stderr also when the records go to stdout: a pipeline's log says what it got.
        # A resumed run profiles only the clauses it tagged itself.
        done = f"tagged {writer.written} clauses, skipped {writer.skipped} already in {args.output}" if writer else f"tagged {n_stdout} clauses to stdout"
        print(f"{done}; model {version} ({tagger.engine}); drift: {_drift_summary(report)}", file=sys.stderr)
    return EXIT_FAILED if failed_files or reported else EXIT_OK


def _drift_summary(report: dict) -> str:
    """One phrase: the verdict, the score and the reason (for the summary line)."""
    v = report["verdict"]
    if report["oov_rate"] is None:
        return v
    head = f"{v} ("
    if isinstance(report.get("reference"), dict):
        th = report["reference"]["thresholds"]
        head += f"score {report['score']:.3f}: watch at {th['watch']}, retrain at {th['retrain']}; "
    head += f"OOV rate {report['oov_rate']:.3f}"
    terms = ", ".join(t["term"] for t in report["unseen_terms"][:5])
    return head + ")" + (f"; top unseen terms: {terms}" if terms and v != "ok" else "")


def _add_tag(sub) -> None:
    p = sub.add_parser("tag", help="tag documents or JSONL clauses with the bundled model")
    p.add_argument("paths", nargs="+", help="documents (.txt .md .html .docx .pdf), folders, or .jsonl files of {id, text}")
    p.add_argument("-o", "--output", help="output JSONL (default: stdout); resumable, appears atomically")
    p.add_argument("--force", action="store_true", help="overwrite an -o file that is not a previous output of these inputs and model (never a folder or an input)")
    p.add_argument("--model", help="bundle folder (default: TAGGER_MODEL_DIR, else the bundled model; see README, Where the data is)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=0, help="tagging processes (default: one per available core)")
    p.add_argument("--evidence", action="store_true", help="add 'evidence': the text spans behind each label (see README)")
    _add_evidence_method(p)
    p.add_argument("--drift-report", metavar="FILE", help="write the run's drift profile (JSON: verdict, OOV rates, label mix, unseen terms, per document)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_tag)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..api import create_app
    from ..config import get_settings
    from ..model.inference import load_tagger

    st = get_settings()
    # CPU work runs in pool threads; a short GIL switch interval lets the event loop thread
    # (health checks, small requests) in every 0.5 ms instead of every 5 ms.
    sys.setswitchinterval(0.0001)
    # Load (and check) the bundle before binding the port: a bad bundle never serves.
    tagger = load_tagger(Path(args.model) if args.model else None)
    from ..tagging import resolve_overrides

    resolve_overrides(tagger, st.overrides_file)  # nor does a malformed overrides file
    workers = args.workers if args.workers is not None else st.web_workers
    if workers < 1:
        _err(f"--workers must be at least 1 (got {workers})")
        return EXIT_USAGE
    if workers > 1 and tagger.serving != "sparse":
        # onnxruntime's threads do not survive a fork; the ONNX-graph path serves in one process.
        _err("--workers > 1 needs a bundle with the sparse serving path (tagger-train compile-sparse)")
        return EXIT_USAGE
    from ..api.server import run_server

    if workers > 1:
        import dataclasses

        # Each web worker has its own process pool for large documents: share the budget
        # instead of multiplying it (memory is one bundle copy per pool process).
        st = dataclasses.replace(st, work_processes=max(1, st.work_process_count // workers) if st.work_process_count else 0)
        # So is the bound on buffered request bodies (TAGGER_MAX_BUFFERED_BYTES), each worker
        # still taking the largest body a route accepts.
        if st.max_buffered_bytes > 0:
            largest = max(st.max_upload_bytes + 64 * 1024, st.max_json_bytes)
            st = dataclasses.replace(st, max_buffered_bytes=max(st.max_buffered_bytes // workers, largest))
    host = args.host or st.host
    if st.allow_anonymous_writes and not st.api_keys:
        import ipaddress

        from ..api.security import is_loopback

        # The rule itself checks the bound socket at every write (tagger.api.security); this
        # only says at start-up that the opt-in does nothing here (a host name: known once bound).
        try:
            literal = ipaddress.ip_address(host.strip("[]")) is not None
        except ValueError:
            literal = False
        if (literal and not is_loopback(host)) or not is_loopback(st.host):
            _err(f"TAGGER_ALLOW_ANONYMOUS_WRITES=1 has no effect with host {host!r} (TAGGER_HOST {st.host!r}): anonymous writes "
                 "need loopback addresses only; writes are refused until TAGGER_API_KEYS is set")
    from ..api.security import host_name, is_loopback

    if "*" not in st.allowed_hosts and not is_loopback(host) and host_name(host) not in {host_name(h) for h in st.allowed_hosts}:
        # Not added by itself (the bound address is not a name clients are known to use).
        _err(f"requests are answered only with a Host header naming one of {', '.join(st.allowed_hosts)} (any port): "
             "set TAGGER_ALLOWED_HOSTS to the names clients use for this server")
    from ..api.connections import ReadTimeouts

    return run_server(lambda: create_app(st, tagger=tagger), host, st.port if args.port is None else args.port,
                      workers=workers, log_level=args.log_level, timeouts=ReadTimeouts.from_settings(st))


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--model", help="bundle folder (default: TAGGER_MODEL_DIR, else the bundled model; see README, Where the data is)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--workers", type=int, help="worker processes sharing the port (default: TAGGER_WEB_WORKERS, 1)")
    p.set_defaults(func=cmd_serve)


def cmd_ingest(args: argparse.Namespace) -> int:
    from ..config import get_settings
    from ..model.inference import load_tagger
    from ..store.db import Store, ingest_documents

    if args.evidence_method and args.no_evidence:
        _err("--evidence-method and --no-evidence contradict each other")
        return EXIT_USAGE

    st = get_settings()
    store = Store(args.database_url or st.db_url)
    tagger = load_tagger(Path(args.model) if args.model else None)
    from ..tagging import resolve_overrides

    overrides = resolve_overrides(tagger)  # read once: one model stamp for the whole run
    from ..ingest.corpus import iter_files

    n_files = sum(1 for _ in iter_files(args.paths))
    docs = _Documents(args.paths)
    totals: dict[str, int] = {}
    # A progress line on a terminal only: a log file or a pipe gets the summary alone.
    progress = _Progress(sys.stderr.isatty())
    clauses = 0

    def on_progress(doc, res) -> None:
        nonlocal clauses
        done = sum(totals.values())
        if res is None:
            progress.show(f"ingest: file {docs.files_read}/{n_files}, {done} documents done ({clauses} clauses); tagging {doc.id}…")
            return
        totals[res.status] = totals.get(res.status, 0) + 1
        clauses += res.clauses
        if args.verbose:
            progress.close()
            print(f"{res.doc}: {res.status} ({res.clauses} clauses)", file=sys.stderr, flush=True)
        progress.show(f"ingest: file {docs.files_read}/{n_files}, {done + 1} documents done ({clauses} clauses)")

    _trap_sigterm()
    progress.show(f"ingest: {n_files} files; starting…")
    try:
        ingest_documents(store, tagger, docs, evidence=not args.no_evidence, overrides=overrides,
                         evidence_method=args.evidence_method, progress=on_progress)
    except (KeyboardInterrupt, Interrupted) as exc:
        progress.close()
        stored = sum(n for status, n in totals.items() if status != "unchanged")
        return _interrupted(exc, f"{sum(totals.values())} documents done ({stored} stored this run); rerun the same command to resume "
                                 "(documents already stored are skipped)")
    finally:
        progress.close()
    c = store.counts()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "nothing"
    print(f"ingest: {summary}; store now holds {c['documents']} documents, {c['clauses']} clauses (model {overrides.version(tagger.version)})", file=sys.stderr)
    return EXIT_FAILED if docs.failed else EXIT_OK


# tagger.model.evidence.METHODS, spelled out: the parser is built for every command, and that
# module loads numpy (tests/model/test_evidence.py holds the two equal).
EVIDENCE_METHODS = ("contributions", "occlusion")


def _add_evidence_method(p) -> None:
    p.add_argument("--evidence-method", choices=EVIDENCE_METHODS, default=None,
                   help="how evidence is found: the model's own contributions (default; evidence adds ~1.2x the CPU of tagging) or "
                        "occlusion (re-scoring the clause without each token, ~20x)")


def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="segment, tag and store documents for analysts (idempotent)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--database-url", help="default: TAGGER_DATABASE_URL, else tagger.db in the var folder (README, Where the data is)")
    p.add_argument("--model", help="bundle folder")
    p.add_argument("--no-evidence", action="store_true", help="store without the evidence spans")
    _add_evidence_method(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_ingest)


# Subcommand registrars; later modules add theirs here.
def _add_review(sub) -> None:
    from .review import add_review

    add_review(sub)


def _add_drift(sub) -> None:
    from .drift import add_drift

    add_drift(sub)


_REGISTRARS: list[Callable] = [_add_segment, _add_tag, _add_ingest, _add_serve, _add_labels, _add_review, _add_drift]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tagger", description="Tag clauses of Chinese industrial-policy documents.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TaggerError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (| head): stop quietly. Point stdout at /dev/null so that
        # the interpreter's final flush does not print "Exception ignored … BrokenPipeError".
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (KeyboardInterrupt, Interrupted) as exc:
        return _interrupted(exc, "nothing was written")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
