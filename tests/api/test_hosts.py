"""DNS rebinding (reliability issue): the Host header was not checked, so a page on
rebind.evil.example whose name was re-pointed at 127.0.0.1 sent `Host: rebind.evil.example`
with a matching `Origin`, passed the cross-site check, stored documents on a loopback server
that allows anonymous writes and read the store back. Every request's Host must now be in
TAGGER_ALLOWED_HOSTS (default: localhost, 127.0.0.1, ::1, any port; tagger.api.security.HostCheck).
Real servers over HTTP: uvicorn in a thread and `tagger serve` in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from tagger.api import create_app
from tagger.api.security import host_name
from tagger.config import Settings

from ..conftest import ROOT, free_port, serve

EVIL = "rebind.evil.example"
DOC = {"text": "第一条 对人工智能企业给予房租补贴。", "doc": "rebind-doc"}
WRITE = "/v1/documents?store=true&evidence=false"


def as_host(host: str, port: int | None = None) -> dict:
    """Headers of a browser on http://<host>[:port]: Host and the page's own Origin."""
    netloc = f"{host}:{port}" if port else host
    return {"Host": netloc, "Origin": f"http://{netloc}"}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _stored(url: str, doc: str) -> int:
    r = httpx.get(url + "/v1/clauses", params={"doc": doc, "limit": 1000}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["count"]


def _refused(r: httpx.Response, host: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    if r.request.method == "HEAD":
        return
    body = r.json()
    assert body["error"] == "invalid_host" and host in body["message"] and "TAGGER_ALLOWED_HOSTS" in body["message"], body


@pytest.fixture()
def loopback_url(tmp_path, tagger, monkeypatch):
    """A server bound to 127.0.0.1 with anonymous writes allowed: what the attack needs."""
    monkeypatch.delenv("TAGGER_ALLOWED_HOSTS", raising=False)
    st = Settings(allow_anonymous_writes=True, work_processes=0, database_url=f"sqlite:///{tmp_path / 'rebind.db'}")
    assert st.host == "127.0.0.1" and not st.api_keys
    yield from serve(create_app(st, tagger=tagger))


@pytest.mark.parametrize("with_port", [True, False], ids=["host-with-port", "host-without-port"])
def test_rebound_host_cannot_write_or_read_the_store(loopback_url, with_port):
    port = _port(loopback_url)
    evil = as_host(EVIL, port if with_port else None)
    r = httpx.post(loopback_url + WRITE, json=DOC, headers=evil, timeout=60)
    _refused(r, EVIL)
    assert _stored(loopback_url, DOC["doc"]) == 0  # nothing reached the store
    r = httpx.get(loopback_url + "/v1/clauses", params={"limit": 10}, headers=evil, timeout=30)
    _refused(r, EVIL)
    # The server's own names still work, as the browser sends them (with the matching Origin).
    r = httpx.post(loopback_url + WRITE, json=DOC, headers=as_host("127.0.0.1", port), timeout=60)
    assert r.status_code == 200 and r.json()["stored"][0]["status"] == "inserted", r.text
    r = httpx.post(loopback_url + WRITE, json={**DOC, "doc": "rebind-doc-2"}, headers=as_host("localhost", port), timeout=60)
    assert r.status_code == 200 and r.json()["stored"][0]["status"] == "inserted", r.text
    for name in ("127.0.0.1", "localhost", "LOCALHOST", "[::1]"):
        r = httpx.get(loopback_url + "/v1/clauses", params={"doc": DOC["doc"]}, headers={"Host": f"{name}:{port}"}, timeout=30)
        assert r.status_code == 200 and r.json()["count"] >= 1, (name, r.text[:300])


def test_every_route_refuses_a_foreign_host(loopback_url, tagger):
    """Every route the app declares, the page, /metrics and /v1/health included, and paths it
    does not declare: 400 with the JSON error, before any other layer (no 404/405/415/422)."""
    # From the OpenAPI document: every route the app declares, whatever routers they are in;
    # and those left out of it (the page, /metrics, the docs), and some it does not have.
    paths = create_app(Settings(), tagger=tagger).openapi()["paths"]
    routes = {(m.upper(), re.sub(r"\{[^}]+\}", "x", p)) for p, ops in paths.items() for m in ops}
    assert {("GET", "/v1/health"), ("POST", "/v1/documents"), ("GET", "/v1/clauses"), ("POST", "/v1/tag")} <= routes
    routes |= {("GET", "/"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"), ("HEAD", "/v1/health"),
               ("GET", "/nowhere"), ("DELETE", "/v1/health"), ("PATCH", "/v1/tag")}
    port = _port(loopback_url)
    for method, path in sorted(routes):
        for host in (f"{EVIL}:{port}", "0.0.0.0", f"192.168.1.5:{port}", "localhost.evil.example", "127.0.0.1.nip.io"):
            r = httpx.request(method, loopback_url + path, headers={"Host": host, "Origin": f"http://{host}"}, timeout=30)
            _refused(r, host)
    # Malformed Host headers are refused too (a bad port; a bracket left open).
    for bad in ("localhost:80x", "[::1", "[::1]80", "localhost:123456", ":8000"):
        r = httpx.get(loopback_url + "/v1/health", headers={"Host": bad}, timeout=30)
        assert r.status_code == 400 and r.json()["error"] == "invalid_host", (bad, r.text)
    assert httpx.get(loopback_url + "/v1/health", timeout=30).status_code == 200


def test_allowed_hosts_setting(monkeypatch):
    monkeypatch.delenv("TAGGER_ALLOWED_HOSTS", raising=False)
    default = Settings().allowed_hosts
    assert set(default) == {"localhost", "127.0.0.1", "::1"}  # never the test client's "testserver"
    monkeypatch.setenv("TAGGER_ALLOWED_HOSTS", " policy.example.org, localhost ,,")
    assert Settings().allowed_hosts == ("policy.example.org", "localhost")
    monkeypatch.setenv("TAGGER_ALLOWED_HOSTS", "")
    assert Settings().allowed_hosts == default


@pytest.mark.parametrize("value, name", [
    ("localhost", "localhost"), ("localhost:8000", "localhost"), ("LocalHost.:8000", "localhost"), ("127.0.0.1:80", "127.0.0.1"),
    ("[::1]:8000", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("[0:0:0:0:0:0:0:1]:1", "::1"), ("policy.example.org", "policy.example.org"),
    ("localhost:", "localhost"), ("localhost:x", None), ("[::1", None), ("[::1]x", None), ("", None), (":8000", None),
])
def test_host_name(value, name):
    assert host_name(value) == name


def test_test_client_host_is_accepted_only_when_the_settings_list_it(tagger):
    """FastAPI's TestClient sends Host: testserver, which the default does not allow."""
    r = TestClient(create_app(Settings(), tagger=tagger)).get("/v1/health")
    _refused(r, "testserver")
    assert TestClient(create_app(Settings(allowed_hosts=("testserver",)), tagger=tagger)).get("/v1/health").status_code == 200


def test_star_turns_the_check_off(tagger):
    app = create_app(Settings(allowed_hosts=("*",)), tagger=tagger)
    for url in serve(app):
        assert httpx.get(url + "/v1/health", headers={"Host": EVIL}).json() == {"status": "ok"}


def _wait(url: str, host: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1])
        try:
            if httpx.get(url, headers={"Host": host}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not up")


def _tagger_serve(tmp_path, args: list[str], env: dict):
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in ("TAGGER_API_KEYS", "TAGGER_ALLOWED_HOSTS")}
    full_env.update(TAGGER_ALLOW_ANONYMOUS_WRITES="1", TAGGER_WORK_PROCESSES="0",
                    TAGGER_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", **env)
    proc = subprocess.Popen([sys.executable, "-m", "tagger.cli", "serve", "--port", str(port), *args],
                            cwd=ROOT, env=full_env, stderr=subprocess.PIPE, text=True)
    return port, proc


def test_tagger_serve_takes_allowed_hosts_from_the_environment(tmp_path):
    port, proc = _tagger_serve(tmp_path, [], {"TAGGER_ALLOWED_HOSTS": "policy.example.org"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + "/v1/health", f"policy.example.org:{port}", proc)
        r = httpx.post(url + WRITE, json=DOC, headers=as_host("policy.example.org", port), timeout=60)
        assert r.status_code == 200 and r.json()["stored"][0]["status"] == "inserted", r.text
        r = httpx.get(url + "/v1/clauses", params={"doc": DOC["doc"]}, headers=as_host("policy.example.org"), timeout=30)
        assert r.status_code == 200 and r.json()["count"] >= 1
        _refused(httpx.post(url + WRITE, json=DOC, headers=as_host(EVIL, port), timeout=60), EVIL)
        # The list replaces the loopback default.
        _refused(httpx.get(url + "/v1/health", timeout=30), f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_tagger_serve_on_all_interfaces_does_not_allow_its_address_by_itself(tmp_path):
    """`--host 0.0.0.0`: Host 0.0.0.0 (which browsers connect to loopback with) and LAN
    addresses are refused until listed; loopback names keep working; start-up says so."""
    port, proc = _tagger_serve(tmp_path, ["--host", "0.0.0.0"], {})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + "/v1/health", f"127.0.0.1:{port}", proc)
        for host in (f"0.0.0.0:{port}", f"192.168.1.5:{port}", f"{EVIL}:{port}"):
            _refused(httpx.get(url + "/v1/clauses", headers={"Host": host}, timeout=30), host)
        assert httpx.get(url + "/v1/clauses", headers={"Host": f"localhost:{port}"}, timeout=30).status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "TAGGER_ALLOWED_HOSTS" in err, err
