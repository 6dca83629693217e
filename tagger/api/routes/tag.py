from __future__ import annotations

import hashlib

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from ...tagging import tag_clauses
from ..deps import SettingsDep, TaggerDep
from ..schemas import TagRequest, TagResponse

router = APIRouter(prefix="/v1", tags=["tag"])


class FastJSON(JSONResponse):
    """Compact UTF-8 JSON (Chinese unescaped), without a second validation pass."""

    def render(self, content) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_limits(n_clauses: int, n_chars: int, settings) -> None:
    if n_clauses > settings.max_clauses_per_request:
        raise HTTPException(status_code=413, detail=f"{n_clauses} clauses in one request; the limit is {settings.max_clauses_per_request}")
    if n_chars > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"{n_chars} characters of text in one request; the limit is {settings.max_text_chars}")


@router.post("/tag", response_model=TagResponse, response_class=FastJSON)
def tag(body: TagRequest, tagger: TaggerDep, settings: SettingsDep, request: Request):
    """Tag clauses (or one text) in a single vectorisation pass."""
    if body.text is not None:
        clauses = [{"id": "text-" + hashlib.sha1(body.text.encode("utf-8")).hexdigest()[:12], "text": body.text}]
    else:
        clauses = [c.model_dump() for c in body.clauses]
    check_limits(len(clauses), sum(len(c["text"]) for c in clauses), settings)
    data = tag_clauses(tagger, clauses) if clauses else []
    request.app.state.metrics.clauses.inc(len(data))
    # Returned as a response object: skips re-validating every record against the
    # response model (the contract is kept by tag_clauses and tested).
    return FastJSON({"data": data, "count": len(data), "model": tagger.version})
