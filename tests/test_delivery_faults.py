"""Faults that must lose no email, against real processes and a real SMTP server.

The bound: a worker claims one email at a time and records it sent the moment the SMTP
server accepts it, so each worker killed mid-send re-sends at most one email after a
restart (the server accepted it; the worker died before recording it). Everything
else goes out exactly once (docs/operations.md, "Email delivery guarantees")."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from email.utils import make_msgid, parseaddr
from pathlib import Path

import httpx
import pytest

from conftest import SECRET, MailServer, free_port, make_petition, opened_signatures, wait_until
from petitions.db import open_database
from petitions.delivery import RetryPolicy, run_outbox_worker

LEASE_SECONDS = "2"  # a killed worker's claim runs out this soon (OUTBOX_LEASE_SECONDS)
SIGN_FORM = {"kind": "individual", "name": "Leyla Ahmadi", "country": "SE", "display": "public"}


class SlowInbox:
    """An SMTP server's handler that takes `delay` seconds to accept each email."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        import email
        import email.policy

        await asyncio.sleep(self.delay)
        self.messages.append(
            email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        )
        return "250 Message accepted"


def slow_mail_server(delay: float) -> MailServer:
    server = MailServer(free_port())
    server.inbox = SlowInbox(delay)
    server.start()
    return server


def environment(db_url: str, mail: MailServer, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING",
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.port),
           "OUTBOX_LEASE_SECONDS": LEASE_SECONDS, **extra}  # fmt: skip
    env.pop("PETITIONS_HEADER_TIMEOUT", None)
    return env


def start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "petitions.cli", *command], env=env, cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def answering(process: subprocess.Popen, base: str) -> None:
    async def healthy() -> bool:
        assert process.poll() is None, "serve exited"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(base + "/healthz", timeout=1)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, seconds=60, interval=0.1)


def end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def duplicates(messages) -> int:
    """Emails received more than once (by Message-ID), beyond their first copy."""
    return sum(n - 1 for n in Counter(m["Message-ID"] for m in messages).values())


async def nothing_waits(conn) -> bool:
    return await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'waiting'") == 0


