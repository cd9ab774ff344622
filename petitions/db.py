"""Connecting to PostgreSQL: the embedded server from pgserver, or DATABASE_URL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from databases import Database

from .settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "petitions"


def start_embedded_server(data_dir: Path):
    """Start (or join) the private PostgreSQL server kept in DATA_DIR/postgres.

    Processes on the same DATA_DIR share one server: pgserver records each user
    and stops the server when the last one exits. Keep the returned handle alive
    for as long as the database is used.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

        _forget_dead_users(data_dir / "postgres")
        return pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")


def _forget_dead_users(pgdata: Path) -> None:
    """pgserver lists the processes using the server (.handle_pids.json) and the last to
    exit stops it; a process killed outright (kill -9, OOM) never leaves the list, and
    the server would then outlive every later user. Drop those that no longer run."""
    import psutil
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import DiskList

    users = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:  # the lock pgserver itself takes to change the list
        listed = users.get()
        alive = [pid for pid in listed if psutil.pid_exists(pid)]
        if alive != listed:
            users.put(alive)


def with_database_name(url: str, name: str) -> str:
    """The same server URL pointed at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def asyncpg_dsn(url: str) -> str:
    """asyncpg wants plain postgresql://; accept the SQLAlchemy-style spellings too."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql+asyncpg", "postgresql+psycopg"):
        scheme = "postgresql"
    parts = urlsplit(f"{scheme}://{rest}")
    # `databases` options are not libpq parameters; drop them for asyncpg.
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("min_size", "max_size")]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server unless it exists (safe when raced)."""
    conn = await asyncpg.connect(asyncpg_dsn(with_database_name(server_url, "postgres")))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()


class PooledConnection(asyncpg.Connection):
    """A pool connection that goes back to the pool without a reset query.

    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip per request. Nothing here leaves session
    state on a pool connection (advisory locks are transaction-level, LISTEN has its
    own connections, cursors live in transactions, no SET), and asyncpg still rolls
    back a transaction left open. The one session-level lock, retention's, is taken
    on the worker's pool, which uses DATABASE_SESSION_URL."""

    def get_reset_query(self) -> str:
        return ""


def open_database(url: str, max_size: int = 20, *, pooler: str = "none") -> Database:
    """A pool of connections to `url`. Behind a transaction-mode PgBouncer that keeps
    no prepared statements (DATABASE_POOLER=pgbouncer), asyncpg's statement cache is
    off: its named statements would outlive the transaction on a server connection
    another client gets next. Unnamed ones are safe: asyncpg sends Parse to Sync as
    one exchange, which PgBouncer keeps on one server connection."""
    options = {"statement_cache_size": 0} if pooler == "pgbouncer" else {}
    return Database(
        asyncpg_dsn(url), min_size=1, max_size=max_size, connection_class=PooledConnection,
        **options,
    )  # fmt: skip


_cursor_names = itertools.count(1)


async def fetch_in_batches(
    conn: asyncpg.Connection, query: str, *args, rows: int
) -> AsyncIterator[list[asyncpg.Record]]:
    """`query`'s rows, `rows` at a time, through an SQL cursor of the caller's open
    transaction. asyncpg's own cursors use a named prepared statement that outlives
    the transaction, which a transaction-mode pooler cannot keep; this one ends with
    it (so nothing is left to close when the caller stops early)."""
    name = f"batches_{next(_cursor_names)}"
    await conn.execute(f"DECLARE {name} NO SCROLL CURSOR FOR {query}", *args)
    while batch := await conn.fetch(f"FETCH FORWARD {int(rows)} FROM {name}"):
        yield batch
        if len(batch) < rows:
            break


@asynccontextmanager
async def raw_connection(db: Database) -> AsyncIterator[asyncpg.Connection]:
    """The asyncpg connection behind `databases`, for hot paths and COPY."""
    async with db.connection() as conn:
        yield conn.raw_connection


@contextmanager
def database_url_for(settings: Settings, *, session: bool = False) -> Iterator[str]:
    """The database to use: DATABASE_URL, or the embedded server (started or joined).
    With `session`, DATABASE_SESSION_URL when set: the address that keeps session
    state (LISTEN, session advisory locks), for migrations, the worker and commands.

    The embedded server keeps running while any process that joined it is alive.
    """
    if settings.database_url is not None:
        yield settings.session_url if session else settings.database_url
        return
    server = start_embedded_server(settings.data_dir)
    asyncio.run(ensure_database(server.get_uri(), EMBEDDED_DATABASE))
    yield with_database_name(server.get_uri(), EMBEDDED_DATABASE)


LISTENER_HEARTBEAT_SECONDS = 5.0


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Callable[[str], None],
    on_connected: Callable[[], Awaitable[None]],
    on_lost: Callable[[], None] = lambda: None,
    application_name: str = "petitions listener",
) -> None:
    """LISTEN on `channel` on a connection of its own, for ever (until cancelled).

    `on_notify(payload)` gets each notification; `on_connected()` runs after every
    (re)connection, to catch up on what was missed meanwhile. The connection is
    checked every few seconds so a dead socket is noticed early, and after the
    database restarts it reconnects with backoff."""
    delay = 0.2
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(
                dsn, timeout=10, server_settings={"application_name": application_name}
            )
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await conn.add_listener(channel, lambda _c, _pid, _ch, payload: on_notify(payload))
            await on_connected()
            delay = 0.2
            log.info("%s: listening on %s", application_name, channel)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), LISTENER_HEARTBEAT_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1")
            log.warning("%s lost its connection; reconnecting", application_name)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the database is restarting or unreachable
            log.warning("%s lost (%s); reconnecting", application_name, error)
        finally:
            on_lost()
            if conn is not None and not conn.is_closed():
                conn.terminate()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def wait_for_any(*events: asyncio.Event, at_most: float) -> None:
    """Wait until one of `events` is set, for `at_most` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
