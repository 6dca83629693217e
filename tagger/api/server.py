"""`tagger serve`: uvicorn in one or several forked worker processes on one listening socket.

Why not ``uvicorn --workers``: its supervisor creates the listening socket with
``socket.socket(family)``, i.e. protocol 0, and asyncio only sets TCP_NODELAY on
connections whose socket says IPPROTO_TCP. Accepted connections inherit protocol 0, keep
Nagle's algorithm, and uvicorn writes a response's headers and body in two sends: the
body waits for the client's delayed ACK, 40 ms on Linux. Measured here: a constant 44 ms
per request with ``--workers 2`` against 0.6 ms with one process, on a trivial app too.
This module creates the socket with IPPROTO_TCP, so every connection gets TCP_NODELAY.

Forking after the model is loaded also shares its tables between workers (copy on write)
and makes start-up one model load, not one per worker. The sparse serving path holds no
onnxruntime session, so nothing thread-bound crosses the fork.

No connection is dropped on the way to a worker (reliability issue, item 4). The supervisor
used to hand each accepted connection over with a non-blocking send and close it when the
worker's channel was full: a burst of 1,000 connections lost 25-37% of them. Now:

* the supervisor queues accepted connections (at most :data:`QUEUE_MAX`) and hands each
  one over when a worker's channel has room, waiting for it otherwise; with the queue full
  it stops accepting, and new connections wait in the kernel's listen backlog (and past
  that, clients retry their SYN): back-pressure, a delay, never a close;
* a worker stops taking connections from its channel when it holds nearly as many as its
  open-file limit allows (a descriptor passed to a process at its limit is closed by the
  kernel), and the supervisor raises that limit to the hard limit at start;
* connections are closed by the read deadlines only (:mod:`tagger.api.connections`).

Shutdown (SIGTERM/SIGINT): the listening socket is closed at once (new connections are
refused), connections accepted but not yet handed over get ``503`` + ``Retry-After``, each
worker refuses requests still arriving and gives running ones ``shutdown`` seconds
(:class:`ReadTimeouts`); a worker still alive a second after that is killed.

Metrics: the supervisor runs prometheus_client in multiprocess mode in a temporary folder
of its own (``tagger-metrics-<pid>-…``, removed at exit; one left by a supervisor that was
killed is removed by the next one to start), so that ``/metrics`` counts the requests of
every worker (:mod:`tagger.api.metrics`).
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import os
import resource
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Callable

from .connections import ReadTimeouts, protocol_class

__all__ = ["listen", "run_server", "ReadTimeouts", "QUEUE_MAX"]

QUEUE_MAX = 1024  # connections accepted by the supervisor and not yet handed to a worker
FD_RESERVE = 64  # descriptors a worker keeps for its own files, pipes and process pool
KILL_GRACE = 1.0  # seconds after the shutdown deadline before a worker is killed

logger = logging.getLogger("uvicorn.error")


def _refusal() -> bytes:
    body = json.dumps({"error": "shutting_down", "message": "server is shutting down, retry later"}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nretry-after: 1\r\nconnection: close\r\n\r\n" + body)


REFUSAL = _refusal()


def _refuse(conn: socket.socket) -> None:
    """Answer 503 on a connection no worker will serve, and close it (never blocks)."""
    try:
        conn.setblocking(False)
        try:
            conn.recv(65536)  # what the request sent so far: closing over unread bytes resets
        except (BlockingIOError, InterruptedError):
            pass
        conn.send(REFUSAL)
    except OSError:
        pass
    finally:
        conn.close()


def listen(host: str, port: int, backlog: int = 4096) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (inherited by the workers);
    returns the soft limit now in force. Every connection is a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    except (ValueError, OSError):
        return soft


def _open_files_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def _app_bound_to(make_app: Callable, hosts: tuple[str, ...]):
    """``make_app()`` told the addresses it is served on: the anonymous-write rule
    (tagger.api.security) checks them, not the settings. A worker behind the supervisor
    holds no listening socket of its own, so it could not find them out itself."""
    app = make_app()
    state = getattr(app, "state", None)
    if state is not None:
        state.bound_hosts = hosts
    return app


def _config(app, log_level: str, timeouts: ReadTimeouts):
    import uvicorn

    try:
        http = protocol_class()
    except ImportError:  # no httptools: uvicorn's own protocol, keep-alive deadline only
        http = "auto"
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", http=http,
                            timeout_keep_alive=timeouts.idle if timeouts.idle > 0 else 24 * 3600,
                            timeout_graceful_shutdown=max(0.0, timeouts.shutdown))
    config.read_timeouts = timeouts
    return config


def _serve_one(make_app: Callable, sock: socket.socket, log_level: str, timeouts: ReadTimeouts) -> None:
    import uvicorn

    config = _config(_app_bound_to(make_app, (sock.getsockname()[0],)), log_level, timeouts)
    uvicorn.Server(config).run(sockets=[sock])


def _serve_handed(make_app: Callable, channel: socket.socket, log_level: str, hosts: tuple[str, ...] = (),
                  timeouts: ReadTimeouts | None = None) -> None:
    """A worker behind the supervisor: serves the connections passed over ``channel``
    (SCM_RIGHTS), each given to the event loop as an accepted socket. Works with uvloop,
    which reads a listening socket's fd itself and so cannot be handed a stand-in.
    ``hosts``: the supervisor's bound addresses.

    The worker reads its channel only while it holds fewer connections than its open-file
    limit allows (less :data:`FD_RESERVE`): past that, connections wait in the channel and
    then in the supervisor's queue. At shutdown, connections still in the channel get 503."""
    import asyncio
    import functools

    import uvicorn

    timeouts = timeouts or ReadTimeouts()

    class HandedServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=[])  # no listening socket of its own
            if self.should_exit:
                return
            loop = asyncio.get_running_loop()
            cfg = self.config
            make_protocol = functools.partial(cfg.http_protocol_class, config=cfg, server_state=self.server_state,
                                              app_state=self.lifespan.state)
            channel.setblocking(False)
            cap = max(16, _open_files_limit() - FD_RESERVE)
            adopting = 0
            self._reading = False

            def held() -> int:
                return len(self.server_state.connections) + adopting

            async def adopt(conn: socket.socket) -> None:
                nonlocal adopting
                try:
                    await loop.connect_accepted_socket(make_protocol, conn)
                except OSError:
                    conn.close()
                finally:
                    adopting -= 1

            def take() -> None:
                nonlocal adopting
                for _ in range(64):  # a burst is taken in batches, not one per loop turn
                    if held() >= cap:
                        self._stop_reading()
                        loop.call_later(0.05, resume)
                        return
                    try:
                        msg, fds, flags, _addr = socket.recv_fds(channel, 16, 16)
                    except (BlockingIOError, InterruptedError):
                        return
                    except OSError:
                        msg, fds, flags = b"", [], 0
                    if not msg and not fds:  # the supervisor is gone: stop as on SIGTERM
                        self._stop_reading()
                        self.should_exit = True
                        return
                    if flags & getattr(socket, "MSG_CTRUNC", 0):
                        logger.warning("connections lost in the hand-off to this worker (open-file limit)")
                    for fd in fds:
                        conn = socket.socket(fileno=fd)
                        conn.setblocking(False)
                        adopting += 1
                        loop.create_task(adopt(conn))

            def resume() -> None:
                if self.should_exit or self._reading:
                    return
                if held() < cap - max(8, cap // 10):
                    self._start_reading()
                else:
                    loop.call_later(0.05, resume)

            def start_reading() -> None:
                loop.add_reader(channel.fileno(), take)
                self._reading = True

            self._start_reading = start_reading
            start_reading()

        def _stop_reading(self) -> None:
            if getattr(self, "_reading", False):
                try:
                    asyncio.get_running_loop().remove_reader(channel.fileno())
                except (ValueError, OSError, RuntimeError):
                    pass
                self._reading = False

        async def shutdown(self, sockets=None) -> None:
            self._stop_reading()
            # Handed over, not taken yet: new work, refused (not dropped by the exit).
            while True:
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(channel, 16, 16)
                except OSError:
                    break
                if not msg and not fds:
                    break
                for fd in fds:
                    _refuse(socket.socket(fileno=fd))
            await super().shutdown(sockets)

    config = _config(_app_bound_to(make_app, hosts), log_level, timeouts)
    HandedServer(config).run()


def run_server(make_app: Callable, host: str, port: int, workers: int = 1, log_level: str = "warning",
               timeouts: ReadTimeouts | None = None) -> int:
    """Serve until SIGINT/SIGTERM. ``make_app`` runs in each worker, after the fork.

    With several workers the supervisor accepts every connection and hands it to the
    workers in turn. Workers accepting from the shared socket themselves take a burst of
    new connections unevenly (whichever wakes first takes all that are pending): 8
    keep-alive clients split 7/1 or 6/2 in some runs, and the loaded worker's p99 was 52 ms
    against 16 ms at 4/4. Keep-alive connections stay with their worker, so the split at
    connect time is the split for good.
    """
    timeouts = timeouts or ReadTimeouts()
    raise_open_files_limit()
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    print(f"tagger: serving on http://{host}:{bound} with {workers} worker process(es)", file=sys.stderr, flush=True)
    if workers <= 1:
        _serve_one(make_app, sock, log_level, timeouts)
        return 0
    from .metrics import enable_multiprocess

    _remove_stale_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    enable_multiprocess(metrics_dir)  # before the fork: the workers' metrics live in files there
    try:
        return _Supervisor(sock, make_app, workers, log_level, timeouts, metrics_dir).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


METRICS_PREFIX = "tagger-metrics-"


def _remove_stale_metrics_dirs() -> None:
    """Metrics folders of supervisors that are gone without removing theirs (SIGKILL): named
    ``tagger-metrics-<pid>-…``, removed when that process no longer exists."""
    tmp = tempfile.gettempdir()
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if not name.startswith(METRICS_PREFIX):
            continue
        pid = name[len(METRICS_PREFIX):].split("-", 1)[0]
        path = os.path.join(tmp, name)
        if not pid.isdigit() or not os.path.isdir(path) or os.stat(path).st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


class _Supervisor:
    def __init__(self, sock: socket.socket, make_app: Callable, workers: int, log_level: str, timeouts: ReadTimeouts,
                 metrics_dir: str):
        self.sock, self.make_app, self.workers, self.log_level = sock, make_app, workers, log_level
        self.timeouts, self.metrics_dir = timeouts, metrics_dir
        self.hosts = (sock.getsockname()[0],)
        self.channels: dict[int, socket.socket] = {}  # worker pid -> supervisor's end of its hand-off
        self.full: set[int] = set()  # channels with no room: waiting until writable
        self.stalled: set[int] = set()  # channels refused for a reason no poll reports: retried shortly
        self.queue: collections.deque[socket.socket] = collections.deque()
        self.queue_max = max(16, min(QUEUE_MAX, (_open_files_limit() - FD_RESERVE) // 2))
        self.turn = 0
        self.stopping = False
        self.stopped = False
        self.kill_at: float | None = None
        self.accepting = False
        self.restarts: list[float] = []
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        for s in (self.wake_r, self.wake_w):
            s.setblocking(False)

    # -- workers --------------------------------------------------------------------------
    def spawn(self) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the worker
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                self.selector.close()
                for s in (self.sock, parent_end, self.wake_r, self.wake_w, *self.channels.values(), *self.queue):
                    s.close()
                _serve_handed(self.make_app, child_end, self.log_level, self.hosts, self.timeouts)
            except BaseException:  # a worker must never return into the supervisor's loop
                code = 1
            finally:
                os._exit(code)
        child_end.close()
        parent_end.setblocking(False)
        self.channels[pid] = parent_end
        self.dispatch()

    def stop(self, signum, _frame) -> None:
        self.stopping = True
        for pid in list(self.channels):
            try:
                os.kill(pid, signal.SIGTERM)  # a second signal makes uvicorn stop at once
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        while self.channels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                for ch in self.channels.values():
                    ch.close()
                self.channels.clear()
                return
            if pid == 0:
                return
            if pid not in self.channels:
                continue
            self._forget(pid)
            try:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid, self.metrics_dir)
            except Exception:  # noqa: BLE001 - metrics housekeeping must not stop the server
                pass
            if self.stopping:
                continue
            # A worker died (e.g. killed by the OOM killer): replace it, unless workers
            # keep dying at start-up, which a restart would only repeat.
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < 60] + [now]
            if len(self.restarts) > 5 * self.workers:
                print("tagger: workers keep exiting; stopping", file=sys.stderr)
                self.stop(signal.SIGTERM, None)
                continue
            print(f"tagger: worker {pid} exited (status {status}); starting another", file=sys.stderr)
            self.spawn()

    def _forget(self, pid: int) -> None:
        ch = self.channels.pop(pid)
        if pid in self.full:
            self.full.discard(pid)
            self.selector.unregister(ch)
        self.stalled.discard(pid)
        ch.close()

    # -- hand-off -------------------------------------------------------------------------
    def dispatch(self) -> None:
        """Hand queued connections to the workers in turn, as long as a channel has room."""
        while self.queue and not self.stopping:
            ready = [p for p in self.channels if p not in self.full and p not in self.stalled]
            if not ready:
                break
            pid = ready[self.turn % len(ready)]
            ch = self.channels[pid]
            try:
                socket.send_fds(ch, [b"c"], [self.queue[0].fileno()])
            except (BlockingIOError, InterruptedError):
                self.full.add(pid)
                self.selector.register(ch, selectors.EVENT_WRITE, "channel")
                continue
            except OSError as e:
                # ETOOMANYREFS (descriptors in flight over the per-user limit), ENOBUFS:
                # retried in a moment. EPIPE/ECONNRESET: the worker is gone, reaped soon.
                self.stalled.add(pid)
                if e.errno not in (errno.ETOOMANYREFS, errno.ENOBUFS, errno.ENOMEM, errno.EPIPE, errno.ECONNRESET):
                    logger.warning("hand-off to worker %d failed: %s", pid, e)
                continue
            self.queue.popleft().close()
            self.turn += 1
        self._accept_if_room()

    def _accept_if_room(self) -> None:
        want = not self.stopping and len(self.queue) < self.queue_max
        if want and not self.accepting:
            self.selector.register(self.sock, selectors.EVENT_READ, "listen")
        elif self.accepting and not want:
            self.selector.unregister(self.sock)
        self.accepting = want

    def accept(self) -> None:
        while len(self.queue) < self.queue_max:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError as e:  # EMFILE, ENFILE, ENOBUFS: leave the rest in the backlog for now
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                break
            self.queue.append(conn)
            if len(self.queue) % 64 == 0:
                self.dispatch()
        self.dispatch()

    # -- shutdown -------------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Refuse new work: what the backlog and the queue hold gets 503, then the listening
        socket is closed (connection refused from now on)."""
        self.stopped = True
        if self.accepting:
            self.selector.unregister(self.sock)
            self.accepting = False
        while len(self.queue) < 4 * QUEUE_MAX:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            self.queue.append(conn)
        self.sock.close()
        while self.queue:
            _refuse(self.queue.popleft())
        self.kill_at = time.monotonic() + max(0.0, self.timeouts.shutdown) + KILL_GRACE

    def kill_stragglers(self) -> None:
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            for pid in list(self.channels):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.kill_at = None

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.sock.setblocking(False)
        for _ in range(self.workers):
            self.spawn()
        self._accept_if_room()
        try:
            while self.channels:
                timeout = 0.05 if (self.stalled or self.kill_at is not None) else 0.5
                for key, _events in self.selector.select(timeout=timeout):
                    if key.data == "listen":
                        if self.accepting:
                            self.accept()
                    elif key.data == "wake":
                        try:
                            while self.wake_r.recv(512):
                                pass
                        except OSError:
                            pass
                    else:  # a full channel has room again
                        pid = next((p for p, ch in self.channels.items() if ch is key.fileobj), None)
                        self.selector.unregister(key.fileobj)
                        self.full.discard(pid)
                        self.dispatch()
                if self.stalled:
                    self.stalled.clear()
                    self.dispatch()
                if self.stopping and not self.stopped:
                    self.begin_stop()
                self.reap()
                self.kill_stragglers()
        finally:
            signal.set_wakeup_fd(-1)
            if not self.stopped:
                self.sock.close()
            for conn in self.queue:
                conn.close()
            self.selector.close()
        return 0 if self.stopping else 1
