"""Anonymous writes follow the addresses the server is actually bound to (tagger/api/security.py),
not the settings: `tagger serve --host 0.0.0.0` with TAGGER_ALLOW_ANONYMOUS_WRITES=1 accepted
anonymous store writes from other machines while TAGGER_HOST stayed 127.0.0.1.
Real servers over HTTP: `tagger serve` in a subprocess (one process and the multi-worker
supervisor), and uvicorn started without `tagger serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from tagger.api import create_app
from tagger.api.security import is_loopback, listening_hosts
from tagger.config import Settings

from ..conftest import ROOT, free_port, wait_until_up

DOC = {"text": "第一条 对人工智能企业给予房租补贴。", "doc": "anon-bound"}
WRITE = "/v1/documents?store=true&evidence=false"


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (["--host", "0.0.0.0"], {}, 403),
        (["--host", "0.0.0.0", "--workers", "2"], {}, 403),  # the supervisor's workers hold no socket
        ([], {"TAGGER_HOST": "0.0.0.0"}, 403),
        ([], {}, 200),  # loopback (the default) and opted in: allowed
    ],
    ids=["cli-flag", "cli-flag-2-workers", "env-var", "loopback"],
)
def test_tagger_serve_allows_anonymous_writes_only_when_bound_to_loopback(tmp_path, args, env, expected):
    port = free_port()
    full_env = dict(os.environ, TAGGER_ALLOW_ANONYMOUS_WRITES="1", TAGGER_WORK_PROCESSES="0",
                    TAGGER_DATABASE_URL=f"sqlite:///{tmp_path / 'anon.db'}", **env)
    full_env.pop("TAGGER_API_KEYS", None)
    proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(port), *args],
                            cwd=ROOT, env=full_env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/health")
        r = httpx.post(f"http://127.0.0.1:{port}{WRITE}", json=DOC, timeout=60)
        assert r.status_code == expected, r.text
        if expected == 403:
            assert "TAGGER_API_KEYS" in r.json()["detail"]
        else:
            assert r.json()["stored"][0]["status"] == "inserted"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    # Start-up says that the opt-in does nothing on this address.
    assert ("has no effect" in err) == (expected == 403), err


def _uvicorn(app, host: str):
    """uvicorn started directly (not `tagger serve`): the app finds its socket itself."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/health", attempts=200)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(5)


def test_uvicorn_on_all_interfaces_refuses_anonymous_writes(tmp_path, tagger):
    st = Settings(allow_anonymous_writes=True, work_processes=0, database_url=f"sqlite:///{tmp_path / 'a.db'}")
    assert st.host == "127.0.0.1"  # the settings say loopback; the socket does not
    for url in _uvicorn(create_app(st, tagger=tagger), "0.0.0.0"):
        r = httpx.post(url + WRITE, json=DOC, timeout=60)
        assert r.status_code == 403, r.text
    for url in _uvicorn(create_app(st, tagger=tagger), "127.0.0.1"):
        assert httpx.post(url + WRITE, json=DOC, timeout=60).status_code == 200


def test_listening_hosts_reads_this_process_sockets():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert "127.0.0.1" in listening_hosts()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        hosts = listening_hosts()
        assert "0.0.0.0" in hosts and not all(is_loopback(h) for h in hosts)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False), ("", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
