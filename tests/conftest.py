"""Test fixtures on a real PostgreSQL.

The server is the embedded one (pgserver) unless TEST_DATABASE_URL names another.
One template database is migrated per session; each test gets its own copy
(CREATE DATABASE ... TEMPLATE), so tests are isolated and fast.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import inspect
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from petitions.app import create_app
from petitions.crypto import ENCRYPTED_FIELDS, make_cipher
from petitions.db import asyncpg_dsn, start_embedded_server, with_database_name
from petitions.keys import normalise_email
from petitions.mail import open_outbox
from petitions.migrations import migrate
from petitions.personal import personal_of, stored_columns
from petitions.petitions import StatementText, create_petition
from petitions.settings import load_settings

SECRET = "test-secret-key-" + "x" * 32


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """A command run in-process (`cli.main`) sets up the process's logging for good;
    later tests get the logging they started with."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "petitions":  # logs.configure_logging's
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def pg_server_url():
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    data_dir = Path(tempfile.mkdtemp(prefix="petitions-test-"))
    server = start_embedded_server(data_dir)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


async def _admin_execute(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(with_database_name(server_url, "postgres")))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(pg_server_url):
    name = f"petitions_template_{os.getpid()}"

    async def build():
        await _admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}"')
        await _admin_execute(pg_server_url, f'CREATE DATABASE "{name}"')
        await migrate(with_database_name(pg_server_url, name))

    asyncio.run(build())
    yield name
    asyncio.run(_admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_url(pg_server_url, template_database):
    """A fresh, migrated database for one test."""
    name = f"petitions_test_{uuid.uuid4().hex[:12]}"
    await _admin_execute(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield with_database_name(pg_server_url, name)
    await _admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def conn(db_url):
    connection = await asyncpg.connect(asyncpg_dsn(db_url))
    yield connection
    await connection.close()


@pytest.fixture
def settings(db_url, tmp_path):
    environ = {"DATABASE_URL": db_url, "SECRET_KEY": SECRET, "DATA_DIR": str(tmp_path),
               # The test client's host: absolute addresses come from BASE_URL (hosts.py).
               "BASE_URL": "http://testserver"}  # fmt: skip
    return load_settings(environ, env_file=None)


@pytest.fixture
async def app(settings):
    # Tests deliver email explicitly (delivery.deliver_due), so no background worker.
    application = create_app(settings, run_outbox_worker=False)
    # Pages are rendered afresh for every request in tests, so that each assertion
    # sees the present (test_pages checks the page cache itself).
    application.state.page_cache.seconds = 0
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        )
        return "250 Message accepted"


class MailServer:
    """A real SMTP server on loopback that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self):
        return self.inbox.messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mail_server():
    server = MailServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail_settings(settings, mail_server):
    """Settings that deliver to the test's SMTP server."""
    return replace(settings, smtp_host="127.0.0.1", smtp_port=mail_server.port, smtp_tls="none")


# Builders for test data ------------------------------------------------------


async def make_petition(conn, slug="release-them", status="open", **options) -> int:
    text = StatementText(
        title=options.pop("title", "Release the detained workers"),
        summary="Free them now.",
        target="The authorities",
        body="We stand with the **workers**.\n\n<script>alert(1)</script>",
        demands=("Release all detained workers", "Drop all charges"),
    )
    return await create_petition(conn, slug, {"en": text}, status=status, **options)


async def add_signature(
    conn,
    petition_id: int,
    *,
    kind="individual",
    status="verified",
    display="public",
    name=None,
    email=None,
    country="GB",
    verified_at=None,
    **fields,
) -> dict:
    """Insert a signature directly (what the signing flow stores: the personal fields
    sealed, the clear columns the display choice publishes, the keyed hashes) and
    return its row, with the personal fields it was given."""
    email = normalise_email(email or f"{secrets.token_hex(6)}@example.org")
    if kind == "organisation":
        fields.setdefault("organisation", f"Union {secrets.token_hex(4)}")
        fields.setdefault("organisation_type", "trade_union")
    if status == "verified" and verified_at is None:
        verified_at = datetime.now(UTC)
    personal = {field: fields.pop(field, None) for field in ENCRYPTED_FIELDS}
    personal.update(name=name or f"Signer {secrets.token_hex(3)}", email=email)
    public_id = fields.pop("public_id", None) or uuid.uuid4()
    stored = stored_columns(CIPHER, SECRET, public_id, kind, display, country, personal)
    if kind != "organisation":  # what the schema must refuse, stored where it can see it
        stored.update({f: personal[f] for f in ORGANISATION_FIELDS if personal[f] is not None})
    columns = {
        "public_id": public_id,
        "petition_id": petition_id,
        "kind": kind,
        "status": status,
        "display": display,
        "country": country,
        "verified_at": verified_at,
        **stored,
        **fields,
    }
    names = ", ".join(columns)
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    row = await conn.fetchrow(
        f"INSERT INTO signatures ({names}) VALUES ({params}) RETURNING *", *columns.values()
    )
    return {**dict(row), **personal}


ORGANISATION_FIELDS = ("organisation", "organisation_type", "website", "members")
# The data key the test settings give (DATA_KEY unset: derived from SECRET).
CIPHER = make_cipher(SECRET)


async def opened_signatures(conn, where: str = "TRUE", *args) -> list[dict]:
    """Signature rows with their personal fields opened from the sealed blob."""
    rows = await conn.fetch(f"SELECT * FROM signatures WHERE {where} ORDER BY id", *args)
    return [{**dict(r), **personal_of(CIPHER, r)} for r in rows]


async def opened_outbox(conn, where: str = "TRUE", *args) -> list[dict]:
    """Outbox rows with recipient, bodies and headers opened from the sealed blob."""
    rows = await conn.fetch(f"SELECT * FROM outbox WHERE {where} ORDER BY id", *args)
    return [{**dict(r), **open_outbox(CIPHER, r)} for r in rows]


async def wait_until(condition, seconds: float = 10.0, interval: float = 0.02, what: str = ""):
    """Call `condition()` (sync or async) until it returns a truthy value, and return that.

    What happens elsewhere (a NOTIFY, another process, a timeout in the app) is
    waited for rather than slept on: at the deadline the test fails, saying what
    it waited for and the last value seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            name = what or getattr(condition, "__qualname__", repr(condition))
            raise AssertionError(f"waited {seconds:g}s for {name}; last value {result!r}")
        await asyncio.sleep(interval)


async def eventually(check, seconds: float = 10.0):
    """`wait_until` under its older name (the outbox wake-up tests still use it)."""
    return await wait_until(check, seconds)


async def count_is(client, expected: int, slug: str = "release-them", key: str = "count") -> bool:
    """Wait until count.json says `expected` (it is served from memory, refreshed by events)."""
    said = None

    async def check():
        nonlocal said
        said = (await client.get(f"/p/{slug}/count.json")).json()[key]
        return said == expected

    try:
        return await wait_until(check, what=f"{key} == {expected} in /p/{slug}/count.json")
    except AssertionError as error:
        raise AssertionError(f"{error}; it said {said!r}") from None


def without_form_tokens(html: str) -> str:
    """A page with its sign forms' tokens blanked: each copy served, a cached one too,
    carries tokens of its own."""
    return re.sub(r'name="form_token" value="[^"]*"', 'name="form_token" value=""', html)


def minutes_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=n)


@pytest.fixture
async def browser():
    """Headless Chromium (tests/browsers.py); the test is skipped without one."""
    from browsers import CHROMIUM, chromium

    if CHROMIUM is None:
        pytest.skip("no chromium on this machine")
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def site(settings, conn):
    """Every public page (tests/public_pages.py), served on loopback: (base URL, paths)."""
    from livekit import serving
    from public_pages import make_public_pages

    app = create_app(settings, run_outbox_worker=False)
    pages = await make_public_pages(conn, app.state.tokens)
    async with serving(app) as base:
        yield base, pages
