"""PostgreSQL faults under a real `petitions serve` and a few clients: restarts (fast,
immediate, a crashed backend), a full data disk, a full WAL disk; and the live-event
listener's catch-up after its connection broke.

What must hold: no answer is a 500 (a failure is a 503 with Retry-After, a page or
JSON saying to try again), every signature answered 303 and every confirmation
answered 200 is in the database afterwards, the app recovers by itself, and an open
event stream carries on (its listener reconnects; a client reconnecting with
Last-Event-ID is sent what it missed).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from conftest import SECRET, add_signature, free_port, make_petition, opened_signatures, wait_until
from livekit import EventStream, event_stream, serving
from own_postgres import MountUnavailable, OwnPostgres
from petitions.app import create_app
from petitions.db import asyncpg_dsn, ensure_database
from petitions.migrations import migrate
from petitions.tokens import Tokens

SLUG = "release-them"
PENDING = 150  # signatures waiting for confirmation, confirmed by the load
TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


# The database and the app ------------------------------------------------------------


async def _prepare(pg: OwnPostgres) -> None:
    """The database migrated, with an open petition and PENDING unconfirmed signatures."""
    await ensure_database(pg.url, "petitions")
    await migrate(pg.url)
    conn = await asyncpg.connect(pg.url)
    try:
        await make_petition(conn)
        for n in range(PENDING):
            await add_signature(conn, 1, status="pending", name=f"Pending {n}")
    finally:
        await conn.close()


@pytest.fixture
async def own_postgres():
    pg = OwnPostgres()
    try:
        pg.start()
        await _prepare(pg)
        yield pg
    finally:
        pg.close()


@pytest.fixture
async def small_disks():
    """`await small_disks(data_disk_mb=..., wal_disk_mb=...)`: an OwnPostgres on small
    disks, started and prepared (the test skips where no disk can be mounted)."""
    servers: list[OwnPostgres] = []

    async def start(**disks) -> OwnPostgres:
        try:
            pg = OwnPostgres(**disks)
        except MountUnavailable as reason:
            pytest.skip(f"no small disk for PostgreSQL here: {reason}")
        servers.append(pg)
        pg.start()
        await _prepare(pg)
        return pg

    try:
        yield start
    finally:
        for pg in servers:
            pg.close()


@dataclass
class App:
    process: subprocess.Popen
    base: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def app_on(tmp_path):
    """Start `petitions serve` on a database: `await app_on(url)`; stopped at the end.
    Its log goes to a file (a pipe nobody reads would fill up and stall it)."""
    started: list[App] = []

    async def start(url: str) -> App:
        app = _spawn(url, tmp_path)
        started.append(app)

        async def healthy():
            if app.process.poll() is not None:
                raise AssertionError(f"serve exited: {app.log_text()}")
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(app.base + "/healthz", timeout=1)).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, 60, 0.1, "petitions serve to answer /healthz")
        return app

    try:
        yield start
    finally:
        for app in started:
            app.process.terminate()
            try:
                app.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                app.process.kill()
                app.process.wait()


def _spawn(url: str, tmp_path: Path) -> App:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / f"app-{port}.log"
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET, "DATA_DIR": str(tmp_path),
           "BASE_URL": base, "LOG_LEVEL": "WARNING"}  # fmt: skip
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "petitions.cli", "serve", "--port", str(port), "--no-worker"],
            env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return App(process, base, log)


# The load ----------------------------------------------------------------------------


@dataclass
class Answer:
    what: str
    status: int
    retry_after: str | None
    body: str
    asked_at: float  # time.monotonic() as the request was sent


@dataclass
class Load:
    """A few clients doing what visitors do, over and over, keeping every answer."""

    http: httpx.AsyncClient
    to_confirm: list  # public ids of pending signatures
    tokens: Tokens = field(default_factory=lambda: Tokens(SECRET))
    answers: list[Answer] = field(default_factory=list)
    signed: list[str] = field(default_factory=list)  # emails answered 303
    confirmed: list = field(default_factory=list)  # public ids answered 200
    failures: list[str] = field(default_factory=list)  # no answer at all
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self, what: str, method: str, path: str, **options) -> httpx.Response | None:
        asked_at = time.monotonic()
        try:
            response = await self.http.request(method, path, **options)
        except httpx.HTTPError as error:
            self.failures.append(f"{what}: {error!r}")
            return None
        body = response.text if response.status_code != 200 or what != "page" else ""
        self.answers.append(
            Answer(what, response.status_code, response.headers.get("retry-after"), body, asked_at)
        )
        return response

    def asked_since(self, moment: float) -> list[Answer]:
        return [a for a in self.answers if a.asked_at > moment]

    async def client(self, n: int) -> None:
        token = None
        i = 0
        while not self.stop.is_set():
            i += 1
            page = await self.request("page", "GET", f"/p/{SLUG}")
            if page is not None and page.status_code == 200:
                token = TOKEN.search(page.text)[1]
            await self.request("count", "GET", f"/p/{SLUG}/count.json")
            await self.request("list", "GET", f"/p/{SLUG}/signatures.json?limit=5")
            if token is not None:
                await self.sign(f"load-{n}-{i}@example.org", token)
            if self.to_confirm:
                await self.confirm(self.to_confirm.pop())
            await asyncio.sleep(0.01)

    async def sign(self, email: str, token: str) -> int | None:
        form = {"form_token": token, "kind": "individual", "name": f"Signer {email[:-12]}",
                "email": email, "country": "DE", "display": "public"}  # fmt: skip
        response = await self.request(
            "sign",
            "POST",
            f"/p/{SLUG}/sign",
            data=form,
            headers={"Origin": str(self.http.base_url)},
        )
        if response is not None and response.status_code == 303:
            self.signed.append(email)
        return None if response is None else response.status_code

    async def confirm(self, public_id) -> int | None:
        link = self.tokens.signature_link("verify", public_id)
        response = await self.request("confirm", "GET", f"/verify/{link}")
        if response is not None and response.status_code == 200:
            self.confirmed.append(public_id)
        return None if response is None else response.status_code

    def since(self, mark: int) -> list[Answer]:
        return self.answers[mark:]


def check_answers(load: Load) -> None:
    """No 500, no dropped connection; every failure a 503 that says to come back."""
    assert not load.failures, load.failures[:5]
    statuses = {a.status for a in load.answers}
    assert statuses <= {200, 303, 503}, sorted(statuses)
    for answer in load.answers:
        if answer.status == 503:
            assert answer.retry_after and answer.retry_after.isdigit(), answer
            assert "try again" in answer.body, answer


async def check_stored(pg: OwnPostgres, load: Load) -> None:
    """Every 303 has its signature, every confirmation answered 200 is verified."""
    conn = await asyncpg.connect(pg.url)
    try:
        rows = await opened_signatures(conn)
    finally:
        await conn.close()
    emails = {row["email"] for row in rows}
    missing = [email for email in load.signed if email not in emails]
    assert not missing, f"{len(missing)} signatures answered 303 are not stored: {missing[:5]}"
    verified = {row["public_id"] for row in rows if row["status"] == "verified"}
    unconfirmed = [str(i) for i in load.confirmed if i not in verified]
    assert not unconfirmed, f"confirmations answered 200 but not stored: {unconfirmed[:5]}"


def check_log(app: App, load: Load) -> None:
    log = app.log_text()
    assert "unhandled error" not in log and "Exception in ASGI" not in log, log[-4000:]
    assert not any(email in log for email in load.signed), "a signer's email in the log"


async def pending_ids(pg: OwnPostgres) -> list:
    conn = await asyncpg.connect(pg.url)
    try:
        rows = await conn.fetch("SELECT public_id FROM signatures WHERE status = 'pending'")
    finally:
        await conn.close()
    return [row["public_id"] for row in rows]


async def recovered(load: Load, app: App) -> None:
    """The app answers again by itself: a whole round of requests, retried a bounded
    number of times (each 503 says when to come back; the test does not wait that long)."""

    async def round_trip():
        mark = len(load.answers)
        page = await load.request("page", "GET", f"/p/{SLUG}")
        if page is None or page.status_code != 200:
            return False
        await load.request("count", "GET", f"/p/{SLUG}/count.json")
        await load.request("list", "GET", f"/p/{SLUG}/signatures.json?limit=5")
        await load.sign(f"after-{mark}@example.org", TOKEN.search(page.text)[1])
        return all(a.status in (200, 303) for a in load.since(mark))

    await wait_until(round_trip, 60, 0.5, "the app to answer again after the fault")


# PostgreSQL restarted under load -----------------------------------------------------


async def _kill_a_backend(pg: OwnPostgres) -> None:
    """A backend dies (as when one PANICs or the OOM killer strikes): PostgreSQL ends every
    other connection ("crash of another server process") and recovers."""
    conn = await asyncpg.connect(pg.url)
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.1)
    conn.terminate()


@pytest.mark.slow  # a PostgreSQL and an app process of their own
async def test_postgresql_restarted_under_load(own_postgres, app_on):
    pg = own_postgres
    app = await app_on(pg.url)
    pending = await pending_ids(pg)
    ours, to_confirm = pending[:4], pending[4:]
    async with (
        httpx.AsyncClient(base_url=app.base, timeout=30) as http,
        http.stream("GET", f"/p/{SLUG}/events") as opened,
    ):
        watcher = Watcher(EventStream(opened))
        await watcher.seen(lambda e: e.kind == "count")
        clients = []
        load = Load(http, to_confirm)
        # One confirmation before any fault: its event id is where a client that
        # reconnects at the end resumes from.
        first = ours.pop()
        assert await load.confirm(first) == 200
        before = await watcher.seen(lambda e: e.data.get("id") == str(first))
        try:
            clients = [asyncio.create_task(load.client(n)) for n in range(4)]
            for fault in ("fast", "immediate", "crash"):
                mark = len(load.answers)
                await wait_until(lambda m=mark: len(load.answers) > m + 20, 30, what="load")
                if fault == "crash":
                    await _kill_a_backend(pg)
                else:
                    await asyncio.to_thread(pg.stop, fault)
                    await _while_down(load, app, pg)
                    await asyncio.to_thread(pg.start)
                await recovered(load, app)
                # An event committed now reaches the stream opened before the fault.
                late = ours.pop()
                assert await load.confirm(late) == 200
                event = await watcher.seen(lambda e, late=late: e.data.get("id") == str(late))
                assert event.data["name"].startswith("Pending")
            # The stream stayed open through every fault and carried every confirmation.
            confirmed = {str(i) for i in load.confirmed}
            await watcher.seen(lambda e: confirmed <= watcher.ids(), what="every confirmation")
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
            watcher.stop()

    check_answers(load)
    assert sum(a.status == 503 for a in load.answers) > 0, "the faults were never felt"
    await check_stored(pg, load)
    check_log(app, load)
    # A client that lost its stream before the faults resumes from the last id it had:
    # it is sent every confirmation since.
    async with (
        httpx.AsyncClient(base_url=app.base, timeout=30) as http,
        http.stream("GET", f"/p/{SLUG}/events", headers={"Last-Event-ID": before.id}) as resumed,
    ):
        replayed = EventStream(resumed)
        sent = set()
        while (event := await replayed.next()).kind == "signature":
            sent.add(event.data["id"])
        assert event.kind == "count"
    assert {str(i) for i in load.confirmed} <= sent
    conn = await asyncpg.connect(pg.url)
    verified = await conn.fetchval("SELECT count(*) FROM signatures WHERE status = 'verified'")
    await conn.close()
    # The last confirmations of the load may still be in the listener's next pass (it
    # gathers notifications for 20 ms): the count reaches the database's within moments,
    # long before the 30 s reconcile would put a stale one right.
    async with httpx.AsyncClient(base_url=app.base, timeout=30) as http:

        async def count_is_right() -> bool:
            answer = await http.get(f"/p/{SLUG}/count.json")
            return answer.json()["count"] == verified

        await wait_until(count_is_right, 3, 0.05, "the count to reach the database's")


class Watcher:
    """Reads an event stream in the background, keeping every event."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.events: list = []
        self.ended: BaseException | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                self.events.append(await self.stream._next())
        except Exception as error:  # the stream ended, or broke
            self.ended = error

    def ids(self) -> set[str]:
        return {e.data["id"] for e in self.events if e.kind == "signature"}

    async def seen(self, predicate, seconds: float = 30, what: str = "an event"):
        """The first event kept that matches; the test fails if the stream ended."""

        def found():
            assert self.ended is None, f"the event stream ended: {self.ended!r}"
            return next((e for e in self.events if predicate(e)), None)

        return await wait_until(found, seconds, what=f"{what} on the stream")

    def stop(self) -> None:
        self._task.cancel()


