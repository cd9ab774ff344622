"""Live events: one LISTEN connection per process, fanned out to Server-Sent-Events clients.

Triggers (migrations/0002_events.sql) write a `petition_events` row whenever a
signature enters or leaves the count, and notify the channel `petition_events`
with the petition and the range of event ids. Each process listens on one
dedicated connection (reconnecting by itself after the database restarts),
fetches the new events once, refreshes its in-memory counts, and hands both to
the clients subscribed to that petition.

Each pass encodes a petition's events once, into one bytes object handed to every
subscriber of that petition (a reference in each one's bounded list). A client
that lets QUEUE_SIZE of them pile up — it stopped reading — is dropped from the
fan-out, its backlog freed, and told to resync (views/live.py): it reconnects and
is sent the events after the last id it was given, then the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass

from databases import Database

from .counters import CountCache, CountSnapshot
from .db import asyncpg_dsn, listen_forever, raw_connection
from .db_errors import database_trouble
from .disclosure import public_breakdown
from .settings import DEFAULT_PUBLIC_MIN_GROUP
from .signatories import public_entry

log = logging.getLogger(__name__)

CHANNEL = "petition_events"
RECONCILE_SECONDS = 30.0
PROCESS_RETRY_SECONDS = 1.0  # after the database failed a processing pass
EVENT_RETENTION = "2 days"
REPLAY_LIMIT = 500
# Chunks waiting per client. A chunk is everything one processing pass has for a
# petition (passes are at least 20 ms apart), and a client takes all that waits in
# one write whenever it runs: only a client that has not taken anything for several
# seconds (it stopped reading, its TCP window is full) ever has this many.
QUEUE_SIZE = 256
# Event-stream clients per process; beyond, GET /p/{slug}/events answers 503
# (docs/operations.md, "Live events"; the measurement: docs/benchmarks.md, "Live fan-out").
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


OPEN, BEHIND, CLOSED = "open", "behind", "closed"


class Subscription:
    """One event-stream client of this process and the chunks waiting for it.

    Chunks are the hub's bytes, one object per pass and petition handed to every
    subscriber alike: a client costs a reference per chunk, never an encoding."""

    __slots__ = ("petition_id", "pending", "state", "_waiter")

    def __init__(self, petition_id: int) -> None:
        self.petition_id = petition_id
        self.pending: list[bytes] = []  # taken all at once; a deque costs 600 bytes more
        self.state = OPEN  # BEHIND: dropped from the fan-out, to be told to resync
        self._waiter: asyncio.Future | None = None

    def offer(self, chunk: bytes) -> bool:
        """Queue `chunk`; False, queuing nothing, when QUEUE_SIZE chunks already wait."""
        if len(self.pending) >= QUEUE_SIZE:
            return False
        self.pending.append(chunk)
        self._wake()
        return True

    def fall_behind(self) -> None:
        """What waits is thrown away: the client resyncs from the database instead."""
        self.pending.clear()
        self.state = BEHIND
        self._wake()

    def close(self) -> None:
        self.state = CLOSED
        self._wake()

    def take(self) -> bytes:
        """Everything waiting, as one chunk (the shared object itself when it is one)."""
        if len(self.pending) == 1:
            return self.pending.pop()
        chunk = b"".join(self.pending)
        self.pending.clear()
        return chunk

    async def wait(self, seconds: float) -> bool:
        """Until a chunk waits or the state changes: True; False after `seconds` without."""
        if not self.pending and self.state == OPEN:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(seconds, _resolve, self._waiter)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        return bool(self.pending) or self.state != OPEN

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class TooManySubscribers(Exception):
    pass


Outgoing = dict[int, list[bytes]]  # one pass's encoded events, by petition


_EVENTS_SQL = """
SELECT e.id AS event_id, e.petition_id, e.event, s.public_id, s.kind, s.display, s.name,
       s.city, s.occupation, s.organisation, s.organisation_type, s.members, s.website,
       s.comment, s.country, s.verified_at, s.initials
  FROM petition_events e
  JOIN signatures s ON s.petition_id = e.petition_id AND s.id = e.signature_id
