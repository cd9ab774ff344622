"""The outbox worker: delivers outbox rows over SMTP, or to the log when no SMTP_HOST is set.

Rows are claimed with FOR UPDATE SKIP LOCKED inside a transaction that stays open
while they are sent, so two workers never take the same row, and a crash before
the commit leaves the rows waiting for the next try (at-least-once; the stored
Message-ID lets mail systems drop a repeat).

Queueing mail wakes the workers of every process: a trigger on the outbox
notifies the channel `outbox` at commit, and each worker listens on a connection
of its own; a slow poll covers the times that connection is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache

import aiosmtplib
from databases import Database

from .crypto import cipher_for
from .db import asyncpg_dsn, listen_forever, raw_connection, wait_for_any
from .mail import Mailer, open_outbox
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


_CLAIM = """
SELECT id, recipient, subject, body_text, body_html, headers, sealed, message_id, attempts
  FROM outbox
 WHERE status = 'waiting' AND next_attempt_at <= now()
 ORDER BY next_attempt_at, id
 LIMIT $1
   FOR UPDATE SKIP LOCKED
"""


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
    db: Database, settings: Settings, batch_size: int = 20, policy: RetryPolicy = RetryPolicy()
) -> int:
    """Deliver one batch of due rows; return how many were claimed.

    Reminders asked for by signing again (signing.process_sign_reminders) are
    turned into outbox rows first, so they go out in the same pass."""
    while await process_sign_reminders(db, _mailer(settings)):
        pass
    async with raw_connection(db) as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM, batch_size)
        if not rows:
            return 0
        if settings.smtp_host is None:
            for row in rows:
                try:
                    log.info("%s", readable(build_email(row, settings)))
                except _Permanent as error:
                    await _mark_failed(conn, row["id"], str(error))
                else:
                    await _mark_sent(conn, row["id"])
            return len(rows)
        try:
            smtp = await _connect(settings)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            log.warning(
                "SMTP server unreachable (%s); %d emails wait for a retry", error, len(rows)
            )
            for row in rows:
                await _mark_retry(conn, row, f"SMTP connection failed: {error}", policy)
            return len(rows)
        try:
            for row in rows:
                try:
                    await _send(smtp, build_email(row, settings))
                except _Permanent as error:
                    await _mark_failed(conn, row["id"], str(error))
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                    await _mark_retry(conn, row, str(error), policy)
                else:
                    await _mark_sent(conn, row["id"])
        finally:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()
    return len(rows)


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
    await smtp.connect()
    if settings.smtp_user:
        await smtp.login(settings.smtp_user, settings.smtp_password or "")
    return smtp


async def _send(smtp: aiosmtplib.SMTP, message: EmailMessage) -> None:
    try:
        await smtp.send_message(message)
    except aiosmtplib.SMTPRecipientsRefused as error:
        codes = [r.code for r in error.recipients]
        if all(code >= 500 for code in codes):
            raise _Permanent(f"recipient refused: {error}") from None
        raise
    except aiosmtplib.SMTPResponseException as error:
        if error.code >= 500:
            raise _Permanent(f"{error.code} {error.message}") from None
        raise


async def _mark_sent(conn, outbox_id: int) -> None:
    """Sent (or, with no SMTP_HOST, logged): the row keeps its status, time, purpose
    and Message-ID, and loses who it went to and what it said (retention.STRIP_EMAIL)."""
    await conn.execute(
        "UPDATE outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1, "
        f"last_error = NULL, {STRIP_EMAIL} WHERE id = $1",
        outbox_id,
    )


async def _mark_failed(conn, outbox_id: int, error: str) -> None:
    log.warning("email %d failed for good: %s", outbox_id, error)
    await conn.execute(
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = $2 WHERE id = $1",
        outbox_id,
        error[:1000],
    )


async def _mark_retry(conn, row, error: str, policy: RetryPolicy) -> None:
    attempts = row["attempts"] + 1
    if attempts >= policy.max_attempts:
        await _mark_failed(conn, row["id"], error)
        return
    await conn.execute(
        """
        UPDATE outbox SET attempts = $2, last_error = $3,
               next_attempt_at = now() + make_interval(secs => $4)
         WHERE id = $1
        """,
        row["id"],
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
    never delays mail; of all the processes' workers, one at a time does it.
    """
    if settings.database_url is None:
        raise ValueError("the outbox worker needs a database URL")
    wakeup = asyncio.Event()
    listener = asyncio.create_task(
        _listen_for_mail(settings.database_url, wakeup), name="outbox-listener"
    )
    retention = trending = None
    # The transparency logs are sequenced and signed beside delivery (transparency.py).
    sequencer = asyncio.create_task(run_sequencer(db, settings, stop), name="log-sequencer")
    if retention_every is not None:
        retention = asyncio.create_task(
            _retention_periodically(db, settings, stop, retention_every), name="retention"
        )
        trending = asyncio.create_task(
            _trending_alerts_periodically(db, settings, stop), name="trending-alerts"
        )
    try:
        while not stop.is_set():
            wakeup.clear()  # before delivering: mail queued meanwhile wakes the next pass
            try:
                while not stop.is_set() and await deliver_due(db, settings, policy=policy):
                    pass
            except Exception:  # the database may be restarting: log, wait, go on
                log.exception("outbox delivery failed; trying again shortly")
            await wait_for_any(wakeup, stop, at_most=poll_seconds)
    finally:
        for task in (listener, sequencer, retention, trending):
            if task is not None:
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
