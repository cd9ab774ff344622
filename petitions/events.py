"""Live events: one LISTEN connection per process, fanned out to Server-Sent-Events clients.

Triggers (migrations/0002_events.sql) write a `petition_events` row whenever a
signature enters or leaves the count, and notify the channel `petition_events`
with the petition and the range of event ids. Each process listens on one
dedicated connection (reconnecting by itself after the database restarts),
fetches the new events once, refreshes its in-memory counts, and hands both to
the clients subscribed to that petition.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field

from databases import Database

from .counters import CountCache
from .db import asyncpg_dsn, listen_forever, raw_connection
from .disclosure import public_breakdown
from .settings import DEFAULT_PUBLIC_MIN_GROUP
from .signatories import public_entry

log = logging.getLogger(__name__)

CHANNEL = "petition_events"
RECONCILE_SECONDS = 30.0
EVENT_RETENTION = "2 days"
REPLAY_LIMIT = 500
QUEUE_SIZE = 256
MAX_SUBSCRIBERS = 10_000


@dataclass(frozen=True)
class LiveEvent:
    """One message for SSE clients: `signature` (with an id) or `count`."""

    kind: str
    data: dict
    id: int | None = None

    def encode(self) -> str:
        lines = [f"id: {self.id}"] if self.id is not None else []
        lines += [f"event: {self.kind}", "data: " + json.dumps(self.data, separators=(",", ":"))]
        return "\n".join(lines) + "\n\n"


CLOSE = LiveEvent("close", {})


@dataclass(eq=False)
class Subscription:
    petition_id: int
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class TooManySubscribers(Exception):
    pass


_EVENTS_SQL = """
SELECT e.id AS event_id, e.petition_id, e.event, s.public_id, s.kind, s.display, s.name,
       s.city, s.occupation, s.organisation, s.organisation_type, s.members, s.website,
       s.comment, s.country, s.verified_at, s.initials
  FROM petition_events e JOIN signatures s ON s.id = e.signature_id
