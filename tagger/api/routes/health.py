from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import TaggerDep

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health")
def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
def ready(request: Request):
    """Readiness: the bundle is loaded."""
    tagger = request.app.state.tagger
    if tagger is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    return {"status": "ready", "model": tagger.version}


@router.get("/model")
def model(tagger: TaggerDep) -> dict:
    """The bundle's manifest, without server-side locations (MLflow tracking URI)."""
    raw = dict(tagger.manifest.raw)
    if isinstance(raw.get("mlflow"), dict):
        raw["mlflow"] = {k: v for k, v in raw["mlflow"].items() if k not in ("tracking_uri", "artifact_uri")}
    return raw
