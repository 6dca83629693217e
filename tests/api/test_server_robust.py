"""`tagger serve` under hostile or unlucky traffic (reliability issue, items 4, 5 and 12), with
real server processes and real sockets: a burst of 1,000 connections while the workers are
busy is answered in full; idle, slow-header and slow-body connections are closed by their
deadlines (and only by them), and so is a client that stops reading its response; an upload
refused before its body is read gets its answer, not a reset; a client aborting its body is
one log line; the buffered bodies of all requests are bounded (503 + Retry-After); SIGTERM
with slow clients open exits within 5 s and refuses new work; /metrics counts the requests of
both workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT, free_port

pytestmark = pytest.mark.slow

IDLE, HEADER, BODY = 1.5, 2.0, 2.0
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _raise_nofile(need: int) -> None:
    """This process's open-file limit raised to ``need`` (the server raises its own); the
    test is skipped where the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files, hard limit {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class Server:
    def __init__(self, tmp: Path, workers: int = 2, **env: str):
        self.port = free_port()
        self.log_path = tmp / f"server-{self.port}.log"
        self.log = open(self.log_path, "w")
        full = {**os.environ, "TAGGER_WORK_PROCESSES": "0", "TAGGER_IDLE_TIMEOUT": str(IDLE),
                "TAGGER_HEADER_TIMEOUT": str(HEADER), "TAGGER_BODY_TIMEOUT": str(BODY), **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(self.port), "--workers", str(workers)],
                                     cwd=ROOT, env=full, stderr=self.log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if asyncio.run(request(self.port, HEALTH, timeout=2))[0] == 200:
                    return
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                time.sleep(0.1)
        raise AssertionError("server did not come up")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # lets the supervisor remove its metrics folder
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    yield s
    s.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return int(head[9:12]), head, body


async def request(port: int, raw: bytes, timeout: float = 30) -> tuple[int, bytes, bytes]:
    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            return await read_response(reader)
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


def post_head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def burst(port: int, n: int) -> dict[str, int]:
    outcome: dict[str, int] = {}
    go = asyncio.Event()

    async def one():
        await go.wait()
        try:
            key = str((await request(port, HEALTH, timeout=60))[0])
        except asyncio.IncompleteReadError:
            key = "closed without response"
        except (OSError, asyncio.TimeoutError) as e:
            key = type(e).__name__
        outcome[key] = outcome.get(key, 0) + 1

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    go.set()
    await asyncio.gather(*tasks)
    return outcome


# -- 4. no connection dropped in the hand-off -------------------------------------------------
def test_a_burst_of_1000_connections_is_answered_in_full_even_while_the_workers_are_busy(server):
    _raise_nofile(1000 + 256)
    assert asyncio.run(burst(server.port, 1000)) == {"200": 1000}
    # Both workers stopped for a second (CPU-bound work, a GC pause): they do not read their
    # hand-off channels, which fill up. The supervisor used to close every connection it
    # could not hand over at once (444 of 1,000 here); now it waits for room.
    workers = server.workers()
    assert len(workers) == 2

    async def busy_burst():
        for p in workers:
            os.kill(p, signal.SIGSTOP)
        try:
            task = asyncio.create_task(burst(server.port, 1000))
            await asyncio.sleep(1.0)
        finally:
            for p in workers:
                os.kill(p, signal.SIGCONT)
        return await task

    assert asyncio.run(busy_burst()) == {"200": 1000}


def test_8000_idle_connections_are_closed_by_the_idle_timeout_only(server):
    n = 8000
    _raise_nofile(n + 256)

    async def run():
        connected: list[float] = []
        closed: list[float] = []

        async def one():
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            connected.append(time.monotonic())
            try:
                await asyncio.wait_for(reader.read(1), IDLE + 20)
                closed.append(time.monotonic())
            except asyncio.TimeoutError:
                pass
            except OSError:
                closed.append(time.monotonic())
            finally:
                writer.close()

        await asyncio.gather(*[one() for _ in range(n)])
        return connected, closed

    t_start = time.monotonic()
    connected, closed = asyncio.run(run())
    assert len(connected) == n and len(closed) == n  # every one closed by the server ...
    # ... none before the idle deadline (a connection's deadline runs from when its worker
    # took it, never before the test began; the old hand-off closed some at once) ...
    assert min(closed) - t_start >= IDLE - 0.05, min(closed) - t_start
    # ... and all soon after it (the machine has 2 cores, shared with this client).
    assert max(closed) - max(connected) <= IDLE + 8


def test_an_idle_connection_and_a_kept_alive_one_are_closed_after_the_idle_timeout(server):
    async def run():
        # Never sends a byte.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(1), 20) == b""
        fresh = time.monotonic() - t0
        writer.close()
        # One request, then keep-alive; blank lines do not count as a request.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(HEALTH)
        assert (await read_response(reader))[0] == 200
        t0 = time.monotonic()

        async def blank_lines():
            for _ in range(6):
                await asyncio.sleep(IDLE / 3)
                writer.write(b"\r\n")

        t = asyncio.create_task(blank_lines())
        try:
            assert await asyncio.wait_for(reader.read(1), 20) == b""
        except ConnectionError:  # closed, and a blank line written after that was reset
            pass
        kept = time.monotonic() - t0
        t.cancel()
        writer.close()
        return fresh, kept

    fresh, kept = asyncio.run(run())
    assert IDLE - 0.2 <= fresh <= IDLE + 1.5
    assert IDLE - 0.2 <= kept <= IDLE + 1.5


# -- 5. read deadlines, aborted bodies, buffered bytes -------------------------------------------
def test_a_slow_body_and_slow_headers_are_cut_with_408(server):
    async def slow_body():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = json.dumps({"text": "对新引进的人工智能企业给予房租补贴。" * 100}).encode()
        writer.write(post_head("/v1/tag", len(body)) + body[:-1])
        t0 = time.monotonic()
        status, _, payload = await asyncio.wait_for(read_response(reader), 20)
        took = time.monotonic() - t0
        assert await asyncio.wait_for(reader.read(1), 5) == b""  # and closed
        writer.close()
        return status, json.loads(payload), took

    async def slow_headers():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        t0 = time.monotonic()

        async def trickle():  # a byte every 0.3 s: no gap reaches the deadline
            while True:
                await asyncio.sleep(0.3)
                writer.write(b"a")

        t = asyncio.create_task(trickle())
        try:
            status, _, _ = await asyncio.wait_for(read_response(reader), 20)
        finally:
            t.cancel()
        writer.close()
        return status, time.monotonic() - t0

    status, payload, took = asyncio.run(slow_body())
    assert status == 408 and payload["error"] == "request_timeout"
    assert BODY - 0.2 <= took <= BODY + 1.5
    status, took = asyncio.run(slow_headers())
    assert status == 408
    assert HEADER - 0.2 <= took <= HEADER + 1.5
    # The server is fine afterwards.
    assert asyncio.run(request(server.port, HEALTH))[0] == 200


def test_an_aborted_body_is_one_log_line_not_a_traceback(server):
    before = server.log_text()

    async def abort_one(path: str, ctype: bytes):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        part = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\n'
                if b"multipart" in ctype else b'{"text": "')
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 300000\r\n".encode()
                     + b"Content-Type: " + ctype + b"\r\n\r\n" + part + b"x" * 100_000)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.transport.abort()

    async def run():
        for _ in range(5):
            await abort_one("/v1/documents", b"application/json")
            await abort_one("/v1/documents", b"multipart/form-data; boundary=XX")
        await asyncio.sleep(1.0)

    asyncio.run(run())
    new = server.log_text()[len(before):]
    lines = new.splitlines()
    assert "Traceback" not in new
    assert 1 <= len(lines) <= 10, new[:3000]
    assert all("went away before the end of its request body" in line for line in lines), lines


