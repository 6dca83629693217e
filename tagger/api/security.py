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
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import sys
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

__all__ = ["require_read", "require_write", "require_json", "same_origin_or_none", "is_loopback", "bound_hosts",
           "listening_hosts", "anonymous_writes_allowed"]


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