"""


def signature_event(row, countries: Container[str] = frozenset()) -> LiveEvent | None:
    """The public form of an event row; anonymous signers are counted, never shown.

    `countries`: those that may be named now (disclosure.public_breakdown)."""
    if row["display"] == "anonymous":
        return None
    if row["event"] == "counted":
        data = public_entry(row, countries)
    else:
        data = {"id": str(row["public_id"]), "removed": True}
    return LiveEvent("signature", data, row["event_id"])


class LiveHub:
    """Per process: the listener, the count cache and the subscribers."""

    def __init__(
        self,
        db: Database,
        database_url: str,
        min_group: Callable[[], int] = lambda: DEFAULT_PUBLIC_MIN_GROUP,
    ) -> None:
        self.db = db
        self.min_group = min_group  # PUBLIC_MIN_GROUP, read when an event goes out
        self.dsn = asyncpg_dsn(database_url)
        self.counts = CountCache(db)
        self.connected = asyncio.Event()
        self.connections = 0  # how often the listener has (re)connected
        self._subscribers: dict[int, set[Subscription]] = {}
        self._pending_ranges: list[tuple[int, int, int]] = []
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._published: deque[int] = deque(maxlen=20_000)
        self._published_set: set[int] = set()
        self._high_water = 0  # the highest event id handed to subscribers
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    # Lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._high_water = await self._latest_event_id()
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="events-listener"),
            asyncio.create_task(self._process_forever(), name="events-processor"),
            asyncio.create_task(self._reconcile_forever(), name="events-reconciler"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subs in self._subscribers.values():
            for sub in subs:
                _offer(sub, CLOSE)

    # Subscribers ------------------------------------------------------------------

    def subscribe(self, petition_id: int) -> Subscription:
        if self.subscriber_count >= MAX_SUBSCRIBERS:
            raise TooManySubscribers
        sub = Subscription(petition_id)
        self._subscribers.setdefault(petition_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.petition_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.petition_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    async def replay(self, petition_id: int, after_id: int) -> list[LiveEvent]:
        """Events a reconnecting client missed (at least once: ids are assigned before
        commit, so a few seconds before `after_id` are sent again; clients drop repeats)."""
        async with raw_connection(self.db) as conn:
            rows = await conn.fetch(
                _EVENTS_SQL
                + """ WHERE e.petition_id = $1
                        AND (e.id > $2 OR e.created_at > (
                             SELECT created_at - interval '5 seconds'
                               FROM petition_events WHERE id = $2))
                      ORDER BY e.id LIMIT $3""",
                petition_id,
                after_id,
                REPLAY_LIMIT,
            )
        countries = await self.named_countries(petition_id)
        return [event for row in rows if (event := signature_event(row, countries)) is not None]

    async def named_countries(self, petition_id: int) -> frozenset[str]:
        """The countries the public may see named in this petition's events, from the
        counts in memory (the same decision as its pages and list make)."""
        snapshot = await self.counts.by_id(petition_id)
        if snapshot is None:
            return frozenset()
        return public_breakdown(snapshot.counts, self.min_group()).named

    # Listening ------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        async def connected() -> None:
            await self._catch_up()
            self.connections += 1
            self.connected.set()

        await listen_forever(
            self.dsn,
            CHANNEL,
            on_notify=self._on_notify,
            on_connected=connected,
            on_lost=self.connected.clear,
            application_name="petitions live events",
        )

    def _on_notify(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            petition_id = int(message["petition"])
        except (ValueError, KeyError, TypeError):
            return
        if "first" in message:
            self._pending_ranges.append((petition_id, int(message["first"]), int(message["last"])))
        elif "changed" in message:
            self.counts.forget(petition_id)  # the petition itself changed
        self._dirty.add(petition_id)
        self._wake.set()

    async def _catch_up(self) -> None:
        """After (re)connecting: what happened while nobody was listening."""
        petition_ids = list(self._subscribers)
        rows = []
        if petition_ids:
            async with raw_connection(self.db) as conn:
                rows = await conn.fetch(
                    _EVENTS_SQL + " WHERE e.petition_id = ANY($1::bigint[]) AND e.id > $2 "
                    "ORDER BY e.id LIMIT 5000",
                    petition_ids,
                    self._high_water,
                )
        await self.counts.reconcile()  # first: events name countries by these counts
        await self._publish_rows(rows)
        for petition_id in self._subscribers:
            await self._publish_count(petition_id)

    # Processing -------------------------------------------------------------------

    async def _process_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0.02)  # gather a burst of notifications into one pass
            self._wake.clear()
            ranges, self._pending_ranges = self._pending_ranges, []
            dirty, self._dirty = self._dirty, set()
            try:
                await self._process(ranges, dirty)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not process live events; the next reconcile repairs counts")

    async def _process(self, ranges: list[tuple[int, int, int]], dirty: set[int]) -> None:
        # Counts first: a signature event names a country by the counts that include it.
        cached = set(self.counts.cached_ids())
        await self.counts.refresh([pid for pid in dirty if pid in cached])
        wanted = [r for r in ranges if r[0] in self._subscribers]
        if wanted:
            async with raw_connection(self.db) as conn:
                rows = await conn.fetch(
                    _EVENTS_SQL
                    + """ JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(p, a, b)
                            ON e.petition_id = r.p AND e.id BETWEEN r.a AND r.b
                          ORDER BY e.id""",
                    [r[0] for r in wanted],
                    [r[1] for r in wanted],
                    [r[2] for r in wanted],
                )
            await self._publish_rows(rows)
        for petition_id in dirty:
            if petition_id in self._subscribers:
                await self._publish_count(petition_id)

    async def _publish_rows(self, rows) -> None:
        named: dict[int, frozenset[str]] = {}
        for row in rows:
            event_id = row["event_id"]
            self._high_water = max(self._high_water, event_id)
            if event_id in self._published_set:
                continue
            if len(self._published) == self._published.maxlen:
                self._published_set.discard(self._published[0])
            self._published.append(event_id)
            self._published_set.add(event_id)
            petition_id = row["petition_id"]
            if petition_id not in named:
                named[petition_id] = await self.named_countries(petition_id)
            event = signature_event(row, named[petition_id])
            if event is not None:
                self._send(row["petition_id"], event)

    async def _publish_count(self, petition_id: int) -> None:
        snapshot = await self.counts.by_id(petition_id)
        if snapshot is not None:
            self._send(petition_id, LiveEvent("count", snapshot.payload))

    def _send(self, petition_id: int, event: LiveEvent) -> None:
        for sub in list(self._subscribers.get(petition_id, ())):
            if not _offer(sub, event):
                # A client that cannot keep up is let go; it reconnects with
                # Last-Event-ID and is replayed what it missed.
                self.unsubscribe(sub)
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(CLOSE)

    # Reconciling ------------------------------------------------------------------

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            try:
                await self.counts.reconcile()
                async with raw_connection(self.db) as conn:
                    await conn.execute(
                        f"DELETE FROM petition_events WHERE created_at < now() - interval '{EVENT_RETENTION}'"
                    )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("count reconciliation failed (%s); trying again later", error)

    async def _latest_event_id(self) -> int:
        async with raw_connection(self.db) as conn:
            return await conn.fetchval("SELECT coalesce(max(id), 0) FROM petition_events")


def _offer(sub: Subscription, event: LiveEvent) -> bool:
    try:
        sub.queue.put_nowait(event)
        return True
    except asyncio.QueueFull:
        return False
