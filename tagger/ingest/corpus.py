"""Walk input paths into document files, and segment them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from .documents import SOURCES_FILE, Document, load_documents
from .readers import SUPPORTED_SUFFIXES
from .segment import Clause, segment

__all__ = ["iter_files", "iter_documents", "segment_paths"]


def iter_files(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Files named directly, and supported documents found under directories, in order.

    ``SOURCES.tsv`` is metadata for its folder, not a document, and is skipped so that
    ``tagger segment labels/documents/*`` works as typed.
    """
    for p in map(Path, paths):
        if p.name == SOURCES_FILE:
            continue
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file() and child.suffix.lower() in (*SUPPORTED_SUFFIXES, ".jsonl") and not child.name.startswith("."):
                    yield child
        else:
            yield p


def iter_documents(paths: Iterable[Path | str]) -> Iterator[Document]:
    for path in iter_files(paths):
        yield from load_documents(path)


def segment_paths(paths: Iterable[Path | str]) -> Iterator[tuple[Document, list[Clause]]]:
    for doc in iter_documents(paths):
        yield doc, segment(doc)
