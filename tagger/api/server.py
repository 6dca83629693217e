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
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time
from typing import Callable

__all__ = ["listen", "run_server"]


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _app_bound_to(make_app: Callable, hosts: tuple[str, ...]):
    """``make_app()`` told the addresses it is served on: the anonymous-write rule
    (tagger.api.security) checks them, not the settings. A worker behind the supervisor
    holds no listening socket of its own, so it could not find them out itself."""
    app = make_app()
    state = getattr(app, "state", None)
    if state is not None:
        state.bound_hosts = hosts
    return app


def _serve_one(make_app: Callable, sock: socket.socket, log_level: str) -> None:
    import uvicorn

    config = uvicorn.Config(_app_bound_to(make_app, (sock.getsockname()[0],)), log_level=log_level, access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def _serve_handed(make_app: Callable, channel: socket.socket, log_level: str, hosts: tuple[str, ...] = ()) -> None:
    """A worker behind the supervisor: serves the connections passed over ``channel``
    (SCM_RIGHTS), each given to the event loop as an accepted socket. Works with uvloop,
    which reads a listening socket's fd itself and so cannot be handed a stand-in.
    ``hosts``: the supervisor's bound addresses."""
    import asyncio
    import functools

    import uvicorn

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

            def take() -> None:
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(channel, 16, 16)
                except (BlockingIOError, InterruptedError):
                    return
                if not msg and not fds:  # the supervisor is gone: stop as on SIGTERM
                    loop.remove_reader(channel.fileno())
                    self.should_exit = True
                    return
                for fd in fds:
                    conn = socket.socket(fileno=fd)
                    conn.setblocking(False)
                    loop.create_task(loop.connect_accepted_socket(make_protocol, conn))

            loop.add_reader(channel.fileno(), take)

        async def shutdown(self, sockets=None) -> None:
            try:
                asyncio.get_running_loop().remove_reader(channel.fileno())
            except (ValueError, OSError):
                pass
            await super().shutdown(sockets)

    config = uvicorn.Config(_app_bound_to(make_app, hosts), log_level=log_level, access_log=False, lifespan="on")
    HandedServer(config).run()


def run_server(make_app: Callable, host: str, port: int, workers: int = 1, log_level: str = "warning") -> int:
    """Serve until SIGINT/SIGTERM. ``make_app`` runs in each worker, after the fork.

    With several workers the supervisor accepts every connection and hands it to the
    workers in turn. Workers accepting from the shared socket themselves take a burst of
    new connections unevenly (whichever wakes first takes all that are pending): 8
    keep-alive clients split 7/1 or 6/2 in some runs, and the loaded worker's p99 was 52 ms
    against 16 ms at 4/4. Keep-alive connections stay with their worker, so the split at
    connect time is the split for good.
    """
    sock = listen(host, port)
    hosts = (sock.getsockname()[0],)
    bound = sock.getsockname()[1]
    print(f"tagger: serving on http://{host}:{bound} with {workers} worker process(es)", file=sys.stderr, flush=True)
    if workers <= 1:
        _serve_one(make_app, sock, log_level)
        return 0

    channels: dict[int, socket.socket] = {}  # worker pid -> supervisor's end of its handoff
    stopping = False

    def spawn() -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                sock.close()
                parent_end.close()
                for other in channels.values():
                    other.close()
                _serve_handed(make_app, child_end, log_level, hosts)
            except BaseException:  # a worker must never return into the supervisor's loop
                code = 1
            finally:
                os._exit(code)
        child_end.close()
        parent_end.setblocking(False)
        channels[pid] = parent_end

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(channels):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def hand_over(conn: socket.socket, turn: int) -> None:
        pids = list(channels)
        for k in range(len(pids)):
            try:
                socket.send_fds(channels[pids[(turn + k) % len(pids)]], [b"c"], [conn.fileno()])
                return
            except OSError:  # that worker is gone or not reading: the next one
                continue
        # No worker can take it: closing tells the client at once.

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    restarts: list[float] = []
    turn = 0
    while channels:
        if not stopping:
            for _ in selector.select(timeout=0.2):
                while True:
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        break
                    with conn:
                        hand_over(conn, turn)
                    turn += 1
        else:
            time.sleep(0.05)
        while channels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                channels.clear()
                break
            if pid == 0:
                break
            channels.pop(pid).close()
            if stopping:
                continue
            # A worker died (e.g. killed by the OOM killer): replace it, unless workers
            # keep dying at start-up, which a restart would only repeat.
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 5 * workers:
                print("tagger: workers keep exiting; stopping", file=sys.stderr)
                stop(signal.SIGTERM, None)
                continue
            print(f"tagger: worker {pid} exited (status {status}); starting another", file=sys.stderr)
            spawn()
    sock.close()
    return 0 if stopping else 1
