"""The outbox worker against a real SMTP server: exactly once, retries, outages, wake-ups."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from email.utils import make_msgid

import asyncpg
import pytest

from conftest import MailServer, eventually, free_port, wait_until
from petitions.db import asyncpg_dsn, open_database
from petitions.delivery import (
    CHANNEL,
    LISTENER_APPLICATION_NAME,
    RetryPolicy,
    deliver_due,
    run_outbox_worker,
)
from petitions.outbox import retry_all_failed

FAST_RETRY = RetryPolicy(base_seconds=0.05, max_seconds=0.2, max_attempts=50)


@asynccontextmanager
async def connected(db_url):
    """A pool of the worker's own, as a separate process would have."""
    db = open_database(db_url, max_size=2)
    await db.connect()
    try:
        yield db
    finally:
        await db.disconnect()


async def queue(conn, n: int) -> list[str]:
    ids = [make_msgid(domain="test.example") for _ in range(n)]
    await conn.executemany(
        "INSERT INTO outbox (purpose, recipient, subject, body_text, body_html, message_id) "
        "VALUES ('notice', $1, $2, 'plain text', '<p>html</p>', $3)",
        [(f"r{i}@example.org", f"Message {i}", mid) for i, mid in enumerate(ids)],
    )
    return ids


async def drain(db_url, settings, stop_when, workers=1, policy=FAST_RETRY):
    """Run `workers` outbox workers, each with its own connection pool, until stop_when()."""
    pools = [open_database(db_url, max_size=2) for _ in range(workers)]
    for db in pools:
        await db.connect()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_outbox_worker(db, settings, stop, poll_seconds=0.05, policy=policy))
        for db in pools
    ]
    try:
        await wait_until(stop_when, seconds=60, interval=0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for db in pools:
            await db.disconnect()


async def test_two_workers_send_every_message_exactly_once(
    conn, db_url, mail_settings, mail_server
):
    ids = await queue(conn, 300)

    async def all_sent():
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE status <> 'sent'") == 0

    await drain(db_url, mail_settings, all_sent, workers=2)
    received = [m["Message-ID"] for m in mail_server.messages]
    assert len(received) == 300
    assert sorted(received) == sorted(ids)
    assert await conn.fetchval("SELECT sum(attempts) FROM outbox") == 300


async def test_smtp_down_then_up_delivers_everything(conn, db_url, settings):
    port = free_port()
    down = replace(settings, smtp_host="127.0.0.1", smtp_port=port)
    ids = await queue(conn, 20)
    async with connected(db_url) as db:
        assert await deliver_due(db, down, policy=FAST_RETRY) == 20
    rows = await conn.fetch("SELECT status, attempts, last_error FROM outbox")
    assert all(r["status"] == "waiting" and r["attempts"] == 1 for r in rows)
    assert all("SMTP connection failed" in r["last_error"] for r in rows)

    server = MailServer(port)
    server.start()
    try:

        async def all_sent():
            return await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") == 20

        await drain(db_url, down, all_sent)
        assert sorted(m["Message-ID"] for m in server.messages) == sorted(ids)
    finally:
        server.stop()


async def test_retries_give_up_after_the_last_attempt(conn, db_url, settings):
    unreachable = replace(settings, smtp_host="127.0.0.1", smtp_port=free_port())
    await queue(conn, 2)
    policy = RetryPolicy(base_seconds=0.01, max_seconds=0.01, max_attempts=3)

    async def both_due():
        due = "SELECT count(*) FROM outbox WHERE status = 'waiting' AND next_attempt_at <= now()"
        return await conn.fetchval(due) == 2

    async with connected(db_url) as db:
        for _ in range(3):
            await wait_until(both_due)  # a retry falls due a moment after the last attempt
            await deliver_due(db, unreachable, policy=policy)
    rows = await conn.fetch("SELECT status, attempts FROM outbox")
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 3), ("failed", 3)]


