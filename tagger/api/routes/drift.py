"""``GET /v1/drift``: the drift of what this server tagged recently (issue 22).

Every ``/v1/documents`` job and every ``/v1/tag`` model call (a batch of concurrent small
requests, or a big request's job) sends back its drift counts (a
:class:`~tagger.model.drift.DriftAccumulator`, counted in the worker process from the same
tokens and probabilities as the answer); the window keeps the last hour's, merged per
minute, and merges those when asked. The window is per server process: with
``tagger serve --workers N`` each worker answers for the requests it served, while the
Prometheus figures (``/metrics``) are summed over all of them.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from fastapi import APIRouter, Request

from ...model.drift import NO_REFERENCE, VERDICTS, DriftProfiler

router = APIRouter(prefix="/v1", tags=["drift"])

WINDOW_SECONDS = 3600
# The window is kept as one merged accumulator per minute: with POST /v1/tag feeding it, a
# busy server adds hundreds of requests a second, and merging them all on every request (the
# first design) cut the API to 25 requests/s. Adding costs one small merge; a report merges at
# most WINDOW_SECONDS / BUCKET_SECONDS accumulators.
BUCKET_SECONDS = 60
# The window's gauge on /metrics is recomputed at most this often (a report is ~ms of work).
GAUGE_EVERY_SECONDS = 10.0


class DriftWindow:
    def __init__(self, metrics=None, seconds: float = WINDOW_SECONDS, bucket_seconds: float = BUCKET_SECONDS):
        self.seconds, self.bucket_seconds = seconds, bucket_seconds
        self.buckets: deque = deque()  # [bucket number, merged accumulator, requests]
        self.metrics = metrics
        self._lock = threading.Lock()
        self._profiler = None
        self._gauge_at = float("-inf")

    def bind(self, profiler: DriftProfiler) -> None:
        self._profiler = profiler

    def _expire(self, now: float) -> None:
        oldest = (now - self.seconds) // self.bucket_seconds
        while self.buckets and self.buckets[0][0] < oldest:
            self.buckets.popleft()

    def add(self, acc) -> None:
        if acc is None or not acc.n:
            return
        now = time.monotonic()
        key = now // self.bucket_seconds
        with self._lock:
            if self.buckets and self.buckets[-1][0] == key:
                self.buckets[-1][1].merge(acc)
                self.buckets[-1][2] += 1
            else:
                # A fresh accumulator owns the bucket: the caller's stays the caller's.
                own = self._profiler.new_accumulator().merge(acc) if self._profiler is not None else acc
                self.buckets.append([key, own, 1])
            self._expire(now)
        if self.metrics is not None and self._profiler is not None:
            self.metrics.observe_drift(self._profiler, acc)
            if now - self._gauge_at >= GAUGE_EVERY_SECONDS:
                self._gauge_at = now
                self.metrics.drift_window.set(self.report(documents=False, top_terms=0).get("score") or 0.0)

    def report(self, documents: bool = True, top_terms: int = 25) -> dict:
        with self._lock:
            self._expire(time.monotonic())
            recent = [(b[1], b[2]) for b in self.buckets]
            acc = self._profiler.new_accumulator()
            for part, _ in recent:
                acc.merge(part)
        out = self._profiler.report(acc, top_terms=top_terms, documents=documents)
        out["window"] = {"seconds": self.seconds, "requests": sum(n for _, n in recent)}
        return out


@router.get("/drift")
def drift(request: Request, documents: bool = False) -> dict:
    """The recent window's drift: verdict, OOV rate, label mix and divergence per head,
    unseen terms; ``?documents=true`` adds the figures per document."""
    return request.app.state.drift.report(documents=documents)


__all__ = ["router", "DriftWindow", "VERDICTS", "NO_REFERENCE"]
