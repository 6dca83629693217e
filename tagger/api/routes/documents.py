from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from ...errors import InvalidInput, UnreadableDocument
from ...ingest.documents import Document, doc_id_for, document_from_text, load_documents
from ...ingest.readers import SUPPORTED_SUFFIXES
from ...ingest.segment import segment
from ...tagging import model_version, resolve_overrides, tag_clauses
from ..deps import PoolDep, SettingsDep, TaggerDep
from ..schemas import DocumentIn, check_strings
from ..security import require_write
from .tag import FastJSON, check_evidence_limit, check_limits, render_json

router = APIRouter(prefix="/v1", tags=["documents"])


# Upload names: a name that a file system can hold (at most 255 bytes) is accepted whatever
# its length and never makes a 500; a longer one is refused with a 422 naming the limit.
# The client's name is never a path on the server: the upload is read from a temporary file
# of a fixed name (a 252-255-byte name plus the ".txt" added below would not fit), and the
# document id made from the name is shortened past MAX_DOC_ID_CHARS (tagger.ingest.documents:
# its start and a digest of the whole), so that GET /v1/documents/<id> can read it back.
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
        path = Path(tmp) / ("upload" + Path(name).suffix.lower())  # see upload_name
        path.write_bytes(data)
        try:
            docs = load_documents(path, doc_id=doc_id_for(Path(name)))
        except UnreadableDocument as exc:
            # The reason only: the message must not show the server's temporary path.
            raise InvalidInput("file", exc.reason) from None
    for d in docs:
        d.source = name
    return docs


async def _source_from_request(request: Request, settings) -> tuple[tuple, dict]:
    """The document to process, checked but not yet read: ``(("file", bytes, name), {})``
    or ``(("text", text, doc_id), {title, region, year})``; see :func:`document_job`."""
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
        return ("file", data, name), {}
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
    return ("text", body.text, body.doc), {"title": body.title, "region": body.region, "year": body.year}


def _segment_and_tag(tagger, docs: list[Document], settings, **tag_kwargs) -> list[dict]:
    text_chars = sum(len(d.text) for d in docs)
    if text_chars > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"document text of {text_chars} characters; the limit is {settings.max_text_chars}")
    # A clause cut out of a run without punctuation says so (segment.HARD_MAX_CHARS).
    clauses = [{**c.record(), "hard_cut": True} if c.hard_cut else c.record() for d in docs for c in segment(d)]
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    if tag_kwargs.get("evidence"):
        # Never hit with the defaults (the segmenter's cap is below the evidence limit).
        check_evidence_limit(clauses, settings)
    return tag_clauses(tagger, clauses, **tag_kwargs) if clauses else []


def document_job(tagger, settings, source: tuple, meta: dict, store_url: str | None, **tag_kwargs) -> tuple[bytes, int]:
    """All the CPU work of one request, in a worker process (:mod:`tagger.api.workers`):
    read, segment, tag, store (``store_url``: ``?store=true``) and render. Returns the
    rendered answer and the clause count: only bytes go back to the server process."""
    kind, payload, name = source
    if kind == "file":
        docs = _read_upload(payload, name)
    else:
        docs = document_from_text(payload, name)
        for d in docs:
            d.title = meta.get("title") or d.title
            d.region = meta.get("region") or d.region
            d.year = meta.get("year") or d.year
    data = _segment_and_tag(tagger, docs, settings, **tag_kwargs)
    version = model_version(tagger, tag_kwargs.get("overrides"))
    result = {"data": data, "count": len(data), "model": version, "documents": [d.info() for d in docs]}
    if store_url:
        # Here, not in the server: storing 2,000 clauses is ~0.5-0.7 s of Python (SQLAlchemy)
        # that would hold the server's GIL. The store is safe for writers in several processes.
        st = _process_store(store_url)
        by_doc: dict[str, list[dict]] = {}
        for rec in data:
            by_doc.setdefault(rec["doc"], []).append(rec)
        stored = [st.ingest(d, by_doc.get(d.id, []), version) for d in docs]
        result["stored"] = [{"doc": r.doc, "status": r.status, "clauses": r.clauses} for r in stored]
    return render_json(result), len(data)


_stores: dict[str, object] = {}
_stores_lock = threading.Lock()


def _process_store(url: str):
    """One store (engine, connection pool) per database URL and process."""
    from ...store.db import Store

    with _stores_lock:
        if url not in _stores:
            _stores[url] = Store(url)
        return _stores[url]


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
async def documents(request: Request, tagger: TaggerDep, settings: SettingsDep, pool: PoolDep, store: bool = False, evidence: bool = True) -> dict:
    """A document (multipart ``file`` or JSON ``{"text": ...}``) -> segmented, tagged clauses.

    With ``?store=true`` the document and its tagged clauses are also stored (idempotent);
    storing is a write and needs an API key (see README, "Access"). Records carry
    ``evidence`` unless ``?evidence=false`` (~20x faster), and ``provenance``."""
    if store:
        require_write(request)
    source, meta = await _source_from_request(request, settings)
    # Rules as of this request: records, answer and store get one model stamp.
    ov = resolve_overrides(tagger, settings.overrides_file)
    store_url = settings.db_url if store else None
    body, n = await pool.run_heavy(document_job, tagger, settings, source, meta, store_url, evidence=evidence, overrides=ov)
    request.app.state.metrics.clauses.inc(n)
    return FastJSON(body)