def test_buffered_bodies_are_bounded_across_requests(tmp_path):
    # One worker, a budget of 300 kB: one stalled 200 kB body holds most of it.
    s = Server(tmp_path, workers=1, TAGGER_MAX_BUFFERED_BYTES="300000", TAGGER_BODY_TIMEOUT="30")
    try:
        async def run():
            body = '{"text": "对新引进的人工智能企业给予房租补贴。"'.encode() + b" " * 200_000 + b"}"
            r1, w1 = await asyncio.open_connection("127.0.0.1", s.port)
            w1.write(post_head("/v1/tag?evidence=false", len(body)) + body[:-1])  # stalls before its last byte
            await w1.drain()
            await asyncio.sleep(0.3)
            # A second body of that size does not fit now: 503 + Retry-After, unread.
            status, head, payload = await request(s.port, post_head("/v1/tag?evidence=false", len(body)))
            assert status == 503 and b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
            assert json.loads(payload)["error"] == "busy"
            # One larger than the whole budget never will: 413.
            status, _, _ = await request(s.port, post_head("/v1/tag", 400_000))
            assert status == 413
            # Requests without a body are not held back.
            assert (await request(s.port, HEALTH))[0] == 200
            # The first body completes: its bytes are released, the next one fits.
            w1.write(body[-1:])
            assert (await asyncio.wait_for(read_response(r1), 60))[0] == 200
            w1.close()
            status, _, _ = await request(s.port, post_head("/v1/tag?evidence=false", len(body)) + body, timeout=60)
            assert status == 200

        asyncio.run(run())
    finally:
        s.close()


