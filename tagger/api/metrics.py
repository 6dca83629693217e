"""Prometheus metrics: request counts, latency histogram, clauses tagged."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Metrics"]

# Label values come from a closed set: a client inventing methods or paths must not grow
# the metrics without bound.
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


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
            finally:
                path = getattr(scope.get("route"), "path", "unmatched")
                method = scope.get("method", "")
                method = method if method in KNOWN_METHODS else "other"
                metrics.latency.labels(path).observe(time.perf_counter() - t0)
                metrics.requests.labels(method, path, str(status)).inc()

        return middleware

    def endpoint(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
