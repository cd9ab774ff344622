"""PgBouncer in transaction mode in front of PostgreSQL (Debian's pgbouncer): request
traffic goes through it with asyncpg's statement cache off (DATABASE_POOLER=pgbouncer),
LISTEN, migrations and the outbox worker go straight to PostgreSQL
(DATABASE_SESSION_URL). docs/operations.md, "Connection pooler (PgBouncer)"."""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from fleet import (
    POOLER_TROUBLE,
    SITE,
    SLUG,
    admin_session,
    confirmations,
    count_of,
    event_stream,
    sign,
    start_worker,
    stopped_log,
)
from served import serve, stop

from admin_support import make_admin
from conftest import SECRET, free_port, make_petition, wait_until
from petitions.app import create_app
from petitions.db import fetch_in_batches, open_database
from petitions.settings import load_settings

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer",) if os.access(p, os.X_OK)), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PGBOUNCER is None,
        reason="Debian's pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)",
    ),
]


@pytest.fixture
def bouncer(db_url):
    """PgBouncer in transaction mode in front of the test's database, with only a few
    server connections so that clients share them; (address through it, its log)."""
    parts = urlsplit(db_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    server_host = parts.hostname or socket_dir or "127.0.0.1"
    user = parts.username or "postgres"
    password = f" password={parts.password}" if parts.password else ""
    directory = Path(tempfile.mkdtemp(prefix="petitions-pgbouncer-"))
    port = free_port()
    log = directory / "pgbouncer.log"
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={server_host} port={parts.port or 5432} user={user}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {directory}
auth_type = any
pool_mode = transaction
default_pool_size = 3
max_client_conn = 500
logfile = {log}
"""
    )
    command = [PGBOUNCER, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer will not run as root: be the database socket's owner
        owner = os.stat(socket_dir).st_uid if socket_dir else pwd.getpwnam("nobody").pw_uid
        os.chown(directory, owner, -1)
        command[1:1] = ["-u", pwd.getpwuid(owner).pw_name]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, f"pgbouncer exited: {_read(log)}"
                assert time.monotonic() < deadline, "pgbouncer did not listen"
                time.sleep(0.05)
        yield f"postgresql://{user}@127.0.0.1:{port}{parts.path}", log
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def pooled_settings(through: str, direct: str, tmp_path: Path, **environ: str):
    return load_settings(
        {"DATABASE_URL": through, "DATABASE_SESSION_URL": direct,
         "DATABASE_POOLER": "pgbouncer", "SECRET_KEY": SECRET, "DATA_DIR": str(tmp_path),
         "BASE_URL": "http://testserver", **environ},
        env_file=None,
    )  # fmt: skip


async def _many_queries(db, count: int = 150) -> list:
    """A parametrised query from many tasks at once, each in a transaction of its own."""

    async def one(i: int):
        async with db.connection() as c, c.transaction():
            return await c.raw_connection.fetchval("SELECT $1::int + count(*) FROM petitions", i)

    return await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)


async def _second_use_elsewhere(through: str, pooler: str) -> int:
    """One client uses a query, another then takes that server connection, and the
    first uses the query again: PgBouncer gives it another server connection."""
    query = "SELECT $1::int + count(*) FROM petitions"
    first = open_database(through, max_size=1, pooler=pooler)
    other = open_database(through, max_size=1, pooler=pooler)
    await first.connect()
    await other.connect()
    try:
        async with first.connection() as c:
            await c.raw_connection.fetchval(query, 1)
        async with other.connection() as held, held.transaction():
            await held.raw_connection.fetchval("SELECT 1")  # the idle server connection
            async with first.connection() as c:
                return await c.raw_connection.fetchval(query, 2)
    finally:
        await first.disconnect()
        await other.disconnect()


async def test_the_request_pool_keeps_no_prepared_statements_behind_pgbouncer(bouncer, conn):
    """With asyncpg's statement cache on, a cached statement's next use can land on a
    server connection that never prepared it; DATABASE_POOLER=pgbouncer turns the cache
    off, and the batched reads (SQL cursors) work through PgBouncer too."""
    through, _log = bouncer
    pid = await make_petition(conn)
    with pytest.raises(asyncpg.InvalidSQLStatementNameError, match="prepared statement"):
        await _second_use_elsewhere(through, pooler="none")
    assert await _second_use_elsewhere(through, pooler="pgbouncer") == 3

    pooled = open_database(through, max_size=10, pooler="pgbouncer")
    await pooled.connect()
    try:
        results = await _many_queries(pooled)
        assert results == [i + 1 for i in range(150)]  # one petition
        async with pooled.connection() as c, c.transaction():
            raw = c.raw_connection
            query = "SELECT g FROM generate_series(1, $1::int) g WHERE $2::bigint > 0"
            batches = [[r["g"] for r in rows] async for rows in
                       fetch_in_batches(raw, query, 25, pid, rows=10)]  # fmt: skip
        assert batches == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    finally:
        await pooled.disconnect()


async def test_sign_confirm_list_stream_export_and_mail_through_pgbouncer(
    bouncer, db_url, conn, mail_server, tmp_path
):
    """The whole signing path served through PgBouncer, with a `petitions worker`
    beside it: nothing in either log says a prepared statement or a portal was lost."""
    through, bouncer_log = bouncer
    await make_petition(conn)
    await make_admin(conn, "owner@example.org")
    environ = {"DATABASE_SESSION_URL": db_url, "DATABASE_POOLER": "pgbouncer", "BASE_URL": SITE,
               "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail_server.port)}  # fmt: skip
    worker_log = tmp_path / "worker.log"
    server, base = serve(through, tmp_path, **environ)
    worker = start_worker(through, tmp_path, worker_log, **environ)
    server_log = ""
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            # One signer, all the way: sign, email, confirm, listed, counted, streamed.
            async with event_stream(base) as events:
                response = await sign(http, "leyla@example.org", "Leyla Ahmadi")
                assert response.status_code == 303, response.text
                [link] = await confirmations(mail_server, 1)
                page = await http.get(link)
                assert page.status_code == 200 and "confirmed" in page.text
                await wait_until(lambda: any(k == "signature" for k, _ in events),
                                 what="a signature event")  # fmt: skip
            assert "Leyla Ahmadi" in (await http.get(f"/p/{SLUG}/signatures")).text
            await wait_until(lambda: count_of(http), what="count.json says 1")
            assert await count_of(http) == 1

            # Twenty at once (the group commit), then confirmed at once.
            tokens_and_signs = [
                sign(http, f"worker{i}@example.org", f"Signer {i}") for i in range(20)
            ]
            responses = await asyncio.gather(*tokens_and_signs)
            assert [r.status_code for r in responses] == [303] * 20
            links = await confirmations(mail_server, 21)
            assert len(links) == 21
            pages = await asyncio.gather(*(http.get(link) for link in links[1:]))
            assert {p.status_code for p in pages} == {200}

            async def counted() -> bool:
                return await count_of(http) == 21

            await wait_until(counted, what="count.json says 21")
            printed = await http.get(f"/p/{SLUG}/print")
            assert printed.status_code == 200 and "Signer 19" in printed.text

            # The admin: the CSV export, and an update sent to every consenting signer.
            csrf = await admin_session(http, "owner@example.org")
            export = await http.get(f"/admin/petitions/{SLUG}/export.csv")
            assert export.status_code == 200
            assert len(export.text.strip().splitlines()) == 1 + 21
            assert "Signer 7" in export.text
            draft = {"csrf_token": csrf, "subject": "They were released", "body": "Thank you."}
            preview = await http.post(
                f"/admin/petitions/{SLUG}/updates", data={**draft, "action": "preview"}
            )
            confirmation = re.search(r'name="confirmation" value="([^"]+)"', preview.text)
            sent = await http.post(
                f"/admin/petitions/{SLUG}/updates",
                data={**draft, "action": "send", "confirmation": confirmation.group(1)},
            )
            assert sent.status_code in (200, 303), sent.text

            def updates_received() -> int:
                return sum(m["Subject"] == "They were released" for m in mail_server.messages)

            await wait_until(lambda: updates_received() == 21, 30, what="21 updates")
    finally:
        server_log = stopped_log(server)
        stop(worker)
    logs = server_log + _read(worker_log)
    assert not [t for t in POOLER_TROUBLE if t in logs], logs[-3000:]
    assert "prepared statement" not in _read(bouncer_log)


async def test_an_app_with_its_own_worker_takes_the_session_address_for_it(
    bouncer, db_url, conn, mail_server, tmp_path
):
    """`petitions serve` without --no-worker: requests through PgBouncer, the in-process
    outbox worker and the live listener on DATABASE_SESSION_URL."""
    through, _log = bouncer
    await make_petition(conn)
    settings = pooled_settings(
        through, db_url, tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=str(mail_server.port)
    )
    app = create_app(settings, run_outbox_worker=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await sign(http, "ana@example.org", "Ana Souza")).status_code == 303
            [link] = await confirmations(mail_server, 1)
            assert (await http.get(link)).status_code == 200

            async def counted() -> bool:
                return await count_of(http) == 1

            await wait_until(counted, what="count.json says 1")
        names = {
            r["application_name"]
            for r in await conn.fetch(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            )
        }
        # The listeners hold their own sessions on PostgreSQL. Through PgBouncer they would
        # hold none: a client idle between transactions has no server connection.
        listeners = {
            "petitions live events",
            "petitions outbox listener",
            "petitions log sequencer",
        }
        assert listeners <= names, names
