"""`GET /p/{slug}/count.json` answered from memory, in front of the rest of the app.

Embeds on busy sites ask for a count on every page view. A count this process already
holds needs none of what the app does for a page: no language, no session, no router,
no request object, no exception handling. `CountFastPath` sits just inside `SiteOrigin`
(so the Host check and BASE_URL still apply) and answers such a request with the very
headers and bytes the route (`views.live.count_json`) would send, prepared once per
count; the security headers are `SecurityHeaders`' own, and the request is counted in
the metrics under its route like any other.

Everything else goes on to the app unchanged: other paths and methods, a request that
announces a body (`BodySizeLimit` judges it), a petition this process does not hold
(the route loads it, or answers 404 in the visitor's language), a draft.
"""

from __future__ import annotations

from time import perf_counter

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .counters import CountSnapshot
from .metrics import Metrics
from .security import security_headers
from .views.base import cache_headers
from .views.live import COUNT_MAX_AGE

ROUTE = "/p/{slug}/count.json"
PREFIX, SUFFIX = "/p/", "/count.json"
BODY_HEADERS = (b"content-length", b"transfer-encoding")

Headers = list[tuple[bytes, bytes]]


class CountFastPath:
    def __init__(self, app: ASGIApp, metrics: Metrics, hsts: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.security = list(security_headers(frameable=False, hsts=hsts))
        # petition id -> the snapshot the headers were made for, 200's headers, 304's
        self.prepared: dict[int, tuple[CountSnapshot, Headers, Headers]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if (
            not path.endswith(SUFFIX)
            or not path.startswith(PREFIX)
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        # A slug has no "/": "/p/a/b/count.json" finds none and goes on to a 404.
        snapshot = scope["app"].state.live.counts.cached(path[len(PREFIX) : -len(SUFFIX)])
        if snapshot is None or not snapshot.petition.is_public:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name in BODY_HEADERS:
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
        started = perf_counter()
        _, full, not_modified = self._prepare(snapshot)
        status = 500
        try:
            if if_none_match is not None and snapshot.etag in if_none_match:
                status = 304
                await send({"type": "http.response.start", "status": 304,
                            "headers": list(not_modified)})  # fmt: skip
                await send({"type": "http.response.body", "body": b""})
            else:
                status = 200
                await send({"type": "http.response.start", "status": 200,
                            "headers": list(full)})  # fmt: skip
                await send({"type": "http.response.body", "body": snapshot.body})
        finally:
            self.metrics.count_request(ROUTE, scope["method"], status, perf_counter() - started)

    def _prepare(self, snapshot: CountSnapshot) -> tuple[CountSnapshot, Headers, Headers]:
        prepared = self.prepared.get(snapshot.petition.id)
        if prepared is not None and prepared[0] is snapshot:
            return prepared
        # Built by Starlette as the route builds them, so the headers are the same.
        headers = cache_headers(snapshot.etag, COUNT_MAX_AGE)
        full = Response(snapshot.body, media_type="application/json", headers=headers)
        not_modified = Response(status_code=304, headers=headers)
        prepared = (
            snapshot,
            full.raw_headers + self.security,
            not_modified.raw_headers + self.security,
        )
        self.prepared[snapshot.petition.id] = prepared
        return prepared
