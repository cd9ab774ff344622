"""Live and cacheable views for other sites: count.json, the SSE stream, the badge."""

from __future__ import annotations

import random
from xml.sax.saxutils import escape

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..counters import CountSnapshot
from ..db_errors import DATABASE_CANNOT_SAVE, DATABASE_UNAVAILABLE
from ..event_stream import EventStreamResponse
from ..events import BEHIND, TooManySubscribers
from ..i18n import DEFAULT_LANGUAGE, _, interface_language
from ..i18n import language as use
from ..numbers import format_number
from .base import CORS, cached_response, petition_snapshot

KEEPALIVE_SECONDS = 15.0
COUNT_MAX_AGE = 10  # seconds
STREAM_RETRY = b"retry: 5000\n\n"  # the browser reconnects after this many ms
KEEPALIVE = b": keep-alive\n\n"
# A client that fell behind is told to reconnect after a second or a few (spread out,
# in case many fell behind at once), resuming after the last event id it may have
# been given: an `id:` field without data sets the browser's Last-Event-ID and
# dispatches nothing. It then resyncs as any reconnecting client does: the replay
# (which also covers the few seconds before that id), then the count.
RESYNC_RETRY_MS = (1000, 5000)
# A process that shuts down ends its streams and asks clients to come back after
# half a second to three (spread, so its clients do not all return at once).
SHUTDOWN_RETRY_MS = (500, 3000)
# A client that opens its stream while the database cannot be read (it is restarting)
# is told to come back after a few seconds.
DATABASE_RETRY_MS = (2000, 6000)
BUSY_RETRY_AFTER = "30"  # seconds, when the process has MAX_SUBSCRIBERS clients
DATABASE_TROUBLE = DATABASE_UNAVAILABLE + DATABASE_CANNOT_SAVE
STREAM_HEADERS = {**CORS, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def count_json(request: Request) -> Response:
    # A count this process holds is answered before the app by counter_fast_path.py;
    # here come the others (loaded now) and the petitions there are none of.
    snapshot = await petition_snapshot(request)
    return cached_response(request, snapshot.body, snapshot.etag, "application/json", COUNT_MAX_AGE)


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
        given_through = live.high_water  # every event it is sent is at most this id
    except TooManySubscribers:
        raise HTTPException(
            503,
            _("Too many live connections; the page still works without."),
            headers={"Retry-After": BUSY_RETRY_AFTER},
        ) from None

    async def stream():
        # Bytes from the hub are shared by every client of the petition (events.py).
        nonlocal given_through
        try:
            opening = [STREAM_RETRY]
            try:
                if last_id is not None:
                    replayed = await live.replay(snapshot.petition.id, int(last_id))
                    opening += [event.encode().encode() for event in replayed]
                current = await live.counts.by_id(snapshot.petition.id)
            except DATABASE_TROUBLE:  # the headers are sent: no 503 now; come back later
                yield database_notice(last_id)
                return
            opening.append(live.count_event(current or snapshot))
            yield b"".join(opening)
            while True:
                if not await sub.wait(KEEPALIVE_SECONDS):
                    yield KEEPALIVE
                elif sub.pending:
                    given_through = live.high_water
                    yield sub.take()  # all that waits, in one write
                elif sub.state == BEHIND:
                    yield resync_notice(given_through)
                    return
                else:  # closed: the client left, or the process is stopping
                    if live.draining:
                        yield shutdown_notice(given_through)
                    return
        finally:
            live.unsubscribe(sub)

    return EventStreamResponse(stream(), on_gone=sub.close, headers=STREAM_HEADERS)


def shutdown_notice(given_through: int) -> bytes:
    """The end of every stream of a process that is shutting down: reconnect soon (to
    another process, or this one restarted), resuming after the last event id sent."""
    retry = random.randint(*SHUTDOWN_RETRY_MS)
    return b"id: %d\nretry: %d\n: server restarting, reconnect\n\n" % (given_through, retry)


def database_notice(last_id: str | None) -> bytes:
    """The whole stream of a client that came while the database could not be read: it
    reconnects in a few seconds, still resuming after the id it came with."""
    retry = random.randint(*DATABASE_RETRY_MS)
    resume = b"id: %s\n" % last_id.encode() if last_id is not None else b""
    return resume + b"retry: %d\n: database unavailable, reconnect\n\n" % retry


def resync_notice(given_through: int) -> bytes:
    """The end of the stream of a client that fell behind (see RESYNC_RETRY_MS)."""
    retry = random.randint(*RESYNC_RETRY_MS)
    return b"id: %d\nretry: %d\n: resync\n\n" % (given_through, retry)
