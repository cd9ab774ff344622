"""At most so many requests at once in one process, event streams apart.

uvicorn's `limit_concurrency` counts every open connection, and an event stream
holds its connection for as long as its page is open: with the limit at 1,000, a
thousand open petition pages would leave no room for anyone else's request. So
`petitions serve` gives uvicorn room for the streams as well (`--max-connections`
plus events.MAX_SUBSCRIBERS, which the live hub enforces with its own 503), and this
middleware holds every other request to `--max-connections` at once, as before.
"""

from __future__ import annotations

import os

LIMIT_VARIABLE = "PETITIONS_MAX_REQUESTS"  # set by `petitions serve` (serving.py)
DEFAULT_LIMIT = 1000
RETRY_AFTER = "5"

_BUSY = b"Busy: too many requests at once. Please try again in a few seconds.\n"
_BUSY_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(_BUSY)).encode()),
    (b"retry-after", RETRY_AFTER.encode()),
    (b"cache-control", b"no-store"),
    (b"connection", b"close"),
]


def is_event_stream(path: str) -> bool:
    return path.startswith("/p/") and path.endswith("/events")


class RequestsInFlight:
    """Answers 503 with Retry-After to a request (not an event stream) beyond `limit`
    in flight in this process."""

    def __init__(self, app, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit or int(os.environ.get(LIMIT_VARIABLE, DEFAULT_LIMIT))
        self.active = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or is_event_stream(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await send({"type": "http.response.start", "status": 503, "headers": _BUSY_HEADERS})
            await send({"type": "http.response.body", "body": _BUSY})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
