"""Prometheus metrics: request counts, latency histogram, clauses tagged.

With several web workers (``tagger serve --workers N``) each process counts its own
requests; the supervisor (tagger.api.server) then runs prometheus_client in multiprocess
mode: ``PROMETHEUS_MULTIPROC_DIR`` names a temporary folder it creates (and removes at
exit), every worker writes its values there, and ``/metrics``, whichever worker answers it,
sums them over all workers, those that have exited and been replaced included (counters
never go back).
"""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from starlette.requests import ClientDisconnect

from .connections import CUT_KEY

__all__ = ["Metrics", "enable_multiprocess"]

# Label values come from a closed set: a client inventing methods or paths must not grow
# the metrics without bound.
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
_CUT_STATUS = {"body timeout": 408, "shutdown": 503}


class Metrics:
    def __init__(self) -> None:
        # One registry per app, so several apps (tests) do not collide.
        self.registry = CollectorRegistry()
        self.requests = Counter("tagger_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "tagger_request_latency_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.clauses = Counter("tagger_clauses_tagged_total", "Clauses tagged", registry=self.registry)
        # Drift (tagger.model.drift): labels only from the closed set of verdicts, never a
        # term or a document; the OOV rate of a period is rate(oov_words) / rate(words).
        self.drift_documents = Counter("tagger_drift_documents_total", "Documents tagged, by drift verdict", ["verdict"],
                                       registry=self.registry)
        self.drift_words = Counter("tagger_drift_words_total", "Words in tagged documents", registry=self.registry)
        self.drift_oov_words = Counter("tagger_drift_oov_words_total", "Words the model has no column for", registry=self.registry)
        self.drift_oov = Histogram("tagger_drift_document_oov_rate", "OOV rate per tagged document",
                                   buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0), registry=self.registry)
        self.drift_score = Histogram("tagger_drift_document_score", "Drift score (long OOV rate) per tagged document",
                                     buckets=(0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 1.0), registry=self.registry)
        self.drift_confidence = Histogram("tagger_drift_document_confidence", "Mean confidence per tagged document",
                                          buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=self.registry)
        # Per process (the recent window of GET /v1/drift); the highest over live workers.
        self.drift_window = Gauge("tagger_drift_window_score", "Drift score of the recent window (GET /v1/drift)",
                                  registry=self.registry, multiprocess_mode="livemax")
        # Multiprocess mode (values in files, summed at each scrape): chosen by the value
        # class prometheus_client uses, which the supervisor sets before forking workers.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") if _multiprocess_values() else None
        self.router = APIRouter()
        self.router.add_api_route("/metrics", self.endpoint, methods=["GET"], include_in_schema=False)

    def asgi(self, app):
        """Pure ASGI middleware (not BaseHTTPMiddleware: that one runs the app in a task
        group, wraps its exceptions into groups and costs ~0.3 ms a request)."""
        metrics = self

        async def middleware(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            t0 = time.perf_counter()
            status = 500

            async def tracked(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, tracked)
            except ClientDisconnect:
                status = 499  # the client went away before the end of its body (nginx's code)
                raise
            finally:
                # Cut by the server (tagger.api.connections): what the client was told.
                status = _CUT_STATUS.get(scope.get(CUT_KEY), status)
                path = getattr(scope.get("route"), "path", "unmatched")
                method = scope.get("method", "")
                method = method if method in KNOWN_METHODS else "other"
                metrics.latency.labels(path).observe(time.perf_counter() - t0)
                metrics.requests.labels(method, path, str(status)).inc()

        return middleware

    def observe_drift(self, profiler, acc) -> None:
        from ..model.drift import NO_REFERENCE, VERDICTS

        self.drift_words.inc(acc.words)
        self.drift_oov_words.inc(acc.oov)
        for doc, stats in acc.docs.items():
            if not doc:  # /v1/tag clauses without a "doc": counted in the words, not as a document
                continue
            d = profiler.document(stats)
            verdict = d["verdict"] if d["verdict"] in VERDICTS else NO_REFERENCE
            self.drift_documents.labels(verdict.replace(" ", "_")).inc()
            if d["oov_rate"] is not None:
                self.drift_oov.observe(d["oov_rate"])
            if d["score"] is not None:
                self.drift_score.observe(d["score"])
            if d["mean_confidence"] is not None:
                self.drift_confidence.observe(d["mean_confidence"])

    def endpoint(self) -> Response:
        registry = self.registry
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _multiprocess_values() -> bool:
    return values.ValueClass is not values.MutexValue


def enable_multiprocess(path: str) -> None:
    """Multiprocess mode for metrics created from now on in this process and its forks
    (prometheus_client picks its value class once, at import, from the environment)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.get_value_class()