async def test_refused_recipient_fails_at_once(conn, db_url, mail_settings, mail_server):
    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, options):
            if address.startswith("r0@"):
                return "550 No such user"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        handle_DATA = mail_server.inbox.handle_DATA

    mail_server.stop()
    mail_server.inbox = Refusing()
    mail_server.inbox.messages = []
    mail_server.start()
    await queue(conn, 2)
    async with connected(db_url) as db:
        await deliver_due(db, mail_settings)
    # Keyed by subject: a sent row keeps no recipient (retention.STRIP_EMAIL).
    rows = {r["subject"]: r for r in await conn.fetch("SELECT * FROM outbox")}
    assert rows["Message 0"]["status"] == "failed"
    assert "550" in rows["Message 0"]["last_error"]
    assert rows["Message 1"]["status"] == "sent"


async def test_without_smtp_host_mail_goes_to_the_log(conn, db_url, settings, caplog):
    assert settings.smtp_host is None
    await queue(conn, 1)
    link = "http://127.0.0.1:8000/verify/" + "Ab3=" * 40
    await conn.execute("UPDATE outbox SET body_text = $1", f"Confirm your signature:\n\n{link}\n")
    async with connected(db_url) as db:
        with caplog.at_level(logging.INFO, logger="petitions.delivery"):
            assert await deliver_due(db, settings) == 1
    assert "Message 0" in caplog.text and "r0@example.org" in caplog.text
    assert link in caplog.text  # whole, not broken by MIME line-wrapping
    assert await conn.fetchval("SELECT status FROM outbox") == "sent"


