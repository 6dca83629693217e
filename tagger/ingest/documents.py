"""Documents in: read a file, normalise, split compilations, repair paragraphs.

A ``SOURCES.tsv`` beside a file (columns ``file doc title issuer region year url``,
any subset) supplies its metadata; a compilation's parts are matched by ``doc``.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from .compilation import split_compilation
from .readers import read_text
from .repair import repair_lines
from .textnorm import normalize_text

__all__ = ["Document", "load_documents", "document_from_text", "read_sources", "doc_id_for", "bounded_doc_id"]

SOURCES_FILE = "SOURCES.tsv"
_FRONT_MATTER = re.compile(r"^(url|title|source|region|year|issuer):\s*(.*)$", re.I)


@dataclass
class Document:
    id: str
    text: str  # normalised, repaired: paragraphs joined by "\n"; clause offsets index into it
    title: str = ""
    issuer: str = ""
    region: str = ""
    year: int | None = None
    url: str = ""
    source: str = ""  # the file it came from
    meta: dict = field(default_factory=dict)

    def info(self) -> dict:
        d = asdict(self)
        d.pop("text")
        return d


# documents.id is String(200) and GET /v1/documents/{id} takes at most 200 characters; a
# compilation's parts add "-NN", and clause ids (String(240)) ~20 more. Beyond this an id made
# from a file name is shortened (bounded_doc_id), so that every stored document can be read back.
MAX_DOC_ID_CHARS = 180


def bounded_doc_id(doc_id: str, limit: int = MAX_DOC_ID_CHARS) -> str:
    """``doc_id`` if it has at most ``limit`` characters; else its start and a digest of the
    whole: the same long name always gives the same id, two long names sharing a start do not."""
    if len(doc_id) <= limit:
        return doc_id
    digest = hashlib.sha1(doc_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{doc_id[: limit - len(digest) - 1]}-{digest}"


def doc_id_for(path: Path) -> str:
    stem = re.sub(r"\s+", "-", path.stem.strip())
    return bounded_doc_id(re.sub(r"[^\w\-.]", "", stem) or "document")


@lru_cache(maxsize=64)
def _read_sources_cached(folder: str, mtime: float) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    with open(Path(folder) / SOURCES_FILE, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            for key in (row.get("doc"), row.get("file")):
                if key:
                    rows.setdefault(key, row)
    return rows


def read_sources(folder: Path) -> dict[str, dict]:
    """Rows of ``folder/SOURCES.tsv`` keyed by ``doc`` and by ``file``; {} if absent."""
    path = folder / SOURCES_FILE
    if not path.is_file():
        return {}
    return _read_sources_cached(str(folder.resolve()), path.stat().st_mtime)


def _year(value: str | None) -> int | None:
    m = re.search(r"(19|20)\d{2}", value or "")
    return int(m.group(0)) if m else None


def _apply_meta(doc: Document, row: dict | None) -> Document:
    if not row:
        return doc
    doc.title = row.get("title") or doc.title
    doc.issuer = row.get("issuer") or doc.issuer
    doc.region = row.get("region") or doc.region
    doc.url = row.get("url") or doc.url
    doc.year = _year(row.get("year")) or doc.year
    return doc


def _split_front_matter(lines: list[str]) -> tuple[dict, list[str]]:
    """``key: value`` lines at the very top (web excerpts carry url/title this way)."""
    meta: dict[str, str] = {}
    i = 0
    while i < len(lines) and (m := _FRONT_MATTER.match(lines[i])):
        meta[m.group(1).lower()] = m.group(2).strip()
        i += 1
    return meta, (lines[i:] if meta else lines)


def _guess_title(paragraphs: list[str]) -> str:
    for p in paragraphs[:8]:
        if 4 <= len(p) <= 80 and not any(c in p for c in "。；，"):
            return p
    return ""


def document_from_text(text: str, doc_id: str, source: str = "", meta: dict | None = None) -> list[Document]:
    """Build documents from raw text (a compilation yields several)."""
    lines = normalize_text(text).split("\n")
    front, lines = _split_front_matter(lines)
    parts = split_compilation(lines)
    docs: list[Document] = []
    if parts:
        for part in parts:
            paragraphs = repair_lines(part.lines)
            docs.append(
                Document(
                    id=f"{doc_id}-{part.number:02d}",
                    text="\n".join(paragraphs),
                    title=part.title,
                    region=part.region_hint,
                    year=_year(part.title),
                    source=source,
                    meta={"compilation": doc_id, "group": part.group},
                )
            )
    else:
        paragraphs = repair_lines(lines)
        docs.append(
            Document(
                id=doc_id,
                text="\n".join(paragraphs),
                title=front.get("title") or _guess_title(paragraphs),
                region=front.get("region", ""),
                year=_year(front.get("year")),
                url=front.get("url", ""),
                source=source,
            )
        )
    for doc in docs:
        _apply_meta(doc, meta.get(doc.id) if meta else None)
    return docs


def load_documents(path: Path, doc_id: str | None = None) -> list[Document]:
    """Read one file into one or more documents. Raises UnreadableDocument.

    ``doc_id``: the id to give instead of the one made from the file's name (an upload is
    read from a temporary file whose name is not the client's)."""
    path = Path(path)
    text = read_text(path)
    sources = read_sources(path.parent)
    doc_id = doc_id or doc_id_for(path)
    meta = dict(sources)
    if path.name in sources and doc_id not in sources:
        meta[doc_id] = sources[path.name]
    return document_from_text(text, doc_id, source=str(path), meta=meta)
