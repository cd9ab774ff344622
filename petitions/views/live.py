"""Live and cacheable views for other sites: count.json, the SSE stream, the badge."""

from __future__ import annotations

import asyncio
from xml.sax.saxutils import escape

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..counters import CountSnapshot
from ..events import CLOSE, LiveEvent, TooManySubscribers
from ..i18n import DEFAULT_LANGUAGE, _, interface_language
from ..i18n import language as use
from ..numbers import format_number
from .base import CORS, cached_response, petition_snapshot

KEEPALIVE_SECONDS = 15.0
COUNT_MAX_AGE = 10  # seconds


async def count_json(request: Request) -> Response:
    # A count this process holds is answered before the app by counter_fast_path.py;
    # here come the others (loaded now) and the petitions there are none of.
    snapshot = await petition_snapshot(request)
    return cached_response(
        request, snapshot.body, snapshot.etag, "application/json", COUNT_MAX_AGE
    )


async def badge_svg(request: Request) -> Response:
    # Badges sit on other sites' pages, cached by everyone: English unless `?lang=` asks.
    language = interface_language(request.query_params.get("lang")) or DEFAULT_LANGUAGE
    snapshot = await petition_snapshot(request)
    with use(language):
        body = badge(snapshot).encode()
    return cached_response(
        request, body, f'{snapshot.etag[:-1]}-svg-{language}"', "image/svg+xml", 60
    )


def badge(snapshot: CountSnapshot) -> str:
    """A flat two-part badge: "signatures" | "1,234 of 5,000", in the current language."""
    count = format_number(snapshot.counts.total)
    goal = snapshot.petition.goal
    value = _("%(count)s of %(goal)s", count=count, goal=format_number(goal)) if goal else count
    # Translators: the label of the counter badge, before the number.
    label = escape(_("signatures"))
    left = 10 + 7 * len(label)
    right = 10 + 7 * len(value)
    width = left + right
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {escape(value)}"><title>{label}: {escape(value)}</title>'
        f'<rect width="{left}" height="20" rx="3" fill="#1d1d1f"/>'
        f'<rect x="{left}" width="{right}" height="20" rx="3" fill="#b3261e"/>'
        f'<rect x="{left}" width="4" height="20" fill="#b3261e"/>'
        f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" '
        f'text-anchor="middle">'
        f'<text x="{left / 2}" y="14">{label}</text>'
        f'<text x="{left + right / 2}" y="14">{escape(value)}</text></g></svg>'
    )


async def events(request: Request) -> Response:
    """Server-Sent Events: `signature` and `count` events for one petition."""
    snapshot = await petition_snapshot(request)
    live = request.app.state.live
    last_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if last_id is not None and (not last_id.isdigit() or len(last_id) > 18):
        raise HTTPException(400, _("Last-Event-ID must be an event id from this stream."))
    try:
        sub = live.subscribe(snapshot.petition.id)  # before the replay, so nothing slips between
    except TooManySubscribers:
        raise HTTPException(
            503, _("Too many live connections; the page still works without.")
        ) from None

    async def stream():
        try:
            yield "retry: 5000\n\n"
            if last_id is not None:
                for event in await live.replay(snapshot.petition.id, int(last_id)):
                    yield event.encode()
            current = await live.counts.by_id(snapshot.petition.id)
            yield LiveEvent("count", (current or snapshot).payload).encode()
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is CLOSE:
                    return
                yield event.encode()
        finally:
            live.unsubscribe(sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={**CORS, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
