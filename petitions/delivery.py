"""The outbox worker: delivers outbox rows over SMTP, or to the log when no SMTP_HOST is set.

A worker claims one row at a time: a short transaction (FOR UPDATE SKIP LOCKED) writes
its name and a lease into the row and commits; the email goes out; a second short
statement marks it sent the moment the SMTP server has accepted it. No transaction is
open across a send, so two workers never take the same row, and a worker killed
mid-send re-sends at most the one email the server accepted before the worker could
record it (at-least-once; the stored Message-ID lets mail systems drop that repeat).
A row whose lease ran out (its worker died) is claimed again; a worker that stops
(SIGTERM) lets the email it is sending finish for a few seconds, then gives its claim
back (migrations/0015_outbox_claims.sql; docs/operations.md, "Email delivery
guarantees").

Queueing mail wakes the workers of every process: a trigger on the outbox
notifies the channel `outbox` at commit, and each worker listens on a connection
of its own; a slow poll covers the times that connection is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache

import aiosmtplib
from databases import Database

from .crypto import cipher_for
from .db import asyncpg_dsn, listen_forever, raw_connection, wait_for_any
from .export_refresh import refresh_periodically as refresh_export_blocks
from .logs import mask_emails
from .mail import Mailer, open_outbox
from .metrics import count_delivery_failure
from .retention import STRIP_EMAIL, enforce_retention
from .settings import Settings
from .signing import process_sign_reminders
from .transparency import run_sequencer
from .trending import CHECK_EVERY_SECONDS as TRENDING_EVERY_SECONDS
from .trending import send_alerts

log = logging.getLogger(__name__)

CHANNEL = "outbox"  # notified by the triggers of migrations/0005_outbox_notify.sql
LISTENER_APPLICATION_NAME = "petitions outbox listener"  # how pg_stat_activity names it
RETENTION_EVERY_SECONDS = 3600.0  # the worker applies the retention periods hourly


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 30.0
    max_seconds: float = 6 * 3600.0
    max_attempts: int = 12  # about two days of trying before a row is marked failed

    def delay(self, attempts: int) -> float:
        return min(self.base_seconds * 2 ** (attempts - 1), self.max_seconds) * random.uniform(
            0.8, 1.2
        )


# One due row, not claimed by a live worker nor tried already in this pass ($3),
# leased to worker $1 for $2 seconds. One statement, so one short transaction of its
# own (also through a transaction pooler).
_CLAIM = """
UPDATE outbox SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
 WHERE id = (
       SELECT id FROM outbox
        WHERE status = 'waiting' AND next_attempt_at <= now()
          AND (claimed_until IS NULL OR claimed_until <= now())
          AND id <> ALL($3::bigint[])
        ORDER BY next_attempt_at, id
        LIMIT 1
          FOR UPDATE SKIP LOCKED)
RETURNING id, recipient, subject, body_text, body_html, headers, sealed, message_id, attempts
"""
# What a stopping worker gives back: its claims on rows it has not sent.
_RELEASE = """
UPDATE outbox SET claimed_by = NULL, claimed_until = NULL
 WHERE claimed_by = $1 AND status = 'waiting'
"""
# A worker may finish the email it is sending for this long after it is told to stop.
STOP_GRACE_SECONDS = 5.0


def worker_name() -> str:
    """A name for one outbox worker, unique among all processes of all machines."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"


def readable(message: EmailMessage) -> str:
    """An email as a person reads it (no MIME encoding to break the links), for the log."""
    text = message.get_body(("plain",)).get_content()
    return (
        "email (no SMTP_HOST set, so written here instead of sent)\n"
        f"To: {message['To']}\nSubject: {message['Subject']}\n\n{text}"
    )


class _Permanent(Exception):
    """A delivery that no retry can mend."""


