"""One stored document with all its clauses, in order (the page's document view, ``/?doc=<id>``).

A router of its own rather than a route in ``documents.py``: that module is the upload /
tagging path (multipart, work pool, writes); this one only reads the analysts' store.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from ...errors import InvalidInput
from ..deps import StoreDep
from ..schemas import check_strings

router = APIRouter(prefix="/v1", tags=["documents"])

# documents.id is String(200): a longer id cannot exist, so it is refused before any SQL.
DocId = Annotated[str, Path(min_length=1, max_length=200)]


# `:path` so that an id holding "/" (possible from JSONL ingest) still reaches the route:
# Starlette matches on the decoded path, where the page's %2F is a "/" again.
@router.get("/documents/{doc_id:path}")
def document_view(doc_id: DocId, store: StoreDep) -> dict:
    """The document's metadata and its clauses in position order (rows shaped like those of
    /v1/clauses: tags, scores, amounts, evidence when stored). Unknown id: 404."""
    if "\x00" in doc_id:
        raise InvalidInput("doc_id", "must not contain NUL")
    check_strings(doc_id, "doc_id")
    found = store.document(doc_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no stored document with id {doc_id!r}")
    info = found["document"]
    # `source` is the path the CLI read the file from: the file name is what an analyst needs,
    # the server's directory layout is not theirs to see.
    info["source"] = PurePath(info.get("source") or "").name
    info.pop("content_sha256", None)
    return {"document": info, "clauses": found["clauses"], "count": len(found["clauses"])}
