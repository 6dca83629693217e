"""Bounded resources: request bodies, CPU-heavy work, and how many requests wait for it.

* :class:`BodyLimit` counts the bytes of every request body as they stream in, chunked
  transfer included, and answers 413 as soon as a route's limit is passed, without
  reading the rest: a declared Content-Length over the limit is refused before any byte.
* :class:`WorkPool` runs reading, segmentation, tagging and rendering off the event loop:
  documents (their store writes included) and big tag requests in worker processes
  (:mod:`tagger.api.workers`, so that they do not hold this process's GIL), small tag
  requests in a small thread pool; health checks and small requests keep answering during
  a large upload.
  At most ``workers + queue`` jobs are admitted; the next one gets 503 + ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, TypeVar

from fastapi import HTTPException

__all__ = ["BodyLimit", "WorkPool", "Busy"]

T = TypeVar("T")


class BodyLimit:
    """ASGI middleware: ``limits`` maps a path prefix to a byte limit; ``default`` otherwise."""

    def __init__(self, app, limits: Callable[[], dict[str, int]], default: Callable[[], int]):
        self.app, self.limits, self.default = app, limits, default

    def _limit(self, path: str) -> int:
        for prefix, n in self.limits().items():
            if path.startswith(prefix):
                return n
        return self.default()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    return await _too_large(send, limit)
            except ValueError:
                return await _reject(send, 400, "invalid Content-Length")
        seen = 0
        started = over = False

        async def counted_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _BodyTooLarge(limit)
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if over:
                    # Close instead of draining the rest of the body to keep the connection.
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, limit)


class _BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException so that FastAPI's body parsing passes it
    on as a 413 instead of wrapping it into a generic 400."""

    def __init__(self, limit: int = 0):
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


async def _reject(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": "request_rejected", "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send, limit: int) -> None:
    await _reject(send, 413, f"request body larger than {limit} bytes")


class Busy(HTTPException):
    def __init__(self, retry_after: int = 1):
        super().__init__(status_code=503, detail="server busy: too many large requests in progress, retry later",
                         headers={"Retry-After": str(retry_after)})


class WorkPool:
    """Admission for CPU-heavy work: at most ``workers + queue`` jobs at once, the next one
    gets 503 + ``Retry-After``. :meth:`run` runs a function in a thread of this process
    (small requests); :meth:`run_heavy` runs a job in a worker process
    (:mod:`tagger.api.workers`), or in a thread when there are none."""

    def __init__(self, workers: int, queue: int, processes=None):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagger-work")
        self.capacity = workers + queue
        self.admitted = 0
        self.processes = processes  # a tagger.api.workers.WorkerProcesses, or None

    def _admit(self) -> None:
        # Admission is counted on the event loop thread, so no lock is needed.
        if self.admitted >= self.capacity:
            raise Busy()
        self.admitted += 1

    async def run(self, fn: Callable[..., T], *args) -> T:
        self._admit()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.admitted -= 1

    async def run_heavy(self, fn: Callable[..., T], tagger, settings, *args, **kwargs) -> T:
        """``fn(tagger, settings, *args, **kwargs)``; in a worker process the tagger and the
        settings are the worker's own copies (loaded from ``tagger.folder``)."""
        if self.processes is None:
            return await self.run(partial(fn, tagger, settings, *args, **kwargs))
        self._admit()
        try:
            return await self.processes.run(fn, *args, **kwargs)
        finally:
            self.admitted -= 1

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown()
