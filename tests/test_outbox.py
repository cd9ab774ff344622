"""The outbox worker against a real SMTP server: exactly once, retries, outages."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from email.utils import make_msgid

from conftest import MailServer, free_port
from petitions.db import open_database
from petitions.outbox import RetryPolicy, deliver_due, run_outbox_worker

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
        async with asyncio.timeout(60):
            while not await stop_when():
                await asyncio.sleep(0.05)
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
    async with connected(db_url) as db:
        for _ in range(3):
            await deliver_due(db, unreachable, policy=policy)
            await asyncio.sleep(0.05)
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
    rows = {r["recipient"]: r for r in await conn.fetch("SELECT * FROM outbox")}
    assert rows["r0@example.org"]["status"] == "failed"
    assert "550" in rows["r0@example.org"]["last_error"]
    assert rows["r1@example.org"]["status"] == "sent"


async def test_without_smtp_host_mail_goes_to_the_log(conn, db_url, settings, caplog):
    assert settings.smtp_host is None
    await queue(conn, 1)
    link = "http://127.0.0.1:8000/verify/" + "Ab3=" * 40
    await conn.execute("UPDATE outbox SET body_text = $1", f"Confirm your signature:\n\n{link}\n")
    async with connected(db_url) as db:
        with caplog.at_level(logging.INFO, logger="petitions.outbox"):
            assert await deliver_due(db, settings) == 1
    assert "Message 0" in caplog.text and "r0@example.org" in caplog.text
    assert link in caplog.text  # whole, not broken by MIME line-wrapping
    assert await conn.fetchval("SELECT status FROM outbox") == "sent"


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
        async with asyncio.timeout(60):
            while len(mail_server.messages) < 3:
                await asyncio.sleep(0.1)
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
