"""Response headers every page carries, and a cap on request body size."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
ADMIN_MAX_BODY_BYTES = 2 * 1024 * 1024  # a statement of 100,000 characters, URL-encoded

# Nothing is loaded from another site: a signer's browser talks to this one only
# (no fonts, scripts, images or analytics elsewhere; tests/test_safe_to_reach.py).
_BASE_CSP = (
    "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def _frameable(path: str) -> bool:
    """Only the embed pages are made to sit in other sites' iframes."""
    return path.startswith("/p/") and path.endswith("/embed")


# Under https, browsers are told to use nothing else for a year (not for subdomains:
# those may be other sites of the same organisation).
HSTS = b"max-age=31536000"


def security_headers(frameable: bool, hsts: bool) -> tuple[tuple[bytes, bytes], ...]:
    """What `SecurityHeaders` adds to an answer (a header the answer sets itself wins)."""
    ancestors = "; frame-ancestors *" if frameable else "; frame-ancestors 'none'"
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"content-security-policy", (_BASE_CSP + ancestors).encode()),
    ]
    if not frameable:
        headers.append((b"x-frame-options", b"DENY"))
    if hsts:
        headers.append((b"strict-transport-security", HSTS))
    return tuple(headers)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts
        # Built once: they depend only on whether the page may be framed.
        self.framed = security_headers(frameable=True, hsts=hsts)
        self.unframed = security_headers(frameable=False, hsts=hsts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.framed if _frameable(scope["path"]) else self.unframed

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                present = {name.lower() for name, _ in own}
                message["headers"] = [*own, *(h for h in headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuse request bodies over a limit with 413, before any handler reads them."""

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, larger: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path prefix -> its own limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = next(
            (n for prefix, n in self.larger.items() if scope["path"].startswith(prefix)),
            self.max_bytes,
        )
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > max_bytes:
                    await _too_large(send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await _too_large(send)


class BodyTooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = b"Request body too large.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode())],
        }
    )  # fmt: skip
    await send({"type": "http.response.body", "body": body})
