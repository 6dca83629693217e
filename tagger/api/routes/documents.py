from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request

from ...errors import InvalidInput, UnreadableDocument
from ...ingest.documents import Document, doc_id_for, document_from_text
from ...ingest.readers import SUPPORTED_SUFFIXES, DocumentTooLarge, ReadingTooSlow, read_bytes
from ...ingest.segment import segment
from ...tagging import model_version, resolve_overrides, tag_clauses
from ..deps import PoolDep, SettingsDep, TaggerDep
from ..jsonbody import parse_document_body
from ..limits import JobLimits, check_evidence_limit, check_limits
from ..schemas import DocumentIn, check_strings
from ..security import require_write
from ..rendering import FastJSON, render_json
from .tag import EvidenceMethod

router = APIRouter(prefix="/v1", tags=["documents"])


# Upload names: a name that a file system can hold (at most 255 bytes) is accepted whatever
# its length and never makes a 500; a longer one is refused with a 422 naming the limit.
# The client's name is never a path on the server: the upload is read from memory (no file
# is written: a worker process stopped mid-read leaves nothing behind), and the document id
# made from the name is shortened past MAX_DOC_ID_CHARS (tagger.ingest.documents: its start
# and a digest of the whole), so that GET /v1/documents/<id> can read it back.
def upload_name(raw: str | None) -> str:
    """The client's file name, reduced to a safe base name, or a 422."""
    name = Path((raw or "upload.txt").replace("\\", "/")).name
    if name in ("", ".", "..") or "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > 255:
        raise InvalidInput("file", "invalid file name (empty, '.', '..', a NUL byte or longer than 255 bytes)")
    check_strings(name, "file")
    return name


def too_slow(what: str, seconds: float, where: str = "") -> InvalidInput:
    """The answer (422) to a document still being read after TAGGER_PARSE_TIMEOUT."""
    field = "body" if "JSON" in what else "file"
    return InvalidInput(field, f"reading {what} took more than {seconds:g} s (TAGGER_PARSE_TIMEOUT) and was stopped{where}; "
                               "it is too costly to read (e.g. a PDF whose pages repeat one huge content stream)")


def _read_upload(data: bytes, name: str, settings) -> list[Document]:
    """Runs in the work pool: reading and repairing a file is CPU work. Reading stops at
    ``max_text_chars`` characters of text (a PDF at the page that passes it) and refuses
    PDFs of more than ``max_pdf_pages`` pages: 413. A PDF stops being read at the first page
    that starts after ``parse_timeout`` (422; in a worker process, one still reading a little
    later is killed: tagger.api.workers)."""
    suffix = Path(name).suffix.lower()
    deadline = time.monotonic() + settings.parse_timeout if settings.parse_timeout > 0 else None
    try:
        text = read_bytes(data, suffix, name, max_chars=settings.max_text_chars, max_pages=settings.max_pdf_pages, deadline=deadline)
    except ReadingTooSlow as exc:
        raise too_slow(f"the {suffix} file", settings.parse_timeout, f" at page {exc.page} of {exc.pages}") from None
    except DocumentTooLarge as exc:
        raise HTTPException(status_code=413, detail=f"{exc.reason} (TAGGER_MAX_TEXT_CHARS, TAGGER_MAX_PDF_PAGES)") from None
    except UnreadableDocument as exc:
        raise InvalidInput("file", exc.reason) from None
    return document_from_text(text, doc_id_for(Path(name)), source=name)


async def _source_from_request(request: Request, settings) -> tuple[tuple, dict]:
    """The document to process, checked but not yet read: ``(("file", bytes, name), {})``
    or ``(("json", body, None), {})``; see :func:`document_job`. A JSON body is parsed
    there, in the work pool: parsing 10 MB on the event loop stalled every request."""
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
    return ("json", await request.body(), None), {}


DOCUMENT_SLICE = 512  # clauses tagged per call inside one document job


