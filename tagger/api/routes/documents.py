from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from ...errors import InvalidInput
from ...ingest import Document, document_from_text, load_documents
from ...readers import SUPPORTED_SUFFIXES
from ...segment import segment
from ...tagging import tag_clauses
from ..deps import SettingsDep, TaggerDep
from ..schemas import DocumentIn
from .tag import check_limits

router = APIRouter(prefix="/v1", tags=["documents"])


async def _documents_from_request(request: Request, settings) -> list[Document]:
    ctype = request.headers.get("content-type", "")
    length = int(request.headers.get("content-length") or 0)
    if length > settings.max_upload_bytes:
        raise HTTPException(status_code=413, detail=f"request body of {length} bytes; the limit is {settings.max_upload_bytes}")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise InvalidInput("file", "multipart request needs a 'file' part")
        name = Path(upload.filename or "upload.txt").name
        suffix = Path(name).suffix.lower() or ".txt"
        if suffix not in SUPPORTED_SUFFIXES:
            raise InvalidInput("file", f"unsupported file type '{suffix}' (supported: {' '.join(SUPPORTED_SUFFIXES)})")
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(status_code=413, detail=f"file larger than {settings.max_upload_bytes} bytes")
        from starlette.concurrency import run_in_threadpool

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            docs = await run_in_threadpool(load_documents, path)
        for d in docs:
            d.source = name
        return docs
    try:
        raw = json.loads(await request.body())
        body = DocumentIn.model_validate(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", f"invalid JSON ({exc.msg}); send JSON {{\"text\": ...}} or multipart with a 'file'") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(field, first["msg"]) from None
    if len(body.text) > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"text of {len(body.text)} characters; the limit is {settings.max_text_chars}")
    docs = document_from_text(body.text, body.doc)
    for d in docs:
        d.title = body.title or d.title
        d.region = body.region or d.region
        d.year = body.year or d.year
    return docs


@router.post("/documents")
async def documents(request: Request, tagger: TaggerDep, settings: SettingsDep, store: bool = False) -> dict:
    """A document (multipart ``file`` or JSON ``{"text": ...}``) -> segmented, tagged clauses.

    With ``?store=true`` the document and its tagged clauses are also stored (idempotent)."""
    docs = await _documents_from_request(request, settings)
    clauses = [c.record() for d in docs for c in segment(d)]
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    from starlette.concurrency import run_in_threadpool

    data = await run_in_threadpool(tag_clauses, tagger, clauses) if clauses else []
    request.app.state.metrics.clauses.inc(len(data))
    result = {"data": data, "count": len(data), "model": tagger.version, "documents": [d.info() for d in docs]}
    if store:
        from ..deps import _store

        st = _store(request)
        by_doc: dict[str, list[dict]] = {}
        for rec in data:
            by_doc.setdefault(rec["doc"], []).append(rec)
        stored = [await run_in_threadpool(st.ingest, d, by_doc.get(d.id, []), tagger.version) for d in docs]
        result["stored"] = [{"doc": r.doc, "status": r.status, "clauses": r.clauses} for r in stored]
    return result
