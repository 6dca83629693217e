"""Request bodies across requests: a global bound on the bytes held, and one log line (not a
traceback) per body that never arrived.

* :class:`BufferBudget`: at most ``budget`` bytes of request bodies are held at once by
  all the requests in progress in this server process. A body's declared Content-Length is
  reserved when its request arrives, before any byte is read; a chunked body is counted as
  it streams. A request that does not fit now gets ``503`` + ``Retry-After`` (one that
  could never fit, larger than the whole budget: ``413``), and its connection is closed
  without reading the rest. The per-route limits (:class:`tagger.api.limits.BodyLimit`,
  further out) are checked first; the budget bounds their sum: 250 clients each sending
  a 10 MB upload and stalling before its last byte held 3.5 GB before it (reliability
  issue, item 5).
* :class:`QuietDisconnects`: a client that goes away (or is cut by a read deadline,
  :mod:`tagger.api.connections`) before the end of its body made Starlette raise
  ``ClientDisconnect`` out of the route, and uvicorn logged ~70 lines of traceback for it
  (350 aborted uploads: 25,550 lines); here it is one line (for a cut, the line
  :mod:`tagger.api.connections` logs).
"""

from __future__ import annotations

import json
import logging

from fastapi import HTTPException

from .connections import CUT_KEY

__all__ = ["BufferBudget", "QuietDisconnects"]

logger = logging.getLogger("uvicorn.error")

RETRY_AFTER = 1


class _OverBudget(HTTPException):
    """Raised from ``receive`` (a chunked body outgrowing the budget): an HTTPException so that
    FastAPI's body parsing passes it on as this response."""

    def __init__(self, status: int, message: str):
        headers = {"Retry-After": str(RETRY_AFTER)} if status == 503 else None
        super().__init__(status_code=status, detail=message, headers=headers)


async def _answer(send, status: int, error: str, message: str) -> None:
    body = json.dumps({"error": error, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope) -> int | None:
    for k, v in scope.get("headers") or ():
        if k == b"content-length":
            try:
                return max(0, int(v))
            except ValueError:
                return None  # BodyLimit answers 400
    return None


class BufferBudget:
    """ASGI middleware; ``budget``: bytes (0 or less: no bound). One instance per process:
    its count is this process's."""

    def __init__(self, app, budget: int):
        self.app = app
        self.budget = budget
        self.in_use = 0  # touched on the event loop thread only

    def _refusal(self, size: int) -> tuple[int, str, str]:
        if size > self.budget:
            return 413, "request_rejected", f"request body larger than the server's buffer budget ({self.budget} bytes)"
        return 503, "busy", "server busy: too many request bodies in progress, retry later"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.budget <= 0:
            return await self.app(scope, receive, send)
        declared = _declared_length(scope) or 0
        if declared > self.budget or self.in_use + declared > self.budget:
            return await _answer(send, *self._refusal(declared))
        held = declared
        self.in_use += held
        seen = 0
        over = None
        started = False

        async def counted_receive():
            nonlocal held, seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > held:  # chunked (or no Content-Length): count as it comes
                    extra = seen - held
                    if self.in_use + extra > self.budget:
                        over = self._refusal(seen)
                        raise _OverBudget(over[0], over[2])
                    held += extra
                    self.in_use += extra
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if over is not None:  # close instead of draining the rest of the body
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _OverBudget:
            if not started:
                await _answer(send, *over)
        finally:
            self.in_use -= held


class QuietDisconnects:
    """ASGI middleware (outermost): an exception raised after the app was told the client is
    gone (``http.disconnect`` before the end of the body) is logged as one line and dropped;
    the response has nowhere to go."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0
        gone = False

        async def watched_receive():
            nonlocal seen, gone
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
            elif message["type"] == "http.disconnect":
                gone = True
            return message

        try:
            await self.app(scope, watched_receive, send)
        except Exception:
            if not gone:
                raise
            if scope.get(CUT_KEY):
                return  # cut by the server (deadline, shutdown): tagger.api.connections logged it
            declared = _declared_length(scope)
            of = f" of {declared}" if declared is not None else ""
            logger.warning("client went away before the end of its request body: %s %s, %d%s bytes received",
                           scope.get("method", "?"), scope.get("path", "?"), seen, of)
