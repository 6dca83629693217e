from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from ...tagging import tag_clauses
from ..deps import PoolDep, SettingsDep, TaggerDep
from ..schemas import TagRequest, TagResponse, check_strings
from ..security import require_json

router = APIRouter(prefix="/v1", tags=["tag"])


def render_json(content) -> bytes:
    """Compact UTF-8 JSON (Chinese unescaped). Large answers are rendered in the work pool:
    on the event loop a 3,000-clause answer would stall every other request for ~100 ms."""
    import json

    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class FastJSON(JSONResponse):
    """Compact UTF-8 JSON (Chinese unescaped), without a second validation pass."""

    def render(self, content) -> bytes:
        return content if isinstance(content, bytes) else render_json(content)


def check_limits(n_clauses: int, n_chars: int, settings) -> None:
    if n_clauses > settings.max_clauses_per_request:
        raise HTTPException(status_code=413, detail=f"{n_clauses} clauses in one request; the limit is {settings.max_clauses_per_request}")
    if n_chars > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"{n_chars} characters of text in one request; the limit is {settings.max_text_chars}")


@router.post("/tag", response_model=TagResponse, response_class=FastJSON, dependencies=[Depends(require_json)])
async def tag(body: TagRequest, tagger: TaggerDep, settings: SettingsDep, pool: PoolDep, request: Request):
    """Tag clauses (or one text) in a single vectorisation pass."""
    if body.text is not None:
        check_strings(body.text, "text")
        clauses = [{"id": "text-" + hashlib.sha1(body.text.encode("utf-8")).hexdigest()[:12], "text": body.text}]
    else:
        clauses = [c.model_dump() for c in body.clauses]
        check_strings(clauses, "clauses")
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    data = await pool.run(tag_clauses, tagger, clauses) if clauses else []
    request.app.state.metrics.clauses.inc(len(data))
    # Returned as a response object: skips re-validating every record against the
    # response model (the contract is kept by tag_clauses and tested).
    body = {"data": data, "count": len(data), "model": tagger.version}
    return FastJSON(await pool.run(render_json, body) if len(data) > 50 else body)