async def _while_down(load: Load, app: App, pg: OwnPostgres) -> None:
    """With PostgreSQL stopped: health says the database is down, and whatever needs it
    (signing, confirming, a list not held in memory) is a 503 with Retry-After."""
    assert not pg.running()
    down = time.monotonic()
    health = await load.http.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    await wait_until(
        lambda: {"sign", "confirm"} <= {a.what for a in load.asked_since(down)},
        30, what="a sign and a confirmation while down",
    )  # fmt: skip
    answers = [a for a in load.asked_since(down) if a.what in ("sign", "confirm")]
    assert {a.status for a in answers} == {503}, answers
    listed = await load.http.get(f"/p/{SLUG}/signatures.json?limit=3&kind=organisation")
    assert listed.status_code == 503 and listed.headers["retry-after"].isdigit()
    assert "try again" in listed.json()["error"]
    page = await load.http.get(f"/p/{SLUG}/signatures?kind=organisation")
    assert page.status_code == 503 and "try again" in page.text
    # A stream opened now cannot be sent what it missed: it is asked to come back,
    # still resuming after the id it came with.
    async with load.http.stream(
        "GET", f"/p/{SLUG}/events", headers={"Last-Event-ID": "1"}
    ) as opened:
        assert opened.status_code == 200
        body = (await opened.aread()).decode()
    assert body.startswith("id: 1\nretry: ") and "event:" not in body, body


