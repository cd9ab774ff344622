"""A few seconds of memory for the busiest pages.

When a statement goes viral, thousands of people open the same petition page
and embed within seconds. Rendering it once per process every two seconds
instead of once per visitor keeps the app fast; what changes in between (the
count, the newest signatories) arrives through the live event stream anyway.
Nothing personal is on these pages; the sign forms' tokens (bound to the
petition, not to a visitor) are renewed in each copy served, since each token
carries a bounded number of submissions. A page is kept per language (locales.page_variant).

The key is the path, the query and what decides the language, nothing else: a page
must never depend on another request header, or one visitor's header would be served
to the next. The host is not in it because nothing in a page comes from the `Host`
header: hosts.SiteOrigin makes every absolute address BASE_URL's (tests/test_hosts.py).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from .locales import page_variant
from .read_your_writes import COOKIE as JUST_WROTE

MAX_KEY_LENGTH = 300


class PageCache:
    """Pages by URL for `seconds`; while one request renders an expired page afresh,
    the others are served the previous copy (so a crowd never renders it at once)."""

    def __init__(self, seconds: float = 2.0, size: int = 512) -> None:
        self.seconds = seconds
        self.size = size
        self._pages: OrderedDict[str, tuple[float, bytes, str]] = OrderedDict()
        self.rendering: set[str] = set()

    def get(self, key: str) -> tuple[bytes, str, bool] | None:
        """(body, media type, still fresh) or None."""
        item = self._pages.get(key)
        if item is None:
            return None
        expires, body, media_type = item
        return body, media_type, expires >= time.monotonic()

    def put(self, key: str, body: bytes, media_type: str) -> None:
        self._pages[key] = (time.monotonic() + self.seconds, body, media_type)
        self._pages.move_to_end(key)
        while len(self._pages) > self.size:
            self._pages.popitem(last=False)


class RecentObjects:
    """Values by key for as long as the page cache keeps pages (its `seconds`, so tests
    that turn the page cache off see the present here too): what several requests a
    second would otherwise each read from the database, such as the petition a sign
    form posts to."""

    def __init__(self, pages: PageCache, size: int = 256) -> None:
        self.pages = pages
        self.size = size
        self._values: OrderedDict[object, tuple[float, object]] = OrderedDict()

    def get(self, key):
        item = self._values.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key, value) -> None:
        if self.pages.seconds <= 0:
            return
        self._values[key] = (time.monotonic() + self.pages.seconds, value)
        self._values.move_to_end(key)
        while len(self._values) > self.size:
            self._values.popitem(last=False)


def cached_page(handler: Callable[[Request], Awaitable[Response]]):
    """Serve a successful GET from the app's PageCache for a moment."""

    @functools.wraps(handler)
    async def serve(request: Request) -> Response:
        cache: PageCache = request.app.state.page_cache
        # The same address is a different page in another language: the key holds what
        # decides the language beside the URL (the browser's Accept-Language).
        variant = page_variant(
            request.query_params.get("lang"), request.headers.get("accept-language")
        )
        key = request.url.path + "?" + request.url.query + "#" + variant
        if request.method != "GET" or len(key) > MAX_KEY_LENGTH:
            return await handler(request)
        if request.app.state.replicas is not None and JUST_WROTE in request.cookies:
            return await handler(request)  # a copy from before their change would hide it
        hit = cache.get(key)
        if hit is not None:
            body, media_type, fresh = hit
            if fresh or key in cache.rendering:
                # Each visitor's sign forms get tokens of their own (their uses are bounded).
                body = request.app.state.tokens.renew_form_tokens(body)
                return Response(body, media_type=media_type)
        cache.rendering.add(key)
        try:
            response = await handler(request)
        finally:
            cache.rendering.discard(key)
        if response.status_code == 200 and hasattr(response, "body"):
            cache.put(key, response.body, response.media_type or "text/html")
        return response

    return serve
