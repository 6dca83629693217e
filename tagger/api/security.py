"""Who may call what: API keys for writes (and optionally reads), and cross-site refusal.

* Writes (``POST /v1/documents?store=true`` and any later write) need
  ``Authorization: Bearer <key>`` with a key from ``TAGGER_API_KEYS`` (comma-separated,
  compared in constant time). With no key configured, writes are refused unless the
  server binds to a loopback address *and* ``TAGGER_ALLOW_ANONYMOUS_WRITES=1``.
* Reads are open unless ``TAGGER_REQUIRE_KEY_FOR_READS=1``.
* A browser can send a form or ``text/plain`` POST to any site without a preflight, so
  JSON endpoints take only ``application/json`` and a request whose ``Origin`` is not the
  server's own is refused: that closes cross-site writes even for anonymous loopback use.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

__all__ = ["require_read", "require_write", "require_json", "same_origin_or_none", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    if st.allow_anonymous_writes and is_loopback(st.host):
        return
    raise HTTPException(
        status_code=403,
        detail="writes are disabled: set TAGGER_API_KEYS (or, on a loopback-only server, TAGGER_ALLOW_ANONYMOUS_WRITES=1)",
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

