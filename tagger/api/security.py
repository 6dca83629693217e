"""Who may call what: API keys for writes (and optionally reads), and cross-site refusal.

* Writes (``POST /v1/documents?store=true`` and any later write) need
  ``Authorization: Bearer <key>`` with a key from ``TAGGER_API_KEYS`` (comma-separated,
  compared in constant time). With no key configured, writes are refused unless
  ``TAGGER_ALLOW_ANONYMOUS_WRITES=1`` *and* every address the server is bound to is a
  loopback address: the listening sockets themselves, not the settings (``tagger serve
  --host 0.0.0.0`` leaves ``TAGGER_HOST`` at 127.0.0.1). ``tagger serve`` (one process
  or the multi-worker supervisor) tells the app its socket (``app.state.bound_hosts``);
  under any other launcher (uvicorn in a thread, ``uvicorn --factory``) the app reads its
  process's listening TCP sockets from ``/proc``. Addresses that cannot be found out
  count as not loopback. ``TAGGER_HOST`` must be loopback too.
* Reads are open unless ``TAGGER_REQUIRE_KEY_FOR_READS=1``, which covers every ``/v1/`` route
  but ``/v1/health`` (``/v1/ready`` and ``/v1/model`` included); ``/metrics`` stays open.
* A browser can send a form or ``text/plain`` POST to any site without a preflight, so
  JSON endpoints take only ``application/json`` and a request whose ``Origin`` is not the
  server's own is refused: that closes cross-site writes even for anonymous loopback use.
* DNS rebinding gets past that Origin check: a page on ``evil.example`` whose name is then
  re-pointed at 127.0.0.1 is same-origin with this server to the browser, and sends
  ``Host: evil.example`` with a matching ``Origin``. :class:`HostCheck` (the outermost
  middleware, so every route: ``/``, ``/metrics``, ``/v1/health`` too) answers 400 to any
  request whose ``Host`` is not in ``TAGGER_ALLOWED_HOSTS`` (default: localhost, 127.0.0.1,
  ::1; any port), before any other layer sees it; ``*`` turns the check off.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
import sys
from typing import Iterable
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

__all__ = ["require_read", "require_write", "require_json", "same_origin_or_none", "is_loopback", "bound_hosts",
           "listening_hosts", "anonymous_writes_allowed", "host_name", "HostCheck"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _proc_address(hexaddr: str) -> str:
    """An address as /proc/net/tcp{,6} prints it (32-bit words in host byte order)."""
    raw = bytes.fromhex(hexaddr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def listening_hosts() -> tuple[str, ...]:
    """The local addresses of this process's listening TCP sockets, read from /proc (Linux);
    () when there are none or /proc cannot be read."""
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        hosts = []
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            try:
                lines = open(table).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) > 9 and f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                    hosts.append(_proc_address(f[1].rsplit(":", 1)[0]))
        return tuple(hosts)
    except (OSError, ValueError):
        return ()


def bound_hosts(app) -> tuple[str, ...]:
    """Where this server listens: what ``tagger serve`` recorded, else this process's
    listening sockets (see the module docstring)."""
    hosts = getattr(app.state, "bound_hosts", None)
    return tuple(hosts) if hosts is not None else listening_hosts()


def anonymous_writes_allowed(app) -> bool:
    """TAGGER_ALLOW_ANONYMOUS_WRITES=1, TAGGER_HOST loopback, and every bound address
    loopback (none known: refused)."""
    st = app.state.settings
    if not st.allow_anonymous_writes or not is_loopback(st.host):
        return False
    hosts = bound_hosts(app)
    return bool(hosts) and all(is_loopback(h) for h in hosts)


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _key_ok(request: Request, keys: tuple[str, ...]) -> bool:
    key = _presented_key(request)
    if key is None:
        return False
    # Compare against every key so the time taken does not tell which one nearly matched.
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(key.encode("utf-8"), k.encode("utf-8"))
    return ok


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def same_origin_or_none(request: Request) -> bool:
    """True when the request carries no Origin (non-browser clients) or the server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        site = request.headers.get("sec-fetch-site")
        return site in (None, "same-origin", "none")
    if origin == "null":
        return False
    o = urlsplit(origin)
    return o.netloc.lower() == (request.headers.get("host") or "").lower()


def require_write(request: Request) -> None:
    st = request.app.state.settings
    if not same_origin_or_none(request):
        raise HTTPException(status_code=403, detail="cross-site write refused (Origin is not this server)")
    if st.api_keys:
        if not _key_ok(request, st.api_keys):
            raise _unauthorized("writes need 'Authorization: Bearer <key>' with a key from TAGGER_API_KEYS")
        return
    if anonymous_writes_allowed(request.app):
        return
    raise HTTPException(
        status_code=403,
        detail="writes are disabled: set TAGGER_API_KEYS (or, on a server bound to loopback addresses only, TAGGER_ALLOW_ANONYMOUS_WRITES=1)",
    )


async def require_read(request: Request) -> None:
    st = request.app.state.settings
    if st.require_key_for_reads and not _key_ok(request, st.api_keys):
        raise _unauthorized("this server requires 'Authorization: Bearer <key>' for every request")


async def require_json(request: Request) -> None:
    """JSON bodies only as application/json: text/plain and forms are what browsers send
    cross-site without asking first."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPException(status_code=415, detail=f"send the body as application/json (got {ctype or 'no content type'!r})")



_PORT = re.compile(r"[0-9]{0,5}")  # RFC 3986: the port may be empty ("localhost:")


def host_name(value: str) -> str | None:
    """The name in a Host header or an allow-list entry, comparable: lower case, without
    the port and a trailing dot, IP addresses in their canonical form (``[::1]:8000`` and
    ``0:0:0:0:0:0:0:1`` are ``::1``). None when it is malformed (empty, a bad port)."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[1:end], v[end + 1 :]
        if rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:])):
            return None
    elif v.count(":") > 1:  # a bare IPv6 address (allow-list entries)
        name = v
    else:
        name, sep, port = v.partition(":")
        if sep and not _PORT.fullmatch(port):
            return None
    name = name.rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name or None


class HostCheck:
    """Pure ASGI middleware: a request whose ``Host`` header is missing, repeated, malformed or
    not in ``allowed`` gets 400 ``{"error": "invalid_host", "message"}`` and the connection is
    closed; the app never sees it. ``allowed``: names or addresses (any port accepted), or
    ``"*"`` for any Host (no check)."""

    def __init__(self, app, allowed: Iterable[str]):
        entries = [e.strip() for e in (allowed.split(",") if isinstance(allowed, str) else allowed)]
        self.app = app
        self.any = "*" in entries
        self.names = frozenset(n for e in entries if e and e != "*" and (n := host_name(e)) is not None)

    async def __call__(self, scope, receive, send):
        if self.any or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        values = [v for k, v in scope.get("headers") or () if k == b"host"]
        raw = values[0].decode("latin-1") if len(values) == 1 else None
        if raw is not None and host_name(raw) in self.names:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # refused before the handshake: the server answers 403
            return await send({"type": "websocket.close", "code": 1008})
        if raw is None:
            message = "the request needs exactly one Host header"
        else:
            message = f"Host {raw[:100]!r} is not allowed on this server (TAGGER_ALLOWED_HOSTS)"
        body = json.dumps({"error": "invalid_host", "message": message}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
