"""`tagger serve --workers 2` (tagger/api/server.py): the supervisor hands connections to the
workers in turn, so keep-alive clients are split evenly; a killed worker is replaced; SIGTERM
stops every process."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ..conftest import ROOT, free_port, wait_until_up

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _established_on(pid: int, port: int) -> int:
    """Connections to ``port`` that process ``pid`` holds (from /proc, no ss/psutil)."""
    inodes = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and f[3] == "01":  # 01: ESTABLISHED
            inodes.add(f[9])
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        n += target.startswith("socket:[") and target[8:-1] in inodes
    return n


@pytest.fixture()
def server():
    port = free_port()
    # No document worker pool: the test counts the web workers' own connections.
    env = dict(os.environ, TAGGER_WORK_PROCESSES="0")
    proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(port), "--workers", "2"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_keep_alive_clients_are_split_evenly_and_served_by_both(server):
    proc, port = server
    workers = _children(proc.pid)
    assert len(workers) == 2
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}") for _ in range(8)]
    try:
        for c in clients:
            r = c.post("/v1/tag?evidence=false", json={"text": "对新引进的人工智能企业给予房租补贴。"})
            assert r.status_code == 200 and "rent_subsidy" in r.json()["data"][0]["measure"]
        assert sorted(_established_on(w, port) for w in workers) == [4, 4]
    finally:
        for c in clients:
            c.close()


def test_a_killed_worker_is_replaced_and_sigterm_stops_all(server):
    proc, port = server
    first = _children(proc.pid)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.time() + 60
    while time.time() < deadline and (len(now := _children(proc.pid)) != 2 or first[0] in now):
        time.sleep(0.1)
    assert first[0] not in now and len(now) == 2
    # Every request is answered, whichever worker its connection is handed to.
    for _ in range(6):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            deadline = time.time() + 60
            while (r := c.get("/v1/ready")).status_code != 200 and time.time() < deadline:
                time.sleep(0.2)
            assert r.status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert not [p for p in now if os.path.exists(f"/proc/{p}")]
