"""HTTP/1.1 connections for `tagger serve`: read deadlines, and what a shutdown does to a
request that is still arriving.

uvicorn closes a keep-alive connection after ``timeout_keep_alive`` but puts no deadline on
anything else: a connection that never sends a byte, one that sends its headers a byte at a
time, or one that stops before the end of its body is held for good, each with its
buffers (reliability issue, item 5). :class:`TimedProtocol` is uvicorn's httptools
protocol with one timer per connection, re-armed at each phase:

* idle (connected, or a response sent, and no byte of a request yet): ``idle_timeout``,
  then closed without a word (as uvicorn's keep-alive timeout does); bytes that begin no
  request (blank lines) do not restart it;
* headers (from the first byte of a request to the end of its headers): ``header_timeout``
  in all, however the bytes trickle in; then ``408`` and closed;
* body (from the end of the headers to the end of the body): ``body_timeout`` in all; then
  ``408`` and closed, and the application's ``receive()`` answers ``http.disconnect``.
  While the server itself is not reading (flow control: the application has not taken the
  last 64 KiB yet, or a pipelined request waits for the one before it) the deadline moves on.

Deadlines are totals, not gaps between reads, so a client sending a byte a second is cut
like one sending nothing. A request being processed (body complete) has no deadline here.

Responses have one too, ``send_timeout``: while the write buffer is above its high-water
mark (the client has not taken what the kernel holds, and 64 KiB more wait), the client must
take at least :data:`SEND_PROGRESS` bytes of it in every ``send_timeout`` seconds, or the
connection is aborted (one log line; the buffered response is dropped, and a streaming
response's next ``send`` sees the disconnect). A gap, not a total: a 7 MB answer read by a
slow but steady client is not cut. Without it a client that stops reading holds its response
in memory, and a streamed export its database cursor, for good; ``transport.close()`` alone
would wait for the buffer to drain.

A request answered before its body has arrived (413, 503 + ``Retry-After`` from the body
budget, 401 ...) is answered with ``connection: close``; closing the socket at once while the
client is still sending makes the kernel answer its next bytes with a reset, and most
clients then report a broken pipe instead of the answer. So such a connection *lingers*
(:class:`_LingeringTransport`): the answer is sent and the write side shut, the rest of the
body is read and dropped, and the socket is closed when the client closes its side (once it
has read the answer), after :data:`LINGER_SECONDS`, or past :data:`LINGER_BYTES`, whichever
comes first.

At a shutdown (SIGTERM) uvicorn closes idle connections and lets running requests finish;
it also waits for requests that are still being *received*, for as long as their clients
take. Here those are refused instead (``503`` + ``Retry-After``, closed): the server takes
no new work once it is stopping, and slow clients cannot hold it up.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

__all__ = ["ReadTimeouts", "protocol_class", "CUT_KEY"]

# Bytes a client must take of a stalled response in every send_timeout seconds (uvicorn's
# flow control: writing pauses above 64 KiB buffered and resumes below 16 KiB).
SEND_PROGRESS = 48 * 1024

# A connection answered before its request body arrived: how long, and how many more bytes,
# the server reads and drops before closing (see the module docstring).
LINGER_SECONDS = 5.0
LINGER_BYTES = 16 * 1024 * 1024

# Set in a request's ASGI scope when the connection was cut by a deadline or a shutdown
# (tagger.api.bodies logs the reason in one line instead of "client disconnected").
CUT_KEY = "tagger.cut"

logger = logging.getLogger("uvicorn.error")


@dataclass(frozen=True)
class ReadTimeouts:
    """Seconds; see the module docstring. ``shutdown``: how long running requests get to
    finish after SIGTERM before they are cancelled."""

    idle: float = 5.0
    header: float = 10.0
    body: float = 60.0
    shutdown: float = 3.0
    send: float = 30.0

    @classmethod
    def from_settings(cls, settings) -> "ReadTimeouts":
        return cls(idle=settings.idle_timeout, header=settings.header_timeout, body=settings.body_timeout,
                   shutdown=settings.shutdown_timeout, send=settings.send_timeout)


def _response(status: int, reason: str, error: str, message: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = json.dumps({"error": error, "message": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _fmt(seconds: float) -> str:
    return f"{seconds:g}"


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: ``close()`` while the request's body is
    still arriving starts a lingering close (:meth:`TimedProtocol._linger`) instead; all else
    goes to the real transport."""

    __slots__ = ("_real", "_protocol")

    def __init__(self, real, protocol) -> None:
        self._real = real
        self._protocol = protocol

    def close(self) -> None:
        if not self._protocol._linger():
            self._real.close()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._real.is_closing()

    def __getattr__(self, name):
        return getattr(self._real, name)