# -- 5. shutdown ------------------------------------------------------------------------------
def test_a_client_that_stops_reading_its_response_is_cut_after_the_send_timeout(tmp_path):
    """A large answer to a client that does not read it: without a send deadline the server
    would hold the response (here ~6 MB) for as long as the connection stays open."""
    s = Server(tmp_path, workers=1, TAGGER_SEND_TIMEOUT="1", TAGGER_IDLE_TIMEOUT="30")
    try:
        texts = [f"第{i}条 对新引进的人工智能企业给予房租补贴，最高不超过{i}万元，并支持建设公共服务平台和算力中心。" for i in range(5000)]
        body = json.dumps({"clauses": [{"id": f"c{i}", "text": t} for i, t in enumerate(texts)]}, ensure_ascii=False).encode()
        raw = post_head("/v1/tag?evidence=false", len(body)) + body

        def stalled_reader(wait: float) -> tuple[int, int, str]:
            """(declared length, body bytes read, how the read ended) for a client with a small
            receive buffer that reads nothing for ``wait`` seconds."""
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", s.port))
            sock.sendall(raw)
            time.sleep(wait)
            head, got, declared, end = b"", 0, -1, "eof"  # head: bytes until the headers are parsed
            sock.settimeout(30)
            try:
                while chunk := sock.recv(1 << 20):
                    got += len(chunk)
                    if declared < 0:
                        head += chunk
                        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)(?=\r\n).*?\r\n\r\n", head, re.S)
                        if m:
                            declared, got = int(m.group(1)), len(head) - m.end()
                    if 0 <= declared <= got:
                        end = "complete"
                        break
            except ConnectionResetError:
                end = "reset"
            finally:
                sock.close()
            return declared, got, end

        # A client that reads at once gets it all (the same request: the answer is big).
        declared, got, end = stalled_reader(0)
        assert end == "complete" and declared > 4_000_000, (declared, got, end)
        # One that waits 12 s (tagging takes a few; the deadline is 1 s after the buffer
        # fills) finds the connection cut and most of the answer never sent.
        declared, got, end = stalled_reader(12)
        assert end in ("eof", "reset") and (declared == -1 or got < declared), (declared, got, end)
        assert "response not taken by the client: less than 48 KiB in 1 s" in s.log_text()
        # The server is fine: the next request is answered.
        assert asyncio.run(request(s.port, HEALTH))[0] == 200
    finally:
        s.close()