# A full disk -----------------------------------------------------------------------


@pytest.mark.slow  # a PostgreSQL and an app process of their own
async def test_a_full_data_disk_gives_503s_and_recovers(small_disks, app_on):
    """Tables cannot grow (disk_full): PostgreSQL runs on, each write that needs room
    fails, and the app says it cannot save; once there is room, all works again."""
    pg = await small_disks(data_disk_mb=64)
    app = await app_on(pg.url)
    pending = await pending_ids(pg)
    ours, to_confirm = pending[:1], pending[1:]
    async with httpx.AsyncClient(base_url=app.base, timeout=30) as http:
        load = Load(http, to_confirm)
        page = await http.get(f"/p/{SLUG}")
        token = TOKEN.search(page.text)[1]
        assert await load.sign("before@example.org", token) == 303
        pg.fill("data")
        try:
            # Signing goes on until the tables need room they cannot get.
            refused = []
            for n in range(300):
                if n % 3 == 0:
                    page = await load.request("page", "GET", f"/p/{SLUG}")
                    if page is not None and page.status_code == 200:
                        token = TOKEN.search(page.text)[1]
                status = await load.sign(f"full-{n}@example.org", token)
                if load.to_confirm:
                    await load.confirm(load.to_confirm.pop())
                if status == 503:
                    refused.append(load.answers[-1])
                    if len(refused) >= 5:
                        break
            assert refused, "the disk never filled up"
            for answer in refused:
                assert "cannot save" in answer.body and answer.retry_after == "60", answer
            # What is read goes on being served.
            assert (await http.get(f"/p/{SLUG}/count.json")).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
        finally:
            pg.give_back("data")
        await recovered(load, app)
        assert await load.confirm(ours.pop()) == 200
    check_answers(load)
    await check_stored(pg, load)
    check_log(app, load)