def _segment_and_tag(tagger, docs: list[Document], settings, drift=None, **tag_kwargs) -> list[dict]:
    text_chars = sum(len(d.text) for d in docs)
    if text_chars > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"document text of {text_chars} characters; the limit is {settings.max_text_chars}")
    # A clause cut out of a run without punctuation says so (segment.HARD_MAX_CHARS).
    clauses = [{**c.record(), "hard_cut": True} if c.hard_cut else c.record() for d in docs for c in segment(d)]
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    if tag_kwargs.get("evidence"):
        # Never hit with the defaults (the segmenter's cap is below the evidence limit).
        check_evidence_limit(clauses, settings)
    # In slices: a document at the size limit holds thousands of clauses, and tagging them in
    # one call kept every slice's features, scores and evidence tables alive at once (three
    # such uploads together peaked at ~1.05 GB over the server and its workers). Records do
    # not depend on how clauses are batched (the CLI's --batch-size and Spark rely on it).
    out: list[dict] = []
    for i in range(0, len(clauses), DOCUMENT_SLICE):
        out += tag_clauses(tagger, clauses[i : i + DOCUMENT_SLICE], drift=drift, **tag_kwargs)
    return out


def document_job(tagger, settings, source: tuple, meta: dict, store_url: str | None, **tag_kwargs) -> tuple[bytes, int, object]:
    """All the CPU work of one request, in a worker process (:mod:`tagger.api.workers`):
    read, segment, tag, store (``store_url``: ``?store=true``) and render. Returns the
    rendered answer, the clause count and the drift counts (for /v1/drift and /metrics)."""
    from ...model.drift import DriftProfiler

    from ..workers import reading_done

    kind, payload, name = source
    if kind == "file":
        docs = _read_upload(payload, name, settings)
    else:
        if kind == "json":
            payload, name, meta = parse_document_body(payload, settings)
        docs = document_from_text(payload, name)
        for d in docs:
            d.title = meta.get("title") or d.title
            d.region = meta.get("region") or d.region
            d.year = meta.get("year") or d.year
    # Read: the reading time limit (TAGGER_PARSE_TIMEOUT) ends here.
    reading_done()
    profiler, acc = DriftProfiler.pair(tagger)
    data = _segment_and_tag(tagger, docs, settings, drift=(profiler, acc), **tag_kwargs)
    version = model_version(tagger, tag_kwargs.get("overrides"))
    drift = {d.id: profiler.document(acc.docs[d.id]) for d in docs if d.id in acc.docs}
    result = {"data": data, "count": len(data), "model": version, "documents": [d.info() for d in docs],
              # per document: OOV rate, confidence, verdict; the request's most frequent unseen terms
              "drift": {"documents": drift, "unseen_terms": profiler.top_terms(acc, 10)}}
    if store_url:
        # Here, not in the server: storing 2,000 clauses is ~0.5-0.7 s of Python (SQLAlchemy)
        # that would hold the server's GIL. The store is safe for writers in several processes.
        st = _process_store(store_url)
        by_doc: dict[str, list[dict]] = {}
        for rec in data:
            by_doc.setdefault(rec["doc"], []).append(rec)
        stored = [st.ingest(d, by_doc.get(d.id, []), version, drift.get(d.id)) for d in docs]
        result["stored"] = [{"doc": r.doc, "status": r.status, "clauses": r.clauses} for r in stored]
    return render_json(result), len(data), acc


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
async def documents(request: Request, tagger: TaggerDep, settings: SettingsDep, pool: PoolDep, store: bool = False, evidence: bool = True,
                    evidence_method: EvidenceMethod = "contributions") -> dict:
    """A document (multipart ``file`` or JSON ``{"text": ...}``) -> segmented, tagged clauses.

    With ``?store=true`` the document and its tagged clauses are also stored (idempotent);
    storing is a write and needs an API key (see README, "Access"). Records carry
    ``evidence`` unless ``?evidence=false`` (``evidence_method`` as ``/v1/tag``), and ``provenance``."""
    if store:
        require_write(request)
    source, meta = await _source_from_request(request, settings)
    # Rules as of this request: records, answer and store get one model stamp.
    ov = resolve_overrides(tagger, settings.overrides_file)
    store_url = settings.db_url if store else None
    what = f"the {Path(source[2]).suffix.lower() or '.txt'} file" if source[0] == "file" else "the JSON body"
    # Reading stops after TAGGER_PARSE_TIMEOUT (the worker is replaced); the work stops when
    # the client goes away, but a store write, once begun, is let finish.
    limits = JobLimits(read_seconds=settings.parse_timeout, what=what, cancellable_after_read=not store, too_slow=too_slow)
    body, n, drift = await pool.run_heavy(document_job, tagger, settings, source, meta, store_url, evidence=evidence, overrides=ov,
                                          evidence_method=evidence_method,
                                          limits=limits, receive=request.receive)
    request.app.state.metrics.clauses.inc(n)
    request.app.state.drift.add(drift)
    return FastJSON(body)