def build_email(row, settings: Settings) -> EmailMessage:
    """The message for an outbox row; a row that cannot make a valid message (a
    line break in a header, say) raises _Permanent, so it fails alone."""
    try:
        return _build_email(row, settings)
    except (ValueError, TypeError) as error:
        raise _Permanent(f"cannot build the message: {error}") from None


def _build_email(row, settings: Settings) -> EmailMessage:
    # Recipient, bodies and headers are sealed (mail.seal_outbox); a key that cannot
    # open them raises crypto.DataKeyError, which is no _Permanent: the batch is
    # left waiting, not marked failed, until the right key is set.
    content = open_outbox(cipher_for(settings), row)
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = content["recipient"]
    message["Subject"] = row["subject"]
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = row["message_id"]
    message.set_content(content["body_text"])
    if content["body_html"]:
        message.add_alternative(content["body_html"], subtype="html")
    # After the bodies: setting content clears Content-* headers (Content-Language).
    for name, value in content["headers"].items():
        message[name] = value
    return message


async def deliver_due(
    db: Database,
    settings: Settings,
    batch_size: int = 20,
    policy: RetryPolicy = RetryPolicy(),
    worker: str | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Deliver up to `batch_size` due rows over one SMTP connection, claiming each
    just before it is sent; return how many were claimed (0: none was due).

    Reminders asked for by signing again (signing.process_sign_reminders) are
    turned into outbox rows first, so they go out in the same pass. Once `stop` is
    set, no further row is claimed."""
    while await process_sign_reminders(db, _mailer(settings)):
        pass
    worker = worker or worker_name()
    tried: list[int] = []  # a row retried soon is left for the next pass
    smtp: aiosmtplib.SMTP | None = None
    unreachable: str | None = None  # why the SMTP server could not be reached
    lease = float(settings.outbox_lease_seconds)
    async with raw_connection(db) as conn:
        try:
            while len(tried) < batch_size and not (stop is not None and stop.is_set()):
                row = await conn.fetchrow(_CLAIM, worker, lease, tried)
                if row is None:
                    break
                tried.append(row["id"])
                try:
                    if settings.smtp_host is None:
                        await _deliver_to_log(conn, row, settings, worker)
                        continue
                    if smtp is None and unreachable is None:
                        try:
                            smtp = await _connect(settings)
                        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                            unreachable = f"SMTP connection failed: {error}"
                            log.warning("SMTP server unreachable (%s); emails wait for a retry",
                                        error)  # fmt: skip
                    if unreachable is not None:  # the rest of this pass waits too
                        await _mark_retry(conn, row, unreachable, policy, worker)
                        continue
                    await _deliver_by_smtp(conn, smtp, row, settings, policy, worker)
                except BaseException:
                    # Not sent (a data key that cannot open it, the database gone, the
                    # worker cancelled): give the claim back rather than wait for its lease,
                    # and drop the SMTP session without waiting for a polite QUIT.
                    if smtp is not None:
                        smtp.close()
                        smtp = None
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.execute(_RELEASE, worker))
                    raise
        finally:
            if smtp is not None:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    smtp.close()
    return len(tried)


async def _deliver_to_log(conn, row, settings: Settings, worker: str) -> None:
    try:
        log.info("%s", readable(build_email(row, settings)))
    except _Permanent as error:
        await _mark_failed(conn, row["id"], str(error), worker)
    else:
        await _mark_sent(conn, row["id"], worker)


async def _deliver_by_smtp(
    conn, smtp: aiosmtplib.SMTP, row, settings: Settings, policy: RetryPolicy, worker: str
) -> None:
    try:
        await _send(smtp, build_email(row, settings))
    except _Permanent as error:
        await _mark_failed(conn, row["id"], str(error), worker)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        await _mark_retry(conn, row, str(error), policy, worker)
    else:
        # The server has the email: recorded at once, in a statement of its own. A
        # worker dying between the two is the one duplicate SMTP cannot rule out.
        await _mark_sent(conn, row["id"], worker)


async def release_claims(db: Database, worker: str) -> int:
    """Give back `worker`'s claims on rows it has not sent; how many there were."""
    async with raw_connection(db) as conn:
        status = await conn.execute(_RELEASE, worker)
    return int(status.split()[-1])


@lru_cache(maxsize=8)
def _mailer(settings: Settings) -> Mailer:
    return Mailer(settings)


async def _connect(settings: Settings) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_tls == "tls",
        start_tls=True if settings.smtp_tls == "starttls" else False,
        timeout=30,
    )
    try:
        await smtp.connect()
        if settings.smtp_user:
            await smtp.login(settings.smtp_user, settings.smtp_password or "")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        count_delivery_failure(error)  # /metrics, by reply code (metrics.py)
        raise
    return smtp


