"""Request dependencies as Annotated types.

The cheap ones are ``async def``: FastAPI runs a plain ``def`` dependency in a worker
thread, and five thread hand-offs were a measurable share of a single-clause request."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ..config import Settings
from ..model.inference import Tagger
from ..store.db import Store
from .limits import WorkPool

__all__ = ["TaggerDep", "SettingsDep", "StoreDep", "PoolDep", "fresh_overrides"]


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


async def fresh_overrides(request: Request) -> None:
    """Router dependency of the routes that tag (``POST /v1/tag``, ``POST /v1/documents``):
    the override rules file is stat'ed, and re-parsed when it changed, in a worker thread,
    never on the event loop (a 10,000-rule file takes ~1-5 s to parse: on the loop that
    stalled every request, /v1/health included). The result -- the rules, or the file's
    InvalidOverrides -- is pinned for this request (:func:`tagger.model.overrides.pin_overrides`),
    so the route's ``resolve_overrides`` returns it without touching the file, or raises the
    error (503) where the route asks for the rules, after its own checks.

    One thread at a time does this (a limiter of 1): requests that arrive during a reload
    wait for it without holding a thread each, so the thread pool serving plain ``def``
    routes (/v1/health) is never exhausted by them."""
    app = request.app
    tagger = app.state.tagger
    if tagger is None:
        return  # TaggerDep answers 503 "model not loaded"
    import anyio

    from ..model.overrides import InvalidOverrides, current_overrides, pin_overrides
    from ..taxonomy import HEADS

    path = app.state.settings.overrides_file
    labels = {h: tagger.manifest.labels(h) for h in HEADS}  # what tagging.resolve_overrides checks against

    def read():
        try:
            return current_overrides(path, labels)
        except InvalidOverrides as exc:
            return exc

    loop = asyncio.get_running_loop()
    held = getattr(app.state, "overrides_limiter", None)
    if held is None or held[0] is not loop:  # one per event loop (a TestClient may start several)
        held = app.state.overrides_limiter = (loop, anyio.CapacityLimiter(1))
    pin_overrides(path, labels, await anyio.to_thread.run_sync(read, limiter=held[1]))