def test_an_upload_refused_before_its_body_is_read_gets_its_answer_not_a_broken_pipe(tmp_path):
    """413 (the body could never fit the buffer budget) is answered from the headers; the
    client, sending its body in chunks as uploaders do, keeps sending. Closed at once, the
    server's kernel would answer those bytes with a reset (every try: BrokenPipeError on
    send before this change); lingering, the server drops the rest of the body and closes
    when it has all arrived, or after LINGER_SECONDS of a body that never ends."""
    from tagger.api.connections import LINGER_SECONDS

    s = Server(tmp_path, workers=1, TAGGER_MAX_BUFFERED_BYTES="300000")
    try:
        def upload(declared: int, chunks: int, pause: float) -> tuple[str, bytes, float]:
            sock = socket.create_connection(("127.0.0.1", s.port))
            sock.settimeout(30)
            sent, t0 = "all", time.monotonic()
            try:
                sock.sendall(post_head("/v1/tag", declared))
                for _ in range(chunks):
                    sock.sendall(b"x" * 65536)
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError) as exc:
                sent = type(exc).__name__
            got = b""
            try:
                while chunk := sock.recv(65536):
                    got += chunk
            except ConnectionResetError:
                got += b"<reset>"
            finally:
                sock.close()
            return sent, got, time.monotonic() - t0

        for _ in range(5):
            sent, got, _ = upload(2 * 1024 * 1024, 32, 0.005)
            assert sent == "all" and got.startswith(b"HTTP/1.1 413") and not got.endswith(b"<reset>"), (sent, got[:200])
        # A body that never ends is not waited for: closed LINGER_SECONDS after the answer.
        sent, got, took = upload(50 * 1024 * 1024, 400, 0.05)
        assert got.startswith(b"HTTP/1.1 413") and sent != "all", (sent, got[:200])
        assert LINGER_SECONDS - 1 < took < LINGER_SECONDS + 5, took
        assert asyncio.run(request(s.port, HEALTH))[0] == 200
    finally:
        s.close()


def test_sigterm_with_20_slow_clients_open_exits_within_5_s_and_refuses_new_work(tmp_path):
    s = Server(tmp_path, TAGGER_BODY_TIMEOUT="60", TAGGER_HEADER_TIMEOUT="60", TAGGER_IDLE_TIMEOUT="60")
    try:
        async def run():
            slow = []
            for i in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
                if i % 2:
                    writer.write(post_head("/v1/tag", 100_000) + b'{"text": "aaa')  # body stalled
                else:
                    writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers stalled
                slow.append((reader, writer))
            # One kept-alive connection, between requests.
            kr, kw = await asyncio.open_connection("127.0.0.1", s.port)
            kw.write(HEALTH)
            assert (await read_response(kr))[0] == 200
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            # A new connection during the shutdown is refused (or answered 503), not left hanging.
            t1 = time.monotonic()
            try:
                late = (await request(s.port, HEALTH, timeout=10))[0]
            except (ConnectionRefusedError, ConnectionResetError, asyncio.IncompleteReadError):
                late = "refused"
            assert late in ("refused", 503) and time.monotonic() - t1 < 2
            # The slow clients are told: 503 + Retry-After (or closed); none hangs.
            answers = []
            for reader, writer in slow:
                try:
                    answers.append((await asyncio.wait_for(read_response(reader), 10))[0])
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    answers.append("closed")
                writer.close()
            assert await asyncio.wait_for(kr.read(1), 10) == b""  # the idle one is closed
            kw.close()
            while s.proc.poll() is None and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.05)
            return time.monotonic() - t0, answers

        took, answers = asyncio.run(run())
        assert s.proc.poll() == 0
        assert took < 5.0, took
        assert answers.count(503) >= 18, answers
    finally:
        s.close()


# -- 12. metrics across workers ------------------------------------------------------------------
def test_metrics_count_the_requests_of_both_workers(server):
    def health_count(text: str) -> float:
        return sum(float(m.group(1)) for m in re.finditer(r'tagger_requests_total\{[^}]*route="/v1/health"[^}]*\} (\S+)', text))

    async def scrape():
        return (await request(server.port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))[2].decode()

    async def run():
        before = [health_count(await scrape()) for _ in range(2)]
        assert before[0] == before[1]  # whichever worker answers the scrape
        for _ in range(40):  # fresh connections: handed to the workers in turn
            assert (await request(server.port, HEALTH))[0] == 200
        return before[0], [health_count(await scrape()) for _ in range(4)]

    before, after = asyncio.run(run())
    assert after == [before + 40] * 4, (before, after)
    # Latency too: one histogram over both workers.
    text = asyncio.run(scrape())
    count = sum(float(m.group(1)) for m in re.finditer(r'tagger_request_latency_seconds_count\{route="/v1/health"\} (\S+)', text))
    assert count == health_count(text) == before + 40
