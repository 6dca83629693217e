"""Bounded soak of `tagger serve`: connection bursts, idle and slow clients, aborted bodies,
shutdown with slow clients in flight, and /metrics across workers. Prints numbers.

Starts its own server on a free loopback port (all traffic goes to 127.0.0.1) and stops it
at the end; every scenario is bounded in connections and seconds.

    python benchmarks/soak_server.py --workers 2                  # every scenario
    python benchmarks/soak_server.py --workers 2 --only burst --burst 1000 --rounds 3
    python benchmarks/soak_server.py --workers 2 --only idle --idle 8000

The read timeouts are set small for the run (TAGGER_IDLE_TIMEOUT etc., see --idle-timeout)
so that the idle and slow scenarios finish in seconds; an older server that has no such
settings ignores them, and the scenarios then show what it does instead (bounded by
--hold seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_CONNECTIONS = 10_000  # a hard cap on any scenario's connection count


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need)) if hard != resource.RLIM_INFINITY else max(soft, need)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Server:
    """``tagger serve`` in a subprocess, stderr to a temp file (its line count is a result)."""

    def __init__(self, workers: int, env: dict[str, str]):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile("w+", prefix="soak-server-", suffix=".log", delete=False)
        full_env = {**os.environ, "TAGGER_WORK_PROCESSES": "0", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
                                     cwd=ROOT, env=full_env, stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}: {Path(self.log.name).read_text()[-2000:]}")
            try:
                status, _ = asyncio.run(request(self.port, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=2))
                if status == 200:
                    return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            time.sleep(0.1)
        raise SystemExit("server did not come up in 120 s")

    def log_lines(self) -> int:
        return len(Path(self.log.name).read_text(errors="replace").splitlines())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        os.unlink(self.log.name)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return status, head + body


async def request(port: int, raw: bytes, timeout: float = 30) -> tuple[int, bytes]:
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            return await read_response(reader)
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


# -- scenarios ------------------------------------------------------------------------------------
async def burst(port: int, n: int, timeout: float) -> dict:
    """``n`` connections opened at once, each sending GET /v1/health."""
    start = asyncio.Event()
    outcome: dict[str, int] = {}

    async def one():
        await start.wait()
        try:
            status, _ = await request(port, HEALTH, timeout)
            key = str(status)
        except asyncio.IncompleteReadError:
            key = "closed without response"
        except ConnectionResetError:
            key = "reset"
        except asyncio.TimeoutError:
            key = "timeout"
        except OSError as e:
            key = f"connect error {e.errno}"
        outcome[key] = outcome.get(key, 0) + 1

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return {"connections": n, "outcome": outcome, "seconds": round(time.perf_counter() - t0, 2)}


async def idle(port: int, n: int, hold: float) -> dict:
    """``n`` connections that send nothing: when (if) the server closes them. Times are from
    the scenario's start (a client's own clock would start late: the client is busy opening
    the others), so none may be below the idle timeout; ``last_connected_s``: when the
    last one was open."""
    closed: list[float] = []
    connected: list[float] = []
    errors = 0
    writers = []
    t0 = time.perf_counter()

    async def one():
        nonlocal errors
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors += 1
            return
        connected.append(time.perf_counter() - t0)
        writers.append(writer)
        try:
            await asyncio.wait_for(reader.read(1), hold)
            closed.append(time.perf_counter() - t0)
        except asyncio.TimeoutError:
            pass
        except OSError:
            closed.append(time.perf_counter() - t0)

    await asyncio.gather(*[one() for _ in range(n)])
    for w in writers:
        w.close()
    closed.sort()
    q = (lambda p: round(closed[min(len(closed) - 1, int(p * len(closed)))], 2)) if closed else (lambda p: None)
    return {"connections": n, "opened": len(connected), "connect_errors": errors, "closed_by_server": len(closed),
            "open_after_hold": len(connected) - len(closed), "last_connected_s": round(max(connected), 2) if connected else None,
            "closed_at_s_min": q(0), "closed_at_s_p50": q(0.5), "closed_at_s_max": q(1.0), "hold_s": hold}


def _slow_body_head(port: int, length: int, path: str = "/v1/tag") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def slow(port: int, n: int, hold: float, kind: str, body_bytes: int = 200_000) -> dict:
    """``n`` clients that stall: ``body`` sends headers and all but the last byte of a body;
    ``header`` sends a request line and then one header byte a second. When are they cut,
    and with what answer?"""
    cut: list[float] = []
    answers: dict[str, int] = {}

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.perf_counter()
        try:
            if kind == "body":
                body = b'{"text": "' + b"a" * (body_bytes - 12) + b'"}'
                writer.write(_slow_body_head(port, len(body)) + body[:-1])
                await writer.drain()
                data = await asyncio.wait_for(reader.read(200), hold)
            else:
                writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

                async def trickle():
                    while True:
                        await asyncio.sleep(1)
                        writer.write(b"a")

                t = asyncio.create_task(trickle())
                try:
                    data = await asyncio.wait_for(reader.read(200), hold)
                finally:
                    t.cancel()
            cut.append(time.perf_counter() - t0)
            key = data[9:12].decode() if data.startswith(b"HTTP/") else "closed"
            answers[key] = answers.get(key, 0) + 1
        except asyncio.TimeoutError:
            answers["still open"] = answers.get("still open", 0) + 1
        except OSError:
            cut.append(time.perf_counter() - t0)
            answers["reset"] = answers.get("reset", 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*[one() for _ in range(n)])
    cut.sort()
    return {"clients": n, "kind": kind, "answers": answers, "cut_s_min": round(cut[0], 2) if cut else None,
            "cut_s_max": round(cut[-1], 2) if cut else None, "hold_s": hold}


async def aborted(port: int, n: int, body_bytes: int = 100_000) -> dict:
    """``n`` clients that send half a document body (POST /v1/documents) and disconnect."""
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"text": "' + b"a" * (body_bytes - 12) + b'"}'
        writer.write(_slow_body_head(port, len(body), "/v1/documents") + body[: len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()

    for i in range(0, n, 50):
        await asyncio.gather(*[one() for _ in range(min(50, n - i))])
    await asyncio.sleep(1)
    return {"aborted": n}


def workers_of(pid: int) -> list[int]:
    return [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


async def busy_burst(server: Server, n: int, pause: float) -> dict:
    """A burst of ``n`` connections while every worker is stopped (SIGSTOP) for ``pause``
    seconds: workers busy with something else (CPU-bound work, a GC pause, a swapped-out
    page) do not read their hand-off channel, and the supervisor must wait for them."""
    pids = workers_of(server.proc.pid)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        task = asyncio.create_task(burst(server.port, n, timeout=60))
        await asyncio.sleep(pause)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    return {**await task, "workers_stopped_s": pause}


async def big_bodies(server: Server, n: int, size: int, hold: float) -> dict:
    """``n`` clients each sending a ``size``-byte document body to POST /v1/documents but its
    last byte, then waiting: answers, and the server tree's memory (RSS of the supervisor and
    its children) at the peak and after the clients have gone."""
    port = server.port
    body = b'{"text": "' + b"a" * (size - 12) + b'"}'
    answers: dict[str, int] = {}
    peak = 0.0
    done = asyncio.Event()

    async def watch():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(server.proc.pid))
            await asyncio.sleep(0.25)

    async def one():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            answers["connect error"] = answers.get("connect error", 0) + 1
            return
        # Read while writing, as HTTP clients do: a refusal arrives before the body is sent.
        answer = asyncio.create_task(reader.read(200))
        try:
            writer.write(_slow_body_head(port, len(body), "/v1/documents"))
            for i in range(0, len(body) - 1, 1 << 20):
                if answer.done():
                    break
                writer.write(body[i:min(i + (1 << 20), len(body) - 1)])
                await writer.drain()
        except OSError:
            pass
        try:
            data = await asyncio.wait_for(answer, hold)
            key = data[9:12].decode() if data.startswith(b"HTTP/") else "closed"
        except asyncio.TimeoutError:
            key = "still open"
        except OSError:
            key = "reset"
        finally:
            writer.close()
        answers[key] = answers.get(key, 0) + 1

    start = rss_mb(server.proc.pid)
    w = asyncio.create_task(watch())
    await asyncio.gather(*[one() for _ in range(n)])
    done.set()
    await w
    await asyncio.sleep(2)
    return {"clients": n, "body_mb": round(size / 1e6, 1), "answers": answers, "rss_start_mb": start, "rss_peak_mb": peak,
            "rss_after_mb": rss_mb(server.proc.pid)}


async def metrics_total(port: int, requests: int) -> dict:
    """``requests`` GET /v1/health on fresh connections (handed to every worker), then the
    sum of tagger_requests_total{route="/v1/health"} over a few scrapes."""
    def count(text: str) -> float:
        return sum(float(m.group(1)) for m in re.finditer(r'tagger_requests_total\{[^}]*route="/v1/health"[^}]*\} (\S+)', text))

    _, before = await request(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for _ in range(requests):
        await request(port, HEALTH)
    scrapes = []
    for _ in range(4):
        _, text = await request(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        scrapes.append(count(text.decode()) - count(before.decode()))
    return {"sent": requests, "counted_per_scrape": scrapes}


async def shutdown(server: Server, n: int) -> dict:
    """``n`` slow-body clients open, then SIGTERM: seconds until the server exits, and how a
    new request made during the shutdown ends."""
    port = server.port
    writers = []
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_slow_body_head(port, 100_000) + b'{"text": "aaa')
        writers.append(writer)
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    t1 = time.perf_counter()
    try:
        status, _ = await request(port, HEALTH, timeout=15)
        late = f"answered {status}"
    except ConnectionRefusedError:
        late = "refused"
    except (asyncio.IncompleteReadError, ConnectionResetError):
        late = "closed"
    except asyncio.TimeoutError:
        late = "hung 15 s"
    late_s = round(time.perf_counter() - t1, 2)
    deadline = time.time() + 60
    while server.proc.poll() is None and time.time() < deadline:
        await asyncio.sleep(0.05)
    exit_s = round(time.perf_counter() - t0, 2) if server.proc.poll() is not None else None
    for w in writers:
        w.close()
    return {"slow_clients": n, "exit_s": exit_s, "exit_code": server.proc.returncode, "new_request_during_shutdown": late,
            "new_request_s": late_s}


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())]:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=["burst", "busy-burst", "idle", "slow", "aborted", "big-bodies", "metrics", "shutdown"],
                    action="append")
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--aborted", type=int, default=100)
    ap.add_argument("--big-bodies", type=int, default=100, help="clients of the big-bodies scenario")
    ap.add_argument("--big-body-mb", type=float, default=10.4)
    ap.add_argument("--idle-timeout", type=float, default=3)
    ap.add_argument("--header-timeout", type=float, default=4)
    ap.add_argument("--body-timeout", type=float, default=5)
    ap.add_argument("--hold", type=float, default=20, help="seconds an idle/slow client waits for the server to close it")
    a = ap.parse_args()
    for name in ("burst", "idle", "slow", "aborted", "big_bodies"):
        setattr(a, name, min(getattr(a, name), MAX_CONNECTIONS))
    a.hold = min(a.hold, 120)
    raise_nofile(max(a.burst, a.idle, a.slow) + 512)
    a.big_body_mb, a.big_bodies = min(a.big_body_mb, 11), min(a.big_bodies, 300)
    scenarios = a.only or ["burst", "busy-burst", "idle", "slow", "aborted", "big-bodies", "metrics", "shutdown"]
    env = {"TAGGER_IDLE_TIMEOUT": str(a.idle_timeout), "TAGGER_HEADER_TIMEOUT": str(a.header_timeout),
           "TAGGER_BODY_TIMEOUT": str(a.body_timeout)}
    print(f"workers {a.workers}; timeouts idle {a.idle_timeout} s, header {a.header_timeout} s, body {a.body_timeout} s", flush=True)
    server = Server(a.workers, env)
    try:
        if "burst" in scenarios:
            for r in range(a.rounds):
                print("burst", asyncio.run(burst(server.port, a.burst, timeout=60)), flush=True)
        if "busy-burst" in scenarios and a.workers > 1:
            print("busy-burst", asyncio.run(busy_burst(server, a.burst, 1.0)), flush=True)
        if "idle" in scenarios:
            print("idle", asyncio.run(idle(server.port, a.idle, a.hold)), flush=True)
        if "slow" in scenarios:
            print("slow", asyncio.run(slow(server.port, a.slow, a.hold, "body")), f"rss_mb {rss_mb(server.proc.pid)}", flush=True)
            print("slow", asyncio.run(slow(server.port, a.slow, a.hold, "header")), flush=True)
        if "aborted" in scenarios:
            lines = server.log_lines()
            res = asyncio.run(aborted(server.port, a.aborted))
            print("aborted", {**res, "log_lines": server.log_lines() - lines}, flush=True)
        if "big-bodies" in scenarios:
            print("big-bodies", asyncio.run(big_bodies(server, a.big_bodies, int(a.big_body_mb * 1e6), a.hold)), flush=True)
        if "metrics" in scenarios:
            print("metrics", asyncio.run(metrics_total(server.port, 200)), flush=True)
        if "shutdown" in scenarios:
            print("shutdown", asyncio.run(shutdown(server, min(a.slow, 200))), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
