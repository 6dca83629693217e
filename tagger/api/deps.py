"""Request dependencies as Annotated types.

The cheap ones are ``async def``: FastAPI runs a plain ``def`` dependency in a worker
thread, and five thread hand-offs were a measurable share of a single-clause request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ..config import Settings
from ..model.inference import Tagger
from ..store.db import Store
from .limits import WorkPool

__all__ = ["TaggerDep", "SettingsDep", "StoreDep", "PoolDep"]


async def _tagger(request: Request) -> Tagger:
    tagger = request.app.state.tagger
    if tagger is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    return tagger


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


TaggerDep = Annotated[Tagger, Depends(_tagger)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _store(request: Request) -> Store:
    # Opened on first use: serving without the analysts' store needs no database.
    if getattr(request.app.state, "store", None) is None:
        request.app.state.store = Store(request.app.state.settings.db_url)
    return request.app.state.store


StoreDep = Annotated[Store, Depends(_store)]


async def _pool(request: Request):
    return request.app.state.pool


PoolDep = Annotated[WorkPool, Depends(_pool)]