async def _send(smtp: aiosmtplib.SMTP, message: EmailMessage) -> None:
    try:
        await smtp.send_message(message)
    except aiosmtplib.SMTPRecipientsRefused as error:
        count_delivery_failure(error)
        codes = [r.code for r in error.recipients]
        if all(code >= 500 for code in codes):
            raise _Permanent(f"recipient refused: {error}") from None
        raise
    except aiosmtplib.SMTPResponseException as error:
        count_delivery_failure(error)
        if error.code >= 500:
            raise _Permanent(f"{error.code} {error.message}") from None
        raise
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        count_delivery_failure(error)  # no reply: the connection broke or timed out
        raise


# The worker's bookkeeping applies to a row it still holds: a claim that ran out and
# went to another worker is that worker's to record. Each ends the claim.
_UNCLAIMED = "claimed_by = NULL, claimed_until = NULL"


async def _mark_sent(conn, outbox_id: int, worker: str) -> None:
    """Sent (or, with no SMTP_HOST, logged): the row keeps its status, time, purpose
    and Message-ID, and loses who it went to and what it said (retention.STRIP_EMAIL)."""
    await conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1, "
        f"last_error = NULL, {_UNCLAIMED}, {STRIP_EMAIL} WHERE id = $1 AND claimed_by = $2",
        outbox_id,
        worker,
    )


async def _mark_failed(conn, outbox_id: int, error: str, worker: str) -> None:
    log.warning("email %d failed for good: %s", outbox_id, mask_emails(error))
    await conn.execute(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = $3, "
        f"{_UNCLAIMED} WHERE id = $1 AND claimed_by = $2",
        outbox_id,
        worker,
        error[:1000],
    )


async def _mark_retry(conn, row, error: str, policy: RetryPolicy, worker: str) -> None:
    attempts = row["attempts"] + 1
    if attempts >= policy.max_attempts:
        await _mark_failed(conn, row["id"], error, worker)
        return
    await conn.execute(
        f"""
        UPDATE outbox SET attempts = $3, last_error = $4,
               next_attempt_at = now() + make_interval(secs => $5), {_UNCLAIMED}
         WHERE id = $1 AND claimed_by = $2
        """,
        row["id"],
        worker,
        attempts,
        error[:1000],
        policy.delay(attempts),
    )


