"""The ``tagger`` command: argparse subcommands, one small function each.

Errors a user can cause print one line on stderr and exit non-zero; nothing is
half-written because every output goes through :func:`tagger.jsonio.atomic_writer`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from .errors import TaggerError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    print(f"tagger: {msg}", file=sys.stderr)


def _open_output(out: str | None):
    from .jsonio import atomic_writer

    if out and out != "-":
        return atomic_writer(Path(out))
    import contextlib

    return contextlib.nullcontext(sys.stdout)


def cmd_segment(args: argparse.Namespace) -> int:
    from .corpus import iter_files
    from .ingest import load_documents
    from .jsonio import dumps
    from .segment import segment

    failed = 0
    n_docs = n_clauses = 0
    with _open_output(args.output) as out:
        for path in iter_files(args.paths):
            try:
                docs = load_documents(path)
            except TaggerError as exc:
                _err(str(exc))
                failed += 1
                continue
            for doc in docs:
                n_docs += 1
                for clause in segment(doc):
                    out.write(dumps(clause.to_dict()) + "\n")
                    n_clauses += 1
    if not args.quiet:
        print(f"segmented {n_docs} documents into {n_clauses} clauses" + (f"; {failed} files failed" if failed else ""), file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _add_segment(sub) -> None:
    p = sub.add_parser("segment", help="cut documents into clauses (JSONL)")
    p.add_argument("paths", nargs="+", help="documents or folders (.txt .md .html .docx .pdf)")
    p.add_argument("-o", "--output", help="output JSONL (default: stdout); written atomically")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_segment)


# Subcommand registrars; later modules add theirs here.
_REGISTRARS: list[Callable] = [_add_segment]


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
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