_CLASS = None


def protocol_class():
    """The protocol class to give uvicorn (``Config(http=...)``); it reads its deadlines from
    ``config.read_timeouts`` (a :class:`ReadTimeouts`; defaults if missing)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _make_class()
    return _CLASS


def _make_class():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedProtocol(HttpToolsProtocol):
        def __init__(self, config, server_state, app_state, _loop=None) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self.deadlines: ReadTimeouts = getattr(config, "read_timeouts", None) or ReadTimeouts()
            self.phase = "idle"  # idle | head | body | busy
            self.timer = None
            self.send_timer = None  # armed while writing is paused (the client not reading)
            self.send_mark = 0  # bytes waiting when the send timer was armed
            self.lingering = False
            self.linger_timer = None
            self.linger_left = 0  # bytes still dropped before the close

        # -- timers -----------------------------------------------------------------------
        def _arm(self, seconds: float, handler) -> None:
            self._disarm()
            if seconds and seconds > 0:
                self.timer = self.loop.call_later(seconds, handler)

        def _disarm(self) -> None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

        def _responding(self) -> bool:
            """A response (to this request or a pipelined earlier one) is under way."""
            return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

        def _to_idle(self) -> None:
            self.phase = "idle"
            self._unset_keepalive_if_required()  # ours instead: blank lines do not extend it
            self._arm(self.deadlines.idle, self._idle_expired)

        def _idle_expired(self) -> None:
            self.timer = None
            if self.transport.is_closing() or self.phase != "idle":
                return
            if self._responding():
                return  # not idle after all; the response's end re-arms
            self.transport.close()

        def _head_expired(self) -> None:
            self.timer = None
            if self.transport.is_closing() or self.phase != "head":
                return
            if self._responding():  # a pipelined request: its deadline starts after the response
                self._arm(self.deadlines.header, self._head_expired)
                return
            logger.warning("request headers not received within %s s: answered 408, closed", _fmt(self.deadlines.header))
            self._refuse(408, "Request Timeout", "request_timeout",
                         f"request headers not received within {_fmt(self.deadlines.header)} s", "header timeout")

        def _body_expired(self) -> None:
            self.timer = None
            if self.transport.is_closing() or self.phase != "body":
                return
            if self.flow.read_paused:  # the server is not reading: not the client's delay
                self._arm(self.deadlines.body, self._body_expired)
                return
            scope = self.cycle.scope
            logger.warning("request body not received within %s s: %s %s answered 408, closed", _fmt(self.deadlines.body),
                           scope.get("method", "?"), scope.get("path", "?"))
            self._refuse(408, "Request Timeout", "request_timeout",
                         f"request body not received within {_fmt(self.deadlines.body)} s", "body timeout")

        def _refuse(self, status: int, reason: str, error: str, message: str, why: str, extra=()) -> None:
            """Answer ``status`` (unless a response has begun) and close. The request's
            application task, if any, sees ``http.disconnect`` and its sends are dropped."""
            self._disarm()
            in_body = self.phase == "body"
            self.phase = "closed"  # (first: a refusal closes at once, it never lingers)
            if self.pipeline:  # an earlier response is being written: nothing can go in between
                self.transport.close()
                return
            cycle = self.cycle if in_body else None
            if cycle is not None:
                cycle.scope[CUT_KEY] = why
                if cycle.response_started:
                    self.transport.close()
                    return
                cycle.disconnected = True
                cycle.message_event.set()
            elif self._responding():
                self.transport.close()
                return
            self.transport.write(_response(status, reason, error, message, extra))
            self.transport.close()

        # -- the client taking its response ------------------------------------------------
        def pause_writing(self) -> None:
            super().pause_writing()
            seconds = self.deadlines.send
            if self.send_timer is None and seconds and seconds > 0:
                self.send_mark = self.transport.get_write_buffer_size()
                self.send_timer = self.loop.call_later(seconds, self._send_expired)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self.send_timer is not None:
                self.send_timer.cancel()
                self.send_timer = None

        def _send_expired(self) -> None:
            self.send_timer = None
            waiting = self.transport.get_write_buffer_size()
            if self.transport.is_closing() and waiting == 0:
                return
            low, _ = self.transport.get_write_buffer_limits()
            # (Near the end the client need only take what stands above the low-water mark.)
            if self.send_mark - waiting >= min(SEND_PROGRESS, self.send_mark - low):  # slow, but taking it
                self.send_mark = waiting
                self.send_timer = self.loop.call_later(self.deadlines.send, self._send_expired)
                return
            scope = self.cycle.scope if self.cycle is not None else {}
            logger.warning("response not taken by the client: less than %d KiB in %s s (%d bytes waiting): %s %s, connection aborted",
                           SEND_PROGRESS // 1024, _fmt(self.deadlines.send), waiting,
                           scope.get("method", "-"), scope.get("path", "-"))
            self._disarm()
            self.phase = "closed"
            self.transport.abort()  # close() would wait for the buffer to drain

        # -- lingering close -----------------------------------------------------------------
        def _linger(self) -> bool:
            """Called for ``close()``: True if the connection lingers instead (its request's
            body is still arriving, the server is not stopping, the transport can half-close)."""
            real = self.transport._real
            if self.lingering:
                return True
            if self.phase != "body" or real.is_closing() or not real.can_write_eof():
                return False
            self.lingering = True
            self.phase = "linger"
            self._disarm()
            self.linger_left = LINGER_BYTES
            real.write_eof()  # the answer goes out, then FIN; reading goes on
            self.flow.resume_reading()
            self.linger_timer = self.loop.call_later(LINGER_SECONDS, self._linger_over)
            return True

        def _linger_over(self) -> None:
            if self.linger_timer is not None:
                self.linger_timer.cancel()
                self.linger_timer = None
            self.transport._real.close()

        def data_received(self, data: bytes) -> None:
            if self.lingering:  # the rest of a body nobody will read
                self.linger_left -= len(data)
                if self.linger_left < 0:
                    self._linger_over()
                return
            super().data_received(data)

        def eof_received(self):
            if self.lingering:  # the client has sent all it will
                self._linger_over()
            return super().eof_received()

        # -- connection and parser events -----------------------------------------------
        def connection_made(self, transport) -> None:
            super().connection_made(_LingeringTransport(transport, self))
            self._arm(self.deadlines.idle, self._idle_expired)

        def connection_lost(self, exc) -> None:
            self._disarm()
            for t in (self.send_timer, self.linger_timer):
                if t is not None:
                    t.cancel()
            self.send_timer = self.linger_timer = None
            self.lingering = False
            self.phase = "closed"
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.phase = "head"
            self._arm(self.deadlines.header, self._head_expired)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self.phase = "body"
            self._arm(self.deadlines.body, self._body_expired)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            if self.cycle is not None and self.cycle.response_complete and not self.pipeline:
                self._to_idle()  # answered before its body was read (413, 503 ...)
            else:
                self.phase = "busy"
                self._disarm()

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            if self.transport.is_closing() or pipelined:
                return
            if self.phase == "busy":
                self._to_idle()
            # "head"/"body": the next request (or the rest of this one's body) is arriving,
            # under its own deadline.
            elif self.phase in ("head", "body"):
                self._unset_keepalive_if_required()

        def timeout_keep_alive_handler(self) -> None:  # replaced by the idle deadline
            pass

        # -- shutdown --------------------------------------------------------------------
        def shutdown(self) -> None:
            if self.lingering:  # the server is stopping: no more waiting for the client's body
                self._linger_over()
                return
            if self.transport.is_closing():
                return
            if self.pipeline:  # requests queued behind a running one: closed after its response
                super().shutdown()
            elif self.phase == "body" and self.cycle is not None and not self.cycle.response_started:
                self._refuse_at_shutdown()
            elif self.phase == "head" and not self._responding():
                self._refuse_at_shutdown()
            else:
                super().shutdown()  # idle: closed; busy: closed after its response

        def _refuse_at_shutdown(self) -> None:
            self._refuse(503, "Service Unavailable", "shutting_down", "server is shutting down, retry later", "shutdown",
                         (("retry-after", "1"),))

    return TimedProtocol