async def run_outbox_worker(
    db: Database,
    settings: Settings,
    stop: asyncio.Event,
    poll_seconds: float = 1.0,
    policy: RetryPolicy = RetryPolicy(),
    retention_every: float | None = RETENTION_EVERY_SECONDS,
) -> None:
    """Deliver until `stop` is set.

    The worker wakes when a notification on the channel `outbox` says mail was
    queued, by any process (the triggers of migrations/0005_outbox_notify.sql
    send it at commit), and every `poll_seconds` anyway: the fallback for mail
    that falls due later and for the times the listening connection is down.

    Beside delivering, it applies the retention periods (retention.py) at start
    and then every `retention_every` seconds, in a task of its own so a long pass
    never delays mail; of all the processes' workers, one at a time does it. The
    same way it makes the export's sealed blocks (export_refresh.py).
    """
    if settings.database_url is None:
        raise ValueError("the outbox worker needs a database URL")
    wakeup = asyncio.Event()
    listener = asyncio.create_task(
        _listen_for_mail(settings.database_url, wakeup), name="outbox-listener"
    )
    retention = trending = export_blocks = None
    # The transparency logs are sequenced and signed beside delivery (transparency.py).
    sequencer = asyncio.create_task(run_sequencer(db, settings, stop), name="log-sequencer")
    if retention_every is not None:
        retention = asyncio.create_task(
            _retention_periodically(db, settings, stop, retention_every), name="retention"
        )
        trending = asyncio.create_task(
            _trending_alerts_periodically(db, settings, stop), name="trending-alerts"
        )
        export_blocks = asyncio.create_task(
            refresh_export_blocks(db, settings, stop), name="export-blocks"
        )
    worker = worker_name()
    try:
        while not stop.is_set():
            wakeup.clear()  # before delivering: mail queued meanwhile wakes the next pass
            try:
                await _finish_or_abandon(
                    _deliver_while_due(db, settings, policy, worker, stop), stop
                )
            except Exception:  # the database may be restarting: log, wait, go on
                log.exception("outbox delivery failed; trying again shortly")
            await wait_for_any(wakeup, stop, at_most=poll_seconds)
    finally:
        for task in (listener, sequencer, retention, trending, export_blocks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Normally nothing is left to give back (the claim is released as a send is
        # abandoned); this covers a release that failed then.
        with contextlib.suppress(Exception):
            if released := await release_claims(db, worker):
                log.info("stopping: gave back %d claimed email(s)", released)


async def _deliver_while_due(
    db: Database, settings: Settings, policy: RetryPolicy, worker: str, stop: asyncio.Event
) -> None:
    while not stop.is_set() and await deliver_due(
        db, settings, policy=policy, worker=worker, stop=stop
    ):
        pass


async def _finish_or_abandon(delivering, stop: asyncio.Event) -> None:
    """Run `delivering` to its end; once `stop` is set, give the email being sent
    STOP_GRACE_SECONDS to go, then cancel (its claim is given back)."""
    task = asyncio.ensure_future(delivering)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
        if not task.done():
            log.warning("stopping: the email being sent did not finish in %g s; its claim "
                        "is given back", STOP_GRACE_SECONDS)  # fmt: skip
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        task.result()
    finally:
        stopping.cancel()
        if not task.done():  # this coroutine itself was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _retention_periodically(
    db: Database, settings: Settings, stop: asyncio.Event, every: float
) -> None:
    while not stop.is_set():
        try:
            await enforce_retention(db, settings)
        except Exception:  # the database may be restarting: log, and try at the next turn
            log.exception("applying the retention periods failed; trying again later")
        await wait_for_any(stop, at_most=every)


async def _trending_alerts_periodically(
    db: Database, settings: Settings, stop: asyncio.Event
) -> None:
    """Tell the admins about networks and domains signing far above their usual rate
    (trending.py), every few minutes."""
    mailer = Mailer(settings)
    while not stop.is_set():
        try:
            await send_alerts(db, mailer, settings.trending_alert_per_hour)
        except Exception:  # the database may be restarting: log, and try at the next turn
            log.exception("checking for trending sources failed; trying again later")
        await wait_for_any(stop, at_most=TRENDING_EVERY_SECONDS)


async def _listen_for_mail(database_url: str, wakeup: asyncio.Event) -> None:
    """Set `wakeup` on every notification on the channel `outbox`; after each
    (re)connection too, so mail queued while nobody listened goes now."""

    async def connected() -> None:
        wakeup.set()

    await listen_forever(
        asyncpg_dsn(database_url),
        CHANNEL,
        on_notify=lambda _payload: wakeup.set(),
        on_connected=connected,
        application_name=LISTENER_APPLICATION_NAME,
    )
