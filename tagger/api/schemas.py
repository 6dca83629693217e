"""Request and response bodies."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import InvalidInput
from ..ingest.textnorm import is_blank

__all__ = ["ClauseIn", "TagRequest", "TagResponse", "DocumentIn", "check_strings", "MAX_JSON_DEPTH"]

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_JSON_DEPTH = 32


def check_strings(obj, where: str = "body", depth: int = 0) -> None:
    """Refuse lone surrogates anywhere in a parsed JSON value (they cannot be written back as
    UTF-8, so they would fail later as a 500), and nesting deeper than ``MAX_JSON_DEPTH``."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(where, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(obj, str):
        if _SURROGATE.search(obj):
            raise InvalidInput(where, "text holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            check_strings(k, where, depth + 1)
            check_strings(v, f"{where}.{k}" if where != "body" else str(k), depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_strings(v, f"{where}.{i}" if where != "body" else str(i), depth + 1)


def _not_blank(v: str) -> str:
    # One rule with `tagger tag` (tagger.tagging.validate_clause): "\u200b", "\ufeff" or
    # "\u0000" alone are as empty as "".
    if is_blank(v):
        raise ValueError("text is empty (only white space, control or invisible characters)")
    return v


class ClauseIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # extra fields pass through to the output

    id: str = Field(min_length=1, max_length=256)
    text: str

    _text = field_validator("text")(_not_blank)


class TagRequest(BaseModel):
    clauses: list[ClauseIn] | None = None
    text: str | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, v):
        return v if v is None else _not_blank(v)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.clauses is None) == (self.text is None):
            raise ValueError("give exactly one of 'clauses' (list of {id, text}) or 'text'")
        return self


class TagResponse(BaseModel):
    data: list[dict]
    count: int
    model: str


class DocumentIn(BaseModel):
    text: str
    title: str = Field(default="", max_length=500)
    doc: str = Field(default="document", pattern=r"^[\w\-.]{1,120}$")
    region: str = Field(default="", max_length=200)
    year: int | None = Field(default=None, ge=1900, le=2100)

    _text = field_validator("text")(_not_blank)
