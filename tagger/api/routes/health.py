from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import TaggerDep

router = APIRouter(prefix="/v1", tags=["health"])
# Readiness and the model manifest say which model and engine serve: reads like any other,
# behind TAGGER_REQUIRE_KEY_FOR_READS (tagger.api.create_app). Only /v1/health stays open.
status_router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health")
def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@status_router.get("/ready")
def ready(request: Request):
    """Readiness: the bundle is loaded. ``work_processes`` says whether the worker processes
    for documents and large requests are up; until they are, such a request waits for them
    (small requests do not), so it does not hold readiness back. ``engine`` says whether the
    compiled loops serve (see ``Tagger.engine``)."""
    tagger = request.app.state.tagger
    if tagger is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    procs = request.app.state.pool.processes
    workers = {"count": procs.n, "started": procs.started} if procs is not None else {"count": 0, "started": True}
    return {"status": "ready", "model": tagger.version, "engine": tagger.engine, "work_processes": workers}


@status_router.get("/model")
def model(tagger: TaggerDep) -> dict:
    """The bundle's manifest, without server-side locations (MLflow tracking URI)."""
    raw = dict(tagger.manifest.raw)
    if isinstance(raw.get("mlflow"), dict):
        raw["mlflow"] = {k: v for k, v in raw["mlflow"].items() if k not in ("tracking_uri", "artifact_uri")}
    return raw