"""


# Events at or below an id, committed up to a few seconds before it (the catch-up's),
# the latest first.
_LATE_EVENTS_SQL = (
    _EVENTS_SQL
    + """ WHERE e.petition_id = ANY($1::bigint[]) AND e.id <= $2
            AND e.created_at > (SELECT created_at - interval '5 seconds'
                                  FROM petition_events
                                 WHERE petition_id = ANY($1::bigint[]) AND id <= $2
                                 ORDER BY id DESC LIMIT 1)
          ORDER BY e.id DESC LIMIT 5000"""
)


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
        self.fell_behind = 0  # clients dropped from the fan-out, told to resync
        self._subscribers: dict[int, set[Subscription]] = {}
        self._subscriber_count = 0
        self._count_events: dict[int, tuple[CountSnapshot, bytes]] = {}
        self._pending_ranges: list[tuple[int, int, int]] = []
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._published: deque[int] = deque(maxlen=20_000)
        self._published_set: set[int] = set()
        self._high_water = 0  # the highest event id handed to subscribers
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self.draining = False  # shutting down: streams end (drain)

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
                sub.close()

    def drain(self) -> None:
        """The process is shutting down: every stream ends now (views/live.py then
        tells its client to reconnect, to another process), and any new one at once.
        Called once per open connection: the first call does it all."""
        if self.draining:
            return
        self.draining = True
        for subs in self._subscribers.values():
            for sub in subs:
                sub.close()

    # Subscribers ------------------------------------------------------------------

    def subscribe(self, petition_id: int) -> Subscription:
        if self._subscriber_count >= MAX_SUBSCRIBERS:
            raise TooManySubscribers
        sub = Subscription(petition_id)
        if self.draining:
            sub.close()
        self._subscribers.setdefault(petition_id, set()).add(sub)
        self._subscriber_count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.petition_id)
        if subs is not None and sub in subs:
            subs.remove(sub)
            self._subscriber_count -= 1
            if not subs:
                del self._subscribers[sub.petition_id]
                self._count_events.pop(sub.petition_id, None)

    @property
    def subscriber_count(self) -> int:
        return self._subscriber_count

    @property
    def high_water(self) -> int:
        """The highest event id handed to subscribers: every chunk offered so far is of
        events up to it (a point a client that fell behind can resync from)."""
        return self._high_water

    def count_event(self, snapshot: CountSnapshot) -> bytes:
        """The `count` event of `snapshot`, encoded once: a snapshot is replaced when
        the counts change, never changed, so its event is too."""
        cached = self._count_events.get(snapshot.petition.id)
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, LiveEvent("count", snapshot.payload).encode().encode())
            self._count_events[snapshot.petition.id] = cached
        return cached[1]

    async def replay(self, petition_id: int, after_id: int) -> list[LiveEvent]:
        """Events a reconnecting client missed (at least once: ids are assigned before
        commit, so a few seconds before `after_id` are sent again; clients drop repeats).
        Of more than REPLAY_LIMIT, the latest: what a live list shows."""
        async with raw_connection(self.db) as conn:
            rows = await conn.fetch(
                _EVENTS_SQL
                # The time of this petition's own event at `after_id` (or the last
                # before it: a resync's id may be another petition's), so that every
                # query here names the petition (docs/scaling.md).
                + """ WHERE e.petition_id = $1
                        AND (e.id > $2 OR e.created_at > (
                             SELECT created_at - interval '5 seconds'
                               FROM petition_events
                              WHERE petition_id = $1 AND id <= $2
                              ORDER BY id DESC LIMIT 1))
                      ORDER BY e.id DESC LIMIT $3""",
                petition_id,
                after_id,
                REPLAY_LIMIT,
            )
        countries = await self.named_countries(petition_id)
        events = (signature_event(row, countries) for row in reversed(rows))
        return [event for event in events if event is not None]

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
                # As replay does, also the few seconds before the last id handed out:
                # ids are taken before commit, and a transaction that committed just as
                # the connection broke may hold lower ids than one already sent (those
                # sent are not sent again: _encode_rows skips them). Apart, so that
                # they never crowd out the new ones.
                late = await conn.fetch(_LATE_EVENTS_SQL, petition_ids, self._high_water)
                rows = await conn.fetch(
                    _EVENTS_SQL + " WHERE e.petition_id = ANY($1::bigint[]) AND e.id > $2 "
                    "ORDER BY e.id LIMIT 5000",
                    petition_ids,
                    self._high_water,
                )
                rows = [*reversed(late), *rows]
        await self.counts.reconcile()  # first: events name countries by these counts
        outgoing: Outgoing = {}
        await self._encode_rows(rows, outgoing)
        for petition_id in list(self._subscribers):
            await self._encode_count(petition_id, outgoing)
        self._send(outgoing)

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
            except Exception as error:
                if not database_trouble(error):
                    log.exception(
                        "could not process live events; the next reconcile repairs counts"
                    )
                    continue
                # The database is restarting: this pass again in a moment (events already
                # sent are not sent twice), unless the listener's catch-up does it first.
                log.warning("could not process live events (%r); trying again", error)
                self._pending_ranges[:0] = ranges
                self._dirty |= dirty
                await asyncio.sleep(PROCESS_RETRY_SECONDS)
                self._wake.set()

    async def _process(self, ranges: list[tuple[int, int, int]], dirty: set[int]) -> None:
        # Counts first: a signature event names a country by the counts that include it.
        cached = set(self.counts.cached_ids())
        await self.counts.refresh([pid for pid in dirty if pid in cached])
        outgoing: Outgoing = {}
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
            await self._encode_rows(rows, outgoing)
        for petition_id in dirty:
            if petition_id in self._subscribers:
                await self._encode_count(petition_id, outgoing)
        self._send(outgoing)

    async def _encode_rows(self, rows, outgoing: Outgoing) -> None:
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
                outgoing.setdefault(petition_id, []).append(event.encode().encode())

    async def _encode_count(self, petition_id: int, outgoing: Outgoing) -> None:
        snapshot = await self.counts.by_id(petition_id)
        if snapshot is not None:
            outgoing.setdefault(petition_id, []).append(self.count_event(snapshot))

    def _send(self, outgoing: Outgoing) -> None:
        """One chunk per petition, the same bytes object for each of its subscribers."""
        for petition_id, events in outgoing.items():
            chunk = b"".join(events)
            subs = self._subscribers.get(petition_id, ())
            behind = [sub for sub in subs if not sub.offer(chunk)]
            for sub in behind:
                # It has taken nothing for QUEUE_SIZE passes: out of the fan-out, its
                # backlog freed; it is told to reconnect, and resyncs from the database
                # (the replay after Last-Event-ID, then the current count).
                self.unsubscribe(sub)
                sub.fall_behind()
                self.fell_behind += 1

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
