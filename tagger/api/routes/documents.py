from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from ...errors import InvalidInput, UnreadableDocument
from ...ingest import Document, document_from_text, load_documents
from ...readers import SUPPORTED_SUFFIXES
from ...segment import segment
from ...tagging import tag_clauses
from ..deps import PoolDep, SettingsDep, TaggerDep
from ..schemas import DocumentIn, check_strings
from ..security import require_write
from .tag import FastJSON, check_limits, render_json

router = APIRouter(prefix="/v1", tags=["documents"])


def upload_name(raw: str | None) -> str:
    """The client's file name, reduced to a safe base name, or a 422."""
    name = Path((raw or "upload.txt").replace("\\", "/")).name
    if name in ("", ".", "..") or "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise InvalidInput("file", "invalid file name (empty, '.', '..', a NUL byte or longer than 255 bytes)")
    check_strings(name, "file")
    return name


def _read_upload(data: bytes, name: str) -> list[Document]:
    """Runs in the work pool: writing, reading and repairing a file is CPU work."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            docs = load_documents(path)
        except UnreadableDocument as exc:
            # The reason only: the message must not show the server's temporary path.
            raise InvalidInput("file", exc.reason) from None
    for d in docs:
        d.source = name
    return docs


async def _documents_from_request(request: Request, settings, pool) -> list[Document]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise InvalidInput("file", "multipart request needs a 'file' part")
        name = upload_name(upload.filename)
        suffix = Path(name).suffix.lower() or ".txt"
        if suffix not in SUPPORTED_SUFFIXES:
            raise InvalidInput("file", f"unsupported file type '{suffix}' (supported: {' '.join(SUPPORTED_SUFFIXES)})")
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(status_code=413, detail=f"file larger than {settings.max_upload_bytes} bytes")
        if Path(name).suffix.lower() != suffix:
            name += suffix
        return await pool.run(_read_upload, data, name)
    if ctype != "application/json":
        raise HTTPException(status_code=415, detail="send multipart/form-data with a 'file' part, or application/json {\"text\": ...}")
    raw = await request.body()
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput("body", "JSON must be UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", f"invalid JSON ({exc.msg}); send JSON {{\"text\": ...}} or multipart with a 'file'") from None
    except RecursionError:
        raise InvalidInput("body", "JSON nested too deeply") from None
    check_strings(parsed)
    try:
        body = DocumentIn.model_validate(parsed)
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


def _segment_and_tag(tagger, docs: list[Document], settings) -> list[dict]:
    text_chars = sum(len(d.text) for d in docs)
    if text_chars > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"document text of {text_chars} characters; the limit is {settings.max_text_chars}")
    clauses = [c.record() for d in docs for c in segment(d)]
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    return tag_clauses(tagger, clauses) if clauses else []


# The body is read by hand (multipart or JSON), so its schema is declared here for the
# OpenAPI document (clients, and the fuzz test that generates requests from it).
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DocumentIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}


@router.post("/documents", openapi_extra=_BODY)
async def documents(request: Request, tagger: TaggerDep, settings: SettingsDep, pool: PoolDep, store: bool = False) -> dict:
    """A document (multipart ``file`` or JSON ``{"text": ...}``) -> segmented, tagged clauses.

    With ``?store=true`` the document and its tagged clauses are also stored (idempotent);
    storing is a write and needs an API key (see README, "Access")."""
    if store:
        require_write(request)
    docs = await _documents_from_request(request, settings, pool)
    data = await pool.run(_segment_and_tag, tagger, docs, settings)
    request.app.state.metrics.clauses.inc(len(data))
    result = {"data": data, "count": len(data), "model": tagger.version, "documents": [d.info() for d in docs]}
    if store:
        from ..deps import _store

        st = _store(request)
        by_doc: dict[str, list[dict]] = {}
        for rec in data:
            by_doc.setdefault(rec["doc"], []).append(rec)
        stored = [await pool.run(st.ingest, d, by_doc.get(d.id, []), tagger.version) for d in docs]
        result["stored"] = [{"doc": r.doc, "status": r.status, "clauses": r.clauses} for r in stored]
    return FastJSON(await pool.run(render_json, result))
