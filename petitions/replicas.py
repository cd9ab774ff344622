"""Read replicas: streaming standbys that answer the public read paths.

DATABASE_REPLICA_URL names standbys of DATABASE_URL's database; each gets a small pool
of its own. A watcher per replica asks it every POLL_SECONDS how far it has replayed
the primary's WAL. A read goes to a replica only while that replica is a standby,
answers, and lags at most REPLICA_MAX_LAG seconds behind; otherwise to the primary.
Which reads may go to a replica at all is the views' choice (`views.base.public_read`);
a visitor who just changed something reads their change (read_your_writes.py).

Lag is measured on the primary's WAL positions, not on clocks: a sampler notes when
the primary first stood at each position, and a replica's lag is how long ago the
primary first stood at a position the replica has not replayed yet (0 once it has
replayed all it was seen at). A quiet primary shows no lag, unlike `now() -
pg_last_xact_replay_timestamp()`, and the two servers' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from databases import Database

from .db import PooledConnection, asyncpg_dsn, raw_connection
from .db_errors import DATABASE_CANNOT_SAVE, DATABASE_UNAVAILABLE

log = logging.getLogger(__name__)

POOL_SIZE = 10  # connections per replica and app process
CONNECT_TIMEOUT = 2.0  # seconds to reach a replica before it counts as down
QUERY_TIMEOUT = 10.0  # a replica that stops answering mid-query counts as down
POLL_SECONDS = 0.2  # how fresh what we know of each replica is
FIRST_BACKOFF = 1.0  # a replica that failed is left alone this long, then twice as long...
MAX_BACKOFF = 15.0  # ...up to this
# The primary's positions are remembered this long (or 3 × REPLICA_MAX_LAG if longer):
# a replica behind all of them lags at least that much.
HISTORY_SECONDS = 60.0

# What a read meets when its replica went away since it was last checked: the read is
# made again on the primary, once, and the replica is left alone for a while.
REPLICA_DOWN = DATABASE_UNAVAILABLE + DATABASE_CANNOT_SAVE  # db_errors.py
# A standby cancels a query whose rows its replay must remove (a recovery conflict,
# SQLSTATE 40001): nothing is wrong with the replica, the read is made on the primary.
RECOVERY_CONFLICT = (asyncpg.SerializationError,)

# The flush position: all a standby can have (WAL past it may sit unsent on a quiet
# primary, and would make every replica look behind).
PRIMARY_POSITION_SQL = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint"
REPLICA_STATE_SQL = """
    SELECT pg_is_in_recovery() AS standby,
           (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS replayed
"""

T = TypeVar("T")


def open_replica(url: str, pooler: str = "none") -> Database:
    """A small pool that connects lazily (a replica down at start does not stop the
    start) and gives up quickly on a replica that does not answer."""
    options = {"statement_cache_size": 0} if pooler == "pgbouncer" else {}
    return Database(
        asyncpg_dsn(url), min_size=0, max_size=POOL_SIZE, connection_class=PooledConnection,
        timeout=CONNECT_TIMEOUT, command_timeout=QUERY_TIMEOUT,
        server_settings={"application_name": "petitions replica reads"}, **options,
    )  # fmt: skip


async def primary_position(primary: Database) -> int:
    """How far the primary's WAL is flushed, so can be streamed to a standby."""
    async with raw_connection(primary) as conn:
        return await conn.fetchval(PRIMARY_POSITION_SQL)


@dataclass(eq=False)
class Replica:
    """One replica, as last seen: `index` is its place in DATABASE_REPLICA_URL (what
    logs and metrics name: never its address, which may hold a password)."""

    index: int
    db: Database
    replayed: int | None = None  # WAL position replayed, as an integer
    lag: float | None = None  # seconds; None until known, while down, or if not a standby
    checked_at: float = 0.0  # time.monotonic() of the measurement
    down_until: float = 0.0  # time.monotonic(): left alone until then
    backoff: float = 0.0
    standby: bool | None = None

    def usable(self, max_lag: float, written: int | None, now: float) -> bool:
        # At most this far behind now, had its replay stopped just after the check.
        if self.lag is None or self.lag + (now - self.checked_at) > max_lag:
            return False
        if now < self.down_until:
            return False
        return written is None or (self.replayed is not None and self.replayed >= written)


class ReadReplicas:
    def __init__(
        self, primary: Database, urls: tuple[str, ...], max_lag: float, pooler: str = "none"
    ) -> None:
        self.primary = primary
        self.max_lag = max_lag
        self.replicas = [Replica(i, open_replica(url, pooler)) for i, url in enumerate(urls)]
        # (when the primary was first seen there, WAL position), oldest first.
        self._positions: deque[tuple[float, int]] = deque()
        self._turns = itertools.count()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        for replica in self.replicas:
            await replica.db.connect()  # min_size=0: no connection is made yet
        self._tasks = [asyncio.create_task(self._sample_primary())]
        self._tasks += [asyncio.create_task(self._watch(r)) for r in self.replicas]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                await replica.db.disconnect()

    def choose(self, written: int | None = None) -> Replica | None:
        """A replica for one request, in turn among those usable now (caught up to
        `written`, a WAL position, when given); None: the primary."""
        now = time.monotonic()
        usable = [r for r in self.replicas if r.usable(self.max_lag, written, now)]
        if not usable:
            return None
        return usable[next(self._turns) % len(usable)]

    async def read(
        self, replica: Replica | None, read: Callable[[Database], Awaitable[T]]
    ) -> tuple[T, Replica | None]:
        """`read(db)` on `replica`, or on the primary when it is None or fails; with the
        replica the rest of the request should use (None once it failed)."""
        if replica is None:
            return await read(self.primary), None
        try:
            return await read(replica.db), replica
        except RECOVERY_CONFLICT:
            return await read(self.primary), None
        except REPLICA_DOWN as error:
            self._set_down(replica, error)
            return await read(self.primary), None

    # The watchers ---------------------------------------------------------------------

    async def _sample_primary(self) -> None:
        while True:
            try:
                self._note_position(await primary_position(self.primary))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the primary restarts: requests will say so
                log.debug("replica lag: the primary's WAL position is unknown (%r)", error)
            await asyncio.sleep(POLL_SECONDS)

    def _note_position(self, position: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        history = max(HISTORY_SECONDS, 3 * self.max_lag)
        if not self._positions:
            # How long the primary has stood where it is first seen is unknown: as long
            # as we remember, so a replica behind it lags "at least that".
            self._positions.append((now - history, position))
        elif position > self._positions[-1][1]:
            self._positions.append((now, position))
        while len(self._positions) > 1 and now - self._positions[1][0] > history:
            self._positions.popleft()

    def lag_of(self, replayed: int, now: float | None = None) -> float | None:
        """Seconds since the primary first stood where this replica has not got to."""
        if not self._positions:
            return None  # nothing to measure against yet
        now = time.monotonic() if now is None else now
        for seen_at, position in self._positions:
            if position > replayed:
                return now - seen_at
        return 0.0

    async def _watch(self, replica: Replica) -> None:
        while True:
            try:
                await asyncio.wait_for(self._check(replica), CONNECT_TIMEOUT + 1)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._set_down(replica, error)
            wait = max(POLL_SECONDS, replica.down_until - time.monotonic())
            await asyncio.sleep(wait)

    async def _check(self, replica: Replica) -> None:
        async with raw_connection(replica.db) as conn:
            row = await conn.fetchrow(REPLICA_STATE_SQL)
        if not row["standby"]:
            if replica.standby is not False:
                log.warning(
                    "read replica %d is not a standby (pg_is_in_recovery() is false); "
                    "it gets no reads until it is one again",
                    replica.index,
                )
            replica.standby, replica.lag = False, None
            return
        if replica.backoff:
            log.warning("read replica %d answers again", replica.index)
        replica.standby, replica.backoff = True, 0.0
        replica.replayed = row["replayed"]
        replica.checked_at = time.monotonic()
        replica.lag = None if row["replayed"] is None else self.lag_of(row["replayed"])

    def _set_down(self, replica: Replica, error: BaseException) -> None:
        if not replica.backoff:
            log.warning(
                "read replica %d is out of reach (%s: %s); its reads go to the primary",
                replica.index, type(error).__name__, error,
            )  # fmt: skip
        replica.backoff = min(max(2 * replica.backoff, FIRST_BACKOFF), MAX_BACKOFF)
        replica.down_until = time.monotonic() + replica.backoff
        replica.lag = None
