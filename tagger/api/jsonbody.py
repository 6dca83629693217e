"""JSON request bodies parsed at a bounded cost, and off the event loop when large.

``json.loads`` is C code that holds the GIL for the whole body, and what it builds can be
~30 times the body's size: 10 MB of ``[{}, {}, ...]`` to ``POST /v1/documents`` took ~1 s
and ~300 MB, and stalled ``/v1/health`` for up to 3 s while the event loop parsed it;
4 MB of ``{"clauses": [{}, {}, ...]}`` to ``POST /v1/tag`` took 43 s and 4 GB in
validation errors (2.8 million of them). Here:

* bodies of more than :data:`INLINE_JSON_BYTES` are parsed in the work pool (a worker
  process), with the rest of their request; smaller ones (~1 ms) on the event loop;
* before parsing, the values a body holds (objects, arrays, items) are counted, which is
  cheap (no object is built), and a body with more than :func:`max_json_values` is
  refused with 413: what parsing builds is then bounded whatever the body;
* ``POST /v1/tag`` bodies with more clauses than ``max_clauses_per_request`` are refused
  before validation (413), so their errors are bounded too.
"""

from __future__ import annotations

import json
import re

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ..errors import InvalidInput
from .schemas import DocumentIn, TagRequest, check_strings

__all__ = ["INLINE_JSON_BYTES", "max_json_values", "count_values", "parse_document_body", "parse_tag_body", "TAG_BODY_SCHEMA"]

# Bodies up to this size are parsed on the event loop (under ~1 ms); larger ones in the work pool.
INLINE_JSON_BYTES = 64 * 1024

# A JSON string, escapes included, up to its closing quote or the end of the body (an
# unterminated string matches too: every match consumes, so the scan is linear).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)


def max_json_values(settings) -> int:
    """Values (objects, arrays, items) a JSON body may hold: 50 per clause of the largest
    request (a clause with its extra fields), at least 10,000. Parsing builds ~100 bytes or
    less per value."""
    return max(10_000, 50 * settings.max_clauses_per_request)


def count_values(raw: bytes, limit: int) -> int:
    """About how many values ``raw`` holds (``{``, ``[`` and ``,`` outside strings); an
    exact count is made only when the quick one (strings included) passes ``limit``."""
    rough = raw.count(b"{") + raw.count(b"[") + raw.count(b",")
    if rough <= limit:
        return rough
    bare = _STRING.sub(b"", raw)
    return bare.count(b"{") + bare.count(b"[") + bare.count(b",")


def _check_size(raw: bytes, settings) -> None:
    limit = max_json_values(settings)
    n = count_values(raw, limit)
    if n > limit:
        raise HTTPException(status_code=413, detail=f"JSON body with {n} values (objects, arrays and items); the limit is {limit}")


# -- POST /v1/documents --------------------------------------------------------------------------
def parse_document_body(raw: bytes, settings) -> tuple[str, str, dict]:
    """``(text, doc, {title, region, year})`` of a JSON document body, or a 4xx."""
    _check_size(raw, settings)
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput("body", "JSON must be UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput("body", f"invalid JSON ({exc.msg}); send JSON {{\"text\": ...}} or multipart with a 'file'") from None
    except RecursionError:
        raise InvalidInput("body", "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise InvalidInput("body", f"invalid JSON ({exc})") from None
    check_strings(parsed)
    try:
        body = DocumentIn.model_validate(parsed)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(field, first["msg"]) from None
    if len(body.text) > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"text of {len(body.text)} characters; the limit is {settings.max_text_chars}")
    return body.text, body.doc, {"title": body.title, "region": body.region, "year": body.year}


# -- POST /v1/tag ----------------------------------------------------------------------------------
def _invalid(errors: list[dict]) -> RequestValidationError:
    """The error FastAPI raises for a body it parsed itself (the app answers it with 422):
    the same answer whether the body was parsed on the event loop or in a worker process.
    Only what the answer shows is kept (no ``input``: it would carry the body along)."""
    return RequestValidationError([{"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in errors])


def parse_tag_body(raw: bytes, settings) -> TagRequest:
    """A ``POST /v1/tag`` body, parsed and validated, or a 4xx."""
    from .limits import check_limits

    if not raw:
        raise _invalid([{"type": "missing", "loc": (), "msg": "Field required"}])
    _check_size(raw, settings)
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _invalid([{"type": "json_invalid", "loc": (exc.pos,), "msg": f"JSON decode error ({exc.msg})"}]) from None
    except RecursionError:
        raise _invalid([{"type": "json_invalid", "loc": (), "msg": "JSON nested too deeply"}]) from None
    except ValueError as exc:  # not UTF-8/16/32; an integer of more than 4,300 digits
        raise _invalid([{"type": "json_invalid", "loc": (), "msg": f"JSON decode error ({exc})"}]) from None
    clauses = parsed.get("clauses") if isinstance(parsed, dict) else None
    if isinstance(clauses, list):
        # Before validation: 1,000,000 invalid clauses made 2,000,000 errors.
        check_limits(len(clauses), 0, settings)
    try:
        return TagRequest.model_validate(parsed)
    except ValidationError as exc:
        raise _invalid(exc.errors(include_url=False, include_input=False, include_context=False)) from None


def _inline_refs(schema: dict) -> dict:
    """A model's JSON schema with its ``$defs`` written in place (for ``openapi_extra``,
    where ``#/$defs/...`` would point nowhere)."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.rsplit("/", 1)[1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


# The body of POST /v1/tag, read by hand (see the route), declared for the OpenAPI document.
TAG_BODY_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_refs(TagRequest.model_json_schema())}}}
}
