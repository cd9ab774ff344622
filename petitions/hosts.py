"""Which host names this site answers to, and the one origin every absolute URL uses.

A request's `Host` header is the client's word. Left alone, Starlette builds every
`url_for`, `request.url` and redirect from it, so `Host: evil.example` would put the
attacker's host into form actions, links and (through the page cache) into other
visitors' pages. `SiteOrigin` therefore refuses hosts outside `ALLOWED_HOSTS` with 400,
and rewrites the scheme and host of every request it lets through to those of
`BASE_URL`: after it, nothing in the app can build an address from the header
(`X-Forwarded-Host` and `Forwarded` are never read at all).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Answered whatever the Host: they build no address and are what load balancers and
# scrapers call by IP (/metrics has its own network-or-token guard, metrics.py).
ANY_HOST_PATHS = ("/healthz", "/metrics")
REFUSAL = b"This site does not answer to that host name.\n"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(base_url: str) -> str:
    return (urlsplit(base_url).hostname or "").lower()


@lru_cache(maxsize=32)
def allowed_host_patterns(base_url: str, allowed_hosts: tuple[str, ...] | None) -> tuple[str, ...]:
    """`ALLOWED_HOSTS` as set; unset, the host of `BASE_URL`, plus the loopback names
    when that host is a loopback one (a laptop reached as localhost or 127.0.0.1)."""
    if allowed_hosts is not None:
        return tuple(p.lower() for p in allowed_hosts)
    own = host_of(base_url)
    return (own, *LOOPBACK_NAMES) if _is_loopback(own) else (own,)


def request_host(header: str) -> str | None:
    """The host name of a Host header (lower case, port and IPv6 brackets removed),
    or None when it is no host name at all."""
    header = header.strip().lower()
    if not header or any(c in header for c in "/\\@?#% \t"):
        return None
    try:
        host = urlsplit("//" + header).hostname
    except ValueError:
        return None
    return host or None


def host_allowed(host: str | None, patterns: tuple[str, ...]) -> bool:
    """`*` allows any host, `*.example.org` any name under example.org (not
    example.org itself: list it too), anything else that exact name."""
    if host is None:
        return False
    for pattern in patterns:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


@lru_cache(maxsize=1024)
def header_allowed(header: bytes, base_url: str, allowed_hosts: tuple[str, ...] | None) -> bool:
    """Whether a Host header's value names an allowed host (the same few values come
    on every request: remembered, within bounds)."""
    patterns = allowed_host_patterns(base_url, allowed_hosts)
    return host_allowed(request_host(header.decode("latin-1")), patterns)


@lru_cache(maxsize=32)
def origin_of(base_url: str) -> tuple[str, tuple[bytes, bytes]]:
    """BASE_URL's scheme, and the Host header that names it."""
    base = urlsplit(base_url)
    return base.scheme, (b"host", base.netloc.encode("ascii"))


class SiteOrigin:
    """Refuse unknown hosts; make BASE_URL the request's origin for everything inside."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Read per request: tests and `serve` may replace the settings after start.
        settings = scope["app"].state.settings
        header = next((v for k, v in scope["headers"] if k == b"host"), b"")
        if (
            not header_allowed(header, settings.base_url, settings.allowed_hosts)
            and scope["path"] not in ANY_HOST_PATHS
        ):
            await _refuse(send)
            return
        scheme, host = origin_of(settings.base_url)
        scope = dict(scope)
        scope["scheme"] = scheme
        scope["headers"] = [host, *(h for h in scope["headers"] if h[0] != b"host")]
        await self.app(scope, receive, send)


async def _refuse(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(REFUSAL)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": REFUSAL})
