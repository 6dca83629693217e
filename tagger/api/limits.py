"""Bounded resources: request bodies, CPU-heavy work, and how many requests wait for it.

* :class:`BodyLimit` counts the bytes of every request body as they stream in, chunked
  transfer included, and answers 413 as soon as a route's limit is passed, without
  reading the rest: a declared Content-Length over the limit is refused before any byte.
* :class:`WorkPool` runs reading, segmentation, tagging and rendering off the event loop:
  documents (their store writes included) and big tag requests in worker processes
  (:mod:`tagger.api.workers`, so that they do not hold this process's GIL), small tag
  requests in a small thread pool; health checks and small requests keep answering during
  a large upload.
  At most ``workers + queue`` jobs are admitted; the next one gets 503 + ``Retry-After``,
  and so does one that has waited ``queue_timeout`` seconds (``TAGGER_QUEUE_TIMEOUT``)
  without a thread or worker process taking it.
  A job in a worker process is stopped when its client goes away, when it reads its
  document for longer than ``TAGGER_PARSE_TIMEOUT`` (:class:`JobLimits`), and at a
  shutdown (:meth:`WorkPool.drain`, on SIGTERM/SIGINT: see :func:`drain_on_exit_signals`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Callable, TypeVar

from fastapi import HTTPException

from ..errors import InvalidInput

__all__ = ["BodyLimit", "WorkPool", "Busy", "ClientGone", "JobLimits", "check_limits", "check_evidence_limit", "drain_on_exit_signals"]

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


def check_limits(n_clauses: int, n_chars: int, settings) -> None:
    if n_clauses > settings.max_clauses_per_request:
        raise HTTPException(status_code=413, detail=f"{n_clauses} clauses in one request; the limit is {settings.max_clauses_per_request}")
    if n_chars > settings.max_text_chars:
        raise HTTPException(status_code=413, detail=f"{n_chars} characters of text in one request; the limit is {settings.max_text_chars}")


def check_evidence_limit(clauses: list[dict], settings) -> None:
    """413 when evidence is asked for a clause longer than ``max_evidence_clause_chars``:
    its cost grows with the square of the length (a 100,000-character clause ran for minutes
    and grew the server by ~100 MB/s), so the request is refused before any work starts."""
    limit = settings.max_evidence_clause_chars
    for c in clauses:
        if len(c["text"]) > limit:
            raise HTTPException(
                status_code=413,
                detail=f"clause {str(c.get('id', ''))[:80]!r} has {len(c['text'])} characters; evidence is computed for clauses of at most "
                f"{limit} characters (TAGGER_MAX_EVIDENCE_CLAUSE_CHARS): split the text into clauses (POST /v1/documents does), or ask with ?evidence=false",
            )


class JobLimits:
    """How a job may be stopped. ``read_seconds``: the time it may take until it calls
    :func:`tagger.api.workers.reading_done` (``None``: no limit); its process is killed
    :data:`tagger.api.workers.KILL_GRACE` seconds later (the job may stop itself at
    ``read_seconds``, as the PDF reader does between pages, and keep its process), and the
    request answered ``too_slow(what, read_seconds)``; ``cancellable``: stopped when its
    client goes away; ``cancellable_after_read``: still so once reading is done (not for
    store writes)."""

    __slots__ = ("read_seconds", "what", "cancellable", "cancellable_after_read", "too_slow")

    def __init__(self, read_seconds: float | None = None, what: str = "the document", cancellable: bool = True,
                 cancellable_after_read: bool = True, too_slow: Callable[[str, float], Exception] | None = None):
        self.read_seconds = read_seconds if read_seconds and read_seconds > 0 else None
        self.what, self.cancellable, self.cancellable_after_read = what, cancellable, cancellable_after_read
        self.too_slow = too_slow or (lambda what, s: InvalidInput("body", f"reading {what} took more than {s:g} s and was stopped"))


class Busy(HTTPException):
    def __init__(self, retry_after: int = 1, message: str | None = None):
        super().__init__(status_code=503, detail=message or "server busy: too many large requests in progress, retry later",
                         headers={"Retry-After": str(retry_after)})


class ClientGone(HTTPException):
    """The client went away while its job ran: the job was stopped, and this answer (nginx's
    499) goes nowhere; it is only counted."""

    def __init__(self):
        super().__init__(status_code=499, detail="client closed the request")


async def started_within(job: Future, timeout: float, ready: Callable[[], bool] | None = None):
    """The result of ``job`` (a concurrent future); :class:`Busy` (and ``job`` dropped) if it
    is still waiting to start after ``timeout`` seconds (0: no limit). While ``ready()`` is
    false (worker processes still loading the bundle) the clock does not run."""
    waiting = asyncio.wrap_future(job)
    try:
        if timeout > 0:
            loop = asyncio.get_running_loop()
            deadline = None if ready is not None and not ready() else loop.time() + timeout
            while True:
                step = 0.5 if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait((waiting,), timeout=step)
                if done:
                    break
                if deadline is None:
                    if ready():
                        deadline = loop.time() + timeout
                    continue
                if job.cancel():  # cancel() succeeds only while it waits
                    raise Busy(retry_after=max(1, round(timeout)),
                               message=f"server busy: no worker free within {timeout:g} s (TAGGER_QUEUE_TIMEOUT), retry later")
                break
        return await waiting
    finally:
        if not waiting.done():
            waiting.cancel()  # this request was cancelled: nobody will read the outcome


async def _until_disconnected(receive) -> None:
    """Returns when the client has gone away. Called once the request's body has been read:
    uvicorn's ``receive()`` then waits until the connection is lost (or the response sent)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class WorkPool:
    """Admission for CPU-heavy work: at most ``workers + queue`` jobs at once, the next one
    gets 503 + ``Retry-After``. :meth:`run` runs a function in a thread of this process
    (small requests); :meth:`run_heavy` runs a job in a worker process
    (:mod:`tagger.api.workers`), or in a thread when there are none."""

    def __init__(self, workers: int, queue: int, processes=None, queue_timeout: float = 0.0):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagger-work")
        self.capacity = workers + queue
        self.admitted = 0
        self.processes = processes  # a tagger.api.workers.WorkerProcesses, or None
        # A job still waiting for a thread or a worker process after this many seconds is
        # dropped and its request answered 503 + Retry-After (0: it waits): a full queue
        # of large jobs made requests wait ~14 s.
        self.queue_timeout = queue_timeout
        self.draining = False

    @property
    def full(self) -> bool:
        return self.draining or self.admitted >= self.capacity

    def _admit(self) -> None:
        # Admission is counted on the event loop thread, so no lock is needed.
        if self.draining:
            raise Busy(message="server shutting down, retry later")
        if self.admitted >= self.capacity:
            raise Busy()
        self.admitted += 1

    async def run(self, fn: Callable[..., T], *args) -> T:
        self._admit()
        try:
            job = self.executor.submit(fn, *args)
            try:
                return await started_within(job, self.queue_timeout)
            except asyncio.CancelledError:
                job.cancel()  # dropped if still waiting (a thread cannot be stopped)
                raise
        finally:
            self.admitted -= 1

    async def run_heavy(self, fn: Callable[..., T], tagger, settings, *args, limits: JobLimits | None = None,
                        receive=None, **kwargs) -> T:
        """``fn(tagger, settings, *args, **kwargs)``; in a worker process the tagger and the
        settings are the worker's own copies (loaded from ``tagger.folder``), and the job is
        stopped as ``limits`` say. ``receive``: the request's ASGI ``receive``, its body
        already read: the job is stopped if the client goes away (:class:`ClientGone`)."""
        if self.processes is None:
            return await self.run(partial(fn, tagger, settings, *args, **kwargs))
        self._admit()
        try:
            work = self.processes.run(fn, *args, limits=limits, queue_timeout=self.queue_timeout, **kwargs)
            if receive is None or (limits is not None and not limits.cancellable):
                return await work
            job = asyncio.ensure_future(work)
            gone = asyncio.ensure_future(_until_disconnected(receive))
            try:
                await asyncio.wait((job, gone), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not job.done():
                    job.cancel()  # the client left, or this request was cancelled
                gone.cancel()
            if not job.done() or job.cancelled():
                raise ClientGone()
            return job.result()
        finally:
            self.admitted -= 1

    def drain(self, grace: float) -> None:
        """The server is stopping: new jobs get 503; jobs in worker processes get ``grace``
        seconds, then are stopped (503)."""
        self.draining = True
        if self.processes is not None:
            self.processes.drain(grace)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown()


def drain_on_exit_signals(pool: WorkPool, grace: float) -> None:
    """On SIGTERM/SIGINT, drain ``pool`` (:meth:`WorkPool.drain`) after the handler in
    place (uvicorn's, which starts its graceful shutdown): without it uvicorn waits for the
    running requests, and a PDF read for minutes kept the server up for minutes. Call from
    the event loop's thread, once the server has installed its handlers (lifespan start-up);
    does nothing where signals cannot be handled (not the main thread) or nobody handles
    them (the process would die anyway)."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()

    def chained(previous):
        def handler(signum, frame):
            try:
                loop.call_soon_threadsafe(pool.drain, grace)
            except RuntimeError:  # the loop is closed
                pass
            previous(signum, frame)

        return handler

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous):
            signal.signal(sig, chained(previous))
