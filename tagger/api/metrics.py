"""Prometheus metrics: request counts, latency histogram, clauses tagged."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Metrics"]


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

    async def middleware(self, request: Request, call_next):
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.latency.labels(path).observe(time.perf_counter() - t0)
            self.requests.labels(request.method, path, str(status)).inc()

    def endpoint(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