@pytest.mark.slow  # runs `petitions worker` as a process
async def test_worker_command_delivers_and_stops_cleanly(conn, db_url, mail_server, tmp_path):
    import os
    import shutil
    import signal
    import subprocess

    from conftest import SECRET

    ids = await queue(conn, 3)
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SECRET_KEY": SECRET,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mail_server.port),
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen([shutil.which("petitions"), "worker"], env=env, cwd=tmp_path)
    try:
        await wait_until(lambda: len(mail_server.messages) >= 3, seconds=60, interval=0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert sorted(m["Message-ID"] for m in mail_server.messages) == sorted(ids)
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") == 3


async def test_a_message_that_cannot_be_built_fails_alone(conn, db_url, mail_settings, mail_server):
    ids = await queue(conn, 2)
    await conn.execute(
        "UPDATE outbox SET subject = 'Broken\nBcc: everyone@example.org' WHERE message_id = $1",
        ids[0],
    )
    async with connected(db_url) as db:
        await deliver_due(db, mail_settings)
    rows = {r["message_id"]: r for r in await conn.fetch("SELECT * FROM outbox")}
    assert rows[ids[0]]["status"] == "failed" and "cannot build" in rows[ids[0]]["last_error"]
    assert rows[ids[1]]["status"] == "sent"
    assert [m["Message-ID"] for m in mail_server.messages] == [ids[1]]


# Waking the worker -----------------------------------------------------------
#
# The workers below poll every 30 seconds, so mail delivered within a few
# seconds was delivered because queueing it woke them.

SLOW_POLL = 30.0
WELL_BEFORE_THE_POLL = 10.0


@asynccontextmanager
async def idle_worker(db_url, settings):
    """A worker with a pool of its own (as in another process) that polls only every
    SLOW_POLL seconds."""
    async with connected(db_url) as db:
        stop = asyncio.Event()
        task = asyncio.create_task(run_outbox_worker(db, settings, stop, poll_seconds=SLOW_POLL))
        try:
            yield
        finally:
            stop.set()
            await task


async def listener_pid(conn, other_than: int | None = None) -> int | None:
    """The backend of the worker's listening connection, once it has run LISTEN."""
    return await conn.fetchval(
        """
        SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = $1
           AND query LIKE 'LISTEN%' AND pid IS DISTINCT FROM $2
        """,
        LISTENER_APPLICATION_NAME,
        other_than,
    )


async def delivered(mail_server, ids: list[str]) -> bool:
    async def check():
        return set(ids) <= {m["Message-ID"] for m in mail_server.messages}

    return await eventually(check, seconds=WELL_BEFORE_THE_POLL)


async def test_mail_queued_by_another_process_wakes_the_worker(
    conn, db_url, mail_settings, mail_server
):
    async with idle_worker(db_url, mail_settings):
        assert await eventually(lambda: listener_pid(conn))
        first = await queue(conn, 1)  # through a connection the worker does not share
        assert await delivered(mail_server, first)
        second = await queue(conn, 3)  # and again, once the worker waits
        assert await delivered(mail_server, second)


async def test_worker_wakes_after_its_listener_connection_is_killed(
    conn, db_url, mail_settings, mail_server
):
    async with idle_worker(db_url, mail_settings):
        killed = await eventually(lambda: listener_pid(conn))
        assert killed
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", killed)
        assert await eventually(lambda: listener_pid(conn, other_than=killed))
        ids = await queue(conn, 1)
        assert await delivered(mail_server, ids)


async def test_an_admin_retry_wakes_the_worker(conn, db_url, mail_settings, mail_server):
    ids = await queue(conn, 2)
    await conn.execute("UPDATE outbox SET status = 'failed', attempts = 12")
    async with idle_worker(db_url, mail_settings):
        assert await eventually(lambda: listener_pid(conn))
        async with connected(db_url) as admin_db:
            assert await retry_all_failed(admin_db, admin_id=None) == 2
        assert await delivered(mail_server, ids)


async def test_only_mail_that_becomes_due_notifies(conn, db_url):
    """Queueing and retrying notify the channel; the worker's own bookkeeping does not."""
    received: list[str] = []
    listener = await asyncpg.connect(asyncpg_dsn(db_url))
    await listener.add_listener(CHANNEL, lambda *args: received.append(args[-1]))

    async def notifications_from(sql: str, *args) -> int:
        """Notifications arrive in commit order: once a marker sent after `sql` has
        arrived, so has every notification `sql` caused."""
        received.clear()
        await conn.execute(sql, *args)
        await conn.execute("SELECT pg_notify($1, 'marker')", CHANNEL)

        async def marker_arrived():
            return "marker" in received

        assert await eventually(marker_arrived)
        return len(received) - 1

    insert = """
        INSERT INTO outbox (purpose, recipient, subject, body_text, status)
        SELECT 'notice', 'r' || i || '@example.org', 'Hello', 'text', $1
          FROM generate_series(1, 3) AS i
    """
    retry_later = "UPDATE outbox SET attempts = 1, next_attempt_at = now() + interval '1 hour'"
    retry_now = "UPDATE outbox SET status = 'waiting', next_attempt_at = now()"
    try:
        assert await notifications_from(insert, "waiting") == 1  # one for the statement
        assert await notifications_from(insert, "sent") == 0
        assert await notifications_from(retry_later + " WHERE status = 'waiting'") == 0
        assert await notifications_from("UPDATE outbox SET status = 'failed'") == 0
        assert await notifications_from(retry_now + " WHERE status = 'failed'") == 1
        assert await notifications_from("UPDATE outbox SET last_error = 'noted'") == 0
        assert await notifications_from("UPDATE outbox SET status = 'sent'") == 0
    finally:
        await listener.close()


async def test_a_claim_given_back_wakes_the_workers(conn, db_url, settings):
    """Claiming wakes nobody; giving a claim back (a worker stopping) makes the email
    due again, and wakes the workers of every process to send it."""
    from petitions.delivery import _CLAIM, release_claims

    received: list[str] = []
    listener = await asyncpg.connect(asyncpg_dsn(db_url))
    await listener.add_listener(CHANNEL, lambda *args: received.append(args[-1]))
    await queue(conn, 2)
    try:
        await wait_until(lambda: len(received) == 1)  # the queueing
        received.clear()
        claimed = await conn.fetchrow(_CLAIM, "worker-a", 60.0, [])
        assert await conn.fetchrow(_CLAIM, "worker-b", 60.0, []) != claimed  # the other row
        await conn.execute("SELECT pg_notify($1, 'marker')", CHANNEL)
        await wait_until(lambda: "marker" in received)
        assert received == ["marker"]
        async with connected(db_url) as db:
            assert await release_claims(db, "worker-a") == 1
        await wait_until(lambda: len(received) == 2)
        unclaimed = await conn.fetch("SELECT id FROM outbox WHERE claimed_by IS NULL")
        assert [r["id"] for r in unclaimed] == [claimed["id"]]
    finally:
        await listener.close()
