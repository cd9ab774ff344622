"""Retention: nothing about a signer is kept longer than it is needed.

The periods are settings (README's table and docs/signing.md, "What we keep, and
for how long"); the lifecycle moves are petitions/signature.py's:

- a signature never confirmed is deleted with its emails after
  RETENTION_UNVERIFIED_DAYS (the move `purge`);
- the keyed hash of a signer's network is dropped after RETENTION_NETWORK_DAYS;
- a rejected signature is erased RETENTION_REJECTED_DAYS after the rejection
  (the move `erase`: it keeps only what the counts need, and cannot be restored);
- with ANONYMISE_AFTER_CLOSE_DAYS set, every signature of a petition loses its
  personal data that many days after the petition closed, and stays counted;
- the mail caps' counts (migrations/0010_mail_caps.sql) are deleted after
  MAIL_COUNTS_KEPT_DAYS: they only ever look at today;
- a sign form token's count of uses (migrations/0009_sign_limits.sql) is deleted
  once the token has expired (tokens.FORM_TOKEN_AGE after it was first used at the latest);
- an email loses its recipient, bodies and headers as soon as SMTP accepts it
  (delivery.py strips it then; this pass catches any left over), and an email that
  failed for good after RETENTION_UNVERIFIED_DAYS.

Every rule works in bounded batches (`BATCH_SIZE` rows, each batch a statement
and a transaction of its own, found through a partial index of migrations/
0007_retention.sql), so a pass over millions of rows never holds long locks. The
outbox worker of every process runs a pass at start and then hourly; a session
advisory lock lets only one process run one at a time. `petitions purge` runs one
on demand. The log says how many rows each rule touched, never whose.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from databases import Database

from . import sign_limits, signature
from .db import raw_connection
from .petitions import CLOSED_SINCE_SQL
from .settings import Settings
from .tokens import FORM_TOKEN_AGE

log = logging.getLogger(__name__)

# Any fixed number will do (migrations.py uses 7_342_001); every process takes the same.
RETENTION_LOCK_KEY = 7_342_007
BATCH_SIZE = 1_000
MAIL_COUNTS_KEPT_DAYS = 2

# What stripping an email removes: who it went to and what it said (links with
# live tokens included). Status, purpose, subject, times and Message-ID stay.
# A SET list for `UPDATE outbox`; delivery.py applies it the moment SMTP accepts.
STRIP_EMAIL = (
    "recipient = NULL, body_text = NULL, body_html = NULL, headers = '{}', stripped_at = now(), "
    "sealed = NULL"  # recipient, bodies and headers sealed together (mail.seal_outbox)
)


@dataclass
class RetentionReport:
    """How many rows each rule touched in one pass."""

    unconfirmed_deleted: int = 0
    network_hashes_dropped: int = 0
    rejected_erased: int = 0
    anonymised: int = 0
    sent_emails_stripped: int = 0
    failed_emails_stripped: int = 0
    mail_counts_deleted: int = 0
    form_token_counts_deleted: int = 0
    skipped: bool = False  # another process was running a pass

    COUNTS = (
        "unconfirmed_deleted",
        "network_hashes_dropped",
        "rejected_erased",
        "anonymised",
        "sent_emails_stripped",
        "failed_emails_stripped",
        "mail_counts_deleted",
        "form_token_counts_deleted",
    )

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in self.COUNTS)

    def summary(self) -> str:
        if self.skipped:
            return "retention: another process is applying the retention periods; nothing done"
        return "retention: " + ", ".join(
            f"{name.replace('_', ' ')} {getattr(self, name)}" for name in self.COUNTS
        )


async def enforce_retention(
    db: Database,
    settings: Settings,
    now: datetime | None = None,
    *,
    wait: bool = False,
    batch_size: int = BATCH_SIZE,
) -> RetentionReport:
    """Apply every retention period once, as of `now` (default: the present).

    When another process is already running a pass, return at once with a report
    that says `skipped` (or, with `wait`, wait for it to finish and run one too).
    """
    now = now or datetime.now(UTC)
    async with raw_connection(db) as conn:
        if wait:
            await conn.execute("SELECT pg_advisory_lock($1)", RETENTION_LOCK_KEY)
        elif not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_KEY):
            log.info("retention: another process is running a pass; this one skips")
            return RetentionReport(skipped=True)
        try:
            report = await _enforce(conn, settings, now, batch_size)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_KEY)
    log.log(logging.INFO if report.total else logging.DEBUG, "%s", report.summary())
    return report


async def _enforce(
    conn: asyncpg.Connection, settings: Settings, now: datetime, batch: int
) -> RetentionReport:
    def days_ago(days: int) -> datetime:
        return now - timedelta(days=days)

    report = RetentionReport()
    report.unconfirmed_deleted = await _in_batches(
        batch,
        lambda: signature.purge_unconfirmed(
            conn, days_ago(settings.retention_unverified_days), batch
        ),
    )
    report.network_hashes_dropped = await _in_batches(
        batch, lambda: _drop_network_hashes(conn, days_ago(settings.retention_network_days), batch)
    )
    report.rejected_erased = await _in_batches(
        batch,
        lambda: signature.erase_rejected(conn, days_ago(settings.retention_rejected_days), batch),
    )
    if settings.anonymise_after_close_days is not None:
        closed_before = days_ago(settings.anonymise_after_close_days)
        for petition_id in await conn.fetchval(_CLOSED_WITH_PERSONAL_DATA, closed_before):
            report.anonymised += await _anonymise_petition(conn, petition_id, batch)
    report.sent_emails_stripped = await _in_batches(
        batch, lambda: _strip_emails(conn, "sent", now, batch)
    )
    report.failed_emails_stripped = await _in_batches(
        batch,
        lambda: _strip_emails(conn, "failed", days_ago(settings.retention_unverified_days), batch),
    )
    report.mail_counts_deleted = await _in_batches(
        batch, lambda: _delete_mail_counts(conn, days_ago(MAIL_COUNTS_KEPT_DAYS), batch)
    )
    token_expired = now - timedelta(seconds=FORM_TOKEN_AGE)
    report.form_token_counts_deleted = await _in_batches(
        batch, lambda: sign_limits.forget_used_form_tokens(conn, token_expired, batch)
    )
    return report


async def _anonymise_petition(conn: asyncpg.Connection, petition_id: int, batch: int) -> int:
    return await _in_batches(
        batch, lambda: signature.anonymise_signatures(conn, petition_id, batch)
    )


async def _in_batches(batch: int, step: Callable[[], Awaitable[int]]) -> int:
    """Run `step` until a batch comes back short; return how many rows it touched."""
    total = 0
    while True:
        done = await step()
        total += done
        if done < batch:
            return total


_DROP_NETWORK_HASHES = """
WITH due AS (
    SELECT id FROM signatures
     WHERE network_hash IS NOT NULL AND created_at < $1
     ORDER BY created_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
UPDATE signatures s SET network_hash = NULL FROM due WHERE s.id = due.id
"""


async def _drop_network_hashes(
    conn: asyncpg.Connection, signed_before: datetime, batch: int
) -> int:
    return signature.rows_changed(await conn.execute(_DROP_NETWORK_HASHES, signed_before, batch))


# Petitions closed before $1 with signatures that still hold personal data.
_CLOSED_WITH_PERSONAL_DATA = f"""
SELECT coalesce(array_agg(p.id ORDER BY p.id), '{{}}') FROM petitions p
 WHERE ({CLOSED_SINCE_SQL}) < $1
   AND EXISTS (SELECT 1 FROM signatures s WHERE s.petition_id = p.id AND s.erased_at IS NULL)
"""

# Sent or failed emails created before $1 that still say who they went to and what
# they said (a partial index of 0007 holds exactly the unstripped ones).
_STRIP_EMAILS = f"""
WITH due AS (
    SELECT id FROM outbox
     WHERE stripped_at IS NULL AND status <> 'waiting' AND status = $1 AND created_at < $2
     ORDER BY created_at
     LIMIT $3
       FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET {STRIP_EMAIL}, last_error = NULL FROM due WHERE o.id = due.id
"""


async def _strip_emails(
    conn: asyncpg.Connection, status: str, created_before: datetime, batch: int
) -> int:
    return signature.rows_changed(await conn.execute(_STRIP_EMAILS, status, created_before, batch))


_DELETE_MAIL_COUNTS = """
DELETE FROM mail_counts c
 USING (SELECT scope, key, window_start FROM mail_counts WHERE window_start < $1
         ORDER BY window_start LIMIT $2 FOR UPDATE SKIP LOCKED) due
 WHERE (c.scope, c.key, c.window_start) = (due.scope, due.key, due.window_start)
"""


async def _delete_mail_counts(conn: asyncpg.Connection, before: datetime, batch: int) -> int:
    return signature.rows_changed(await conn.execute(_DELETE_MAIL_COUNTS, before, batch))
