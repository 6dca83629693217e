"""FastAPI app: online and batch tagging over the ONNX bundle.

One router per resource (``routes/``), dependencies as ``Annotated`` types (``deps.py``),
settings from :mod:`tagger.config`. Bad input is a 4xx with a message, never a 500.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..config import Settings, get_settings
from ..errors import InvalidInput, TaggerError
from ..model.overrides import InvalidOverrides
from .deps import fresh_overrides
from .bodies import BufferBudget, QuietDisconnects
from .limits import BodyLimit, WorkPool, drain_on_exit_signals
from .metrics import Metrics
from .routes import clauses, documents, documents_view, drift, health, page, tag
from .security import HostCheck, require_read

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, tagger=None) -> FastAPI:
    """Build the app. ``tagger`` may be passed in (tests, ``tagger serve`` which loads it
    before binding the port); otherwise it is loaded at start-up."""
    st = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.tagger is None:
            from ..model.inference import load_tagger

            app.state.tagger = load_tagger(st.model_dir, st.model_uri)
        from ..model.drift import DriftProfiler

        app.state.drift.bind(DriftProfiler.for_tagger(app.state.tagger))
        if st.work_process_count > 0:
            from .workers import WorkerProcesses

            # Started in the background: ready in ~2 s; the first big request waits for them.
            app.state.pool.processes = WorkerProcesses.for_tagger(st.work_process_count, app.state.tagger, st)
            app.state.pool.processes.start()
        # SIGTERM/SIGINT: whatever the launcher's graceful shutdown, jobs in worker processes
        # get the shutdown grace, then are stopped and answered 503 (tagger.api.limits).
        drain_on_exit_signals(app.state.pool, getattr(st, "shutdown_timeout", 3.0))
        try:
            yield
        finally:
            if app.state.pool.processes is not None:
                # The server has already given running requests their grace period
                # (TAGGER_SHUTDOWN_TIMEOUT): a job still running has no one waiting for it.
                app.state.pool.processes.shutdown(timeout=0.5)
            app.state.pool.shutdown()

    app = FastAPI(title="policy-clause-tagger", version="1", lifespan=lifespan)
    app.state.settings = st
    app.state.tagger = tagger
    app.state.store = None
    app.state.metrics = Metrics()
    app.state.drift = drift.DriftWindow(app.state.metrics)
    app.state.pool = WorkPool(st.work_threads, st.work_queue, queue_timeout=st.queue_timeout)
    from .batcher import MicroBatcher
    from .routes.tag import EVIDENCE_COST, batch_tag, work_cost

    # args of batch_tag: (tagger, evidence, overrides, evidence method). Counted in work units:
    # a 10,000-character clause is 50 (25 ms), not 1; with contribution evidence 3 times that.
    # Occlusion (~50x the work of a clause) never runs on the event loop.
    app.state.batcher = MicroBatcher(
        app.state.pool.run, batch_tag,
        inline=lambda n, args: args[3] != "occlusion" and n * (EVIDENCE_COST["contributions"] if args[1] else 1) <= st.inline_clauses,
        weight=lambda c: work_cost((len(c["text"]),), False), side=app.state.drift.add)
    app.add_middleware(app.state.metrics.asgi)
    # Bytes of request bodies held across all requests (tagger.api.bodies): inside the
    # per-route limits, so that a body too large for its route is a 413 first.
    app.add_middleware(BufferBudget, budget=st.max_buffered_bytes)
    # Outside every layer that reads the body (only the Host check below is further out).
    app.add_middleware(
        BodyLimit,
        limits=lambda: {"/v1/documents": st.max_upload_bytes + 64 * 1024, "/v1/tag": st.max_json_bytes},
        default=lambda: 64 * 1024,
    )
    # Outermost of the layers that answer: a request with a Host this server does not answer to (DNS
    # rebinding) is refused before any layer reads it, on every route (tagger.api.security).
    app.add_middleware(HostCheck, allowed=st.allowed_hosts)
    # Around everything (it reads and answers nothing): a client gone before the end of its
    # body is one log line, not a traceback.
    app.add_middleware(QuietDisconnects)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse(
            status_code=422,
            content={"error": "invalid_request", "message": f"{field}: {first.get('msg', 'invalid')}", "detail": _jsonable(errors)},
        )

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput):
        return JSONResponse(status_code=422, content={"error": "invalid_input", "message": str(exc)})

    @app.exception_handler(InvalidOverrides)
    async def _overrides(request: Request, exc: InvalidOverrides):
        # The server's own rules file is broken (an edit under way): not the client's fault,
        # and tagging without the reviewed rules would silently answer something else.
        return JSONResponse(status_code=503, content={"error": "invalid_overrides", "message": str(exc)}, headers={"Retry-After": "5"})

    @app.exception_handler(TaggerError)
    async def _tagger_error(request: Request, exc: TaggerError):
        return JSONResponse(status_code=422, content={"error": type(exc).__name__, "message": str(exc)})

    app.include_router(health.router)
    # Reads are open unless TAGGER_REQUIRE_KEY_FOR_READS=1, which covers every /v1/ route but
    # /v1/health (readiness and the model manifest too); /v1/health and /metrics stay open for probes.
    guarded = [Depends(require_read)]
    app.include_router(health.status_router, dependencies=guarded)
    # The routes that tag read the override rules file off the event loop first (deps.fresh_overrides).
    rules = [Depends(fresh_overrides)]
    app.include_router(tag.router, dependencies=guarded + rules)
    app.include_router(documents.router, dependencies=guarded + rules)
    app.include_router(documents_view.router, dependencies=guarded)
    app.include_router(clauses.router, dependencies=guarded)
    app.include_router(drift.router, dependencies=guarded)
    app.include_router(page.router)  # static HTML; the data it fetches is guarded
    app.include_router(app.state.metrics.router)
    return app


def _jsonable(errors: list[dict]) -> list[dict]:
    out = []
    for e in errors:
        e = {k: v for k, v in e.items() if k in ("loc", "msg", "type")}
        e["loc"] = [str(p) for p in e.get("loc", ())]
        out.append(e)
    return out