@pytest.mark.slow  # a PostgreSQL and an app process of their own
async def test_a_full_wal_disk_stops_postgresql_and_the_app_waits_for_it(small_disks, app_on):
    """WAL cannot grow: PostgreSQL PANICs, fails to recover without room and stops.
    Meanwhile every answer that needs it is a 503 and /healthz says so; once there is
    room and PostgreSQL is started again, the app carries on by itself."""
    pg = await small_disks(wal_disk_mb=16, wal_segment_mb=1)
    app = await app_on(pg.url)
    async with httpx.AsyncClient(base_url=app.base, timeout=30) as http:
        load = Load(http, await pending_ids(pg))
        clients = [asyncio.create_task(load.client(n)) for n in range(3)]
        try:
            await wait_until(lambda: len(load.signed) >= 5, 30, what="signatures before")
            pg.fill("wal")
            try:
                await asyncio.to_thread(_write_until_refused, pg.url)
                await wait_until(lambda: not pg.running(), 30, what="PostgreSQL to stop")
                health = await http.get("/healthz")
                assert health.status_code == 503 and health.json()["status"] == "unavailable"
                down = time.monotonic()
                await wait_until(
                    lambda: {"sign", "confirm"} <= {a.what for a in load.asked_since(down)},
                    30, what="a sign and a confirmation while down",
                )  # fmt: skip
                served = {(a.what, a.status) for a in load.asked_since(down)}
                assert served <= {("page", 200), ("count", 200), ("list", 200)} | {
                    (what, 503) for what in ("page", "count", "list", "sign", "confirm")
                }, served
                assert ("sign", 503) in served, served
            finally:
                pg.give_back("wal")
            await asyncio.to_thread(pg.start)  # as an operator does, once there is room
            await recovered(load, app)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)
    check_answers(load)
    await check_stored(pg, load)
    check_log(app, load)


