"""Request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ClauseIn", "TagRequest", "TagResponse", "DocumentIn"]


class ClauseIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # extra fields pass through to the output

    id: str = Field(min_length=1)
    text: str


class TagRequest(BaseModel):
    clauses: list[ClauseIn] | None = None
    text: str | None = None

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
    title: str = ""
    doc: str = Field(default="document", pattern=r"^[\w\-.]{1,120}$")
    region: str = ""
    year: int | None = None
