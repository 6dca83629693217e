"""``GET /v1/drift``: the drift of what this server tagged recently (issue 22).

Every ``/v1/documents`` job and every ``/v1/tag`` model call (a batch of concurrent small
requests, or a big request's job) sends back its drift counts (a
:class:`~tagger.model.drift.DriftAccumulator`, counted in the worker process from the same
tokens and probabilities as the answer); the window keeps the last hour's, at most
``MAX_JOBS`` of them, and merges them when asked. The window is per server process: with
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
MAX_JOBS = 1000


class DriftWindow:
    def __init__(self, metrics=None, seconds: float = WINDOW_SECONDS, max_jobs: int = MAX_JOBS):
        self.seconds = seconds
        self.jobs: deque = deque(maxlen=max_jobs)
        self.metrics = metrics
        self._lock = threading.Lock()
        self._profiler = None

    def bind(self, profiler: DriftProfiler) -> None:
        self._profiler = profiler

    def add(self, acc) -> None:
        if acc is None or not acc.n:
            return
        with self._lock:
            self.jobs.append((time.monotonic(), acc))
        if self.metrics is not None and self._profiler is not None:
            self.metrics.observe_drift(self._profiler, acc)
            self.metrics.drift_window.set(self.report(documents=False, top_terms=0).get("score") or 0.0)

    def report(self, documents: bool = True, top_terms: int = 25) -> dict:
        now = time.monotonic()
        with self._lock:
            while self.jobs and now - self.jobs[0][0] > self.seconds:
                self.jobs.popleft()
            recent = list(self.jobs)
        acc = self._profiler.new_accumulator()
        for _, part in recent:
            acc.merge(part)
        out = self._profiler.report(acc, top_terms=top_terms, documents=documents)
        out["window"] = {"seconds": self.seconds, "requests": len(recent)}
        return out


@router.get("/drift")
def drift(request: Request, documents: bool = False) -> dict:
    """The recent window's drift: verdict, OOV rate, label mix and divergence per head,
    unseen terms; ``?documents=true`` adds the figures per document."""
    return request.app.state.drift.report(documents=documents)


__all__ = ["router", "DriftWindow", "VERDICTS", "NO_REFERENCE"]