def _write_until_refused(url: str) -> None:
    """Write WAL (rows of a table of its own) until PostgreSQL refuses."""

    async def write() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS ballast (x text)")
            while True:
                await conn.execute(
                    "INSERT INTO ballast SELECT repeat(md5(random()::text), 30)"
                    "  FROM generate_series(1, 100)"
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return
        finally:
            conn.terminate()

    asyncio.run(write())


# The listener's catch-up -------------------------------------------------------------


async def test_a_confirmation_committed_while_the_listener_reconnects_is_streamed(settings, conn):
    """Event ids are taken before commit: a confirmation that took a lower id than one
    already streamed, and committed while the listener's connection was down, is sent
    when it reconnects (its catch-up looks back a few seconds, as a replay does)."""
    await make_petition(conn)
    early = await add_signature(conn, 1, status="pending", name="Early Id")
    later = await add_signature(conn, 1, status="pending", name="Later Id")
    confirm = "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1"
    app = create_app(settings, run_outbox_worker=False)
    slow = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        async with serving(app) as base, event_stream(base) as stream:
            await stream.next()
            async with slow.transaction():
                await slow.execute(confirm, early["id"])  # the lower event id, not committed
                await conn.execute(confirm, later["id"])  # the higher, committed and streamed
                await stream.until(lambda e: e.data.get("id") == str(later["public_id"]))
                await conn.execute(
                    """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE datname = current_database()
                          AND application_name = 'petitions live events'"""
                )
            # Committed now, while the listener is away (it waits before reconnecting).
            event = await stream.until(lambda e: e.data.get("id") == str(early["public_id"]), 20)
            assert event.data["name"] == "Early Id"
            assert app.state.live.connections >= 2
    finally:
        await slow.close()