@pytest.mark.slow  # `petitions serve` processes, 150 signatures
async def test_an_app_killed_mid_burst_loses_no_signature_and_no_email(conn, db_url, tmp_path):
    await make_petition(conn)
    mail = slow_mail_server(0.02)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Limits off: 150 signatures from one address in a minute are this test, not abuse.
    env = environment(db_url, mail, BASE_URL=base, SIGN_LIMIT_PER_HOUR="0",
                      SIGN_CEILING_PER_HOUR="0", MAIL_PER_NETWORK_PER_HOUR="0")  # fmt: skip
    serve = ["serve", "--port", str(port)]  # with the outbox worker in the process
    app = start(serve, env, tmp_path)
    restarted = None
    try:
        await answering(app, base)
        limits = httpx.Limits(max_connections=150)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            tokens = []
            while len(tokens) < 40:  # each carries a few signatures (tokens.FORM_TOKEN_USES)
                page = await client.get("/p/release-them")
                tokens += re.findall(r'name="form_token" value="([^"]+)"', page.text)
            emails = [f"signer{i}@example.org" for i in range(150)]
            answered: list[str] = []

            async def sign(i: int, email: str) -> None:
                data = {**SIGN_FORM, "email": email, "form_token": tokens[i // 4]}
                response = await client.post(
                    "/p/release-them/sign", data=data, headers={"Origin": base}
                )
                if response.status_code == 303:
                    answered.append(email)

            burst = [asyncio.ensure_future(sign(i, e)) for i, e in enumerate(emails)]
            # Killed once some signatures are in and emails are going out.
            await wait_until(lambda: len(answered) >= 40 and len(mail.messages) >= 5, seconds=60)
            app.kill()
            await asyncio.gather(*burst, return_exceptions=True)
        app.wait()
        sent_before = len(mail.messages)

        # Every acknowledged signature was stored.
        stored = {s["email"] for s in await opened_signatures(conn)}
        assert set(answered) <= stored
        assert len(answered) < len(emails)  # the kill came mid-burst

        restarted = start(serve, env, tmp_path)
        await answering(restarted, base)
        await wait_until(lambda: nothing_waits(conn), seconds=90, interval=0.1)
        received = Counter(parseaddr(m["To"])[1] for m in mail.messages)
        assert set(answered) <= set(received)  # every acknowledged signer got the email
        assert set(received) == stored  # and nobody else
        # Exactly once each, but for at most one email of the one worker killed.
        assert duplicates(mail.messages) <= 1
        assert len(mail.messages) > sent_before
    finally:
        end(app)
        if restarted is not None:
            end(restarted)
        mail.stop()


async def queue(conn, n: int) -> list[str]:
    ids = [make_msgid(domain="test.example") for _ in range(n)]
    await conn.executemany(
        "INSERT INTO outbox (purpose, recipient, subject, body_text, message_id) "
        "VALUES ('notice', $1, 'Hello', 'plain text', $2)",
        [(f"r{i}@example.org", mid) for i, mid in enumerate(ids)],
    )
    return ids


@pytest.mark.slow  # `petitions worker` processes
async def test_a_worker_killed_mid_send_resends_at_most_one_email(conn, db_url, tmp_path):
    mail = slow_mail_server(0.3)
    ids = await queue(conn, 12)
    env = environment(db_url, mail)
    worker = start(["worker"], env, tmp_path)
    restarted = None
    try:
        await wait_until(lambda: len(mail.messages) >= 4, seconds=60, interval=0.05)
        in_flight = "SELECT count(*) FROM outbox WHERE claimed_by IS NOT NULL"
        await wait_until(lambda: conn.fetchval(in_flight), seconds=10, interval=0.01)
        worker.kill()  # mid-send: one email claimed, the SMTP server taking it
        worker.wait()
        assert await conn.fetchval(in_flight) == 1  # the claim is one email, not a batch

        restarted = start(["worker"], env, tmp_path)
        await wait_until(lambda: nothing_waits(conn), seconds=60, interval=0.1)
        assert sorted(set(m["Message-ID"] for m in mail.messages)) == sorted(ids)
        assert duplicates(mail.messages) <= 1
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") == 12
    finally:
        end(worker)
        if restarted is not None:
            end(restarted)
        mail.stop()


async def test_smtp_down_for_a_while_then_back_delivers_everything_once(conn, db_url, settings):
    """Minutes made seconds: the same retry policy with its backoff shortened."""
    port = free_port()
    down = replace(settings, smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
    policy = RetryPolicy(base_seconds=0.1, max_seconds=0.5, max_attempts=1000)
    ids = await queue(conn, 10)
    db = open_database(db_url, max_size=2)
    await db.connect()
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_outbox_worker(db, down, stop, poll_seconds=0.05, policy=policy, retention_every=None)
    )
    mail = MailServer(port)
    try:
        # Refused, retried with backoff, refused again ...
        async def each_tried(times: int) -> bool:
            return await conn.fetchval("SELECT min(attempts) FROM outbox") >= times

        await wait_until(lambda: each_tried(3), seconds=30, interval=0.05)
        ids += await queue(conn, 5)  # mail keeps coming meanwhile
        await wait_until(lambda: each_tried(1), seconds=30, interval=0.05)
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status <> 'waiting'") == 0
        mail.start()  # ... until the server is back
        await wait_until(lambda: nothing_waits(conn), seconds=30, interval=0.05)
        assert sorted(m["Message-ID"] for m in mail.messages) == sorted(ids)  # once each
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") == 15
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE claimed_by IS NOT NULL") == 0
    finally:
        stop.set()
        await worker
        await db.disconnect()
        mail.stop()
