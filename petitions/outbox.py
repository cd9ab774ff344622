"""The outbox as an admin sees it: what waits, what went, what failed, and trying again.

An admin never sees a live link token: in what is shown of an email, the token of
every signer's link (/verify/…, /withdraw/…, /unsubscribe/…) is replaced, so an
owner reading someone's waiting confirmation cannot confirm it. Sent emails keep
no recipient or text at all (retention.STRIP_EMAIL).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from databases import Database

from . import audit
from .crypto import Cipher
from .db import raw_connection
from .mail import open_outbox

# suppressed: past a mail cap (mail.CAPPED_PURPOSES), never sent; it keeps nothing of the message.
STATUSES = ("waiting", "sent", "failed", "suppressed")
PURPOSES = ("verification", "reminder", "update", "test", "notice", "receipt")
PAGE_SIZE = 50

# The signer's links whose last path segment is a token that acts on a signature.
LINK_TOKEN = re.compile(r"(/(?:verify|withdraw|unsubscribe)/)[A-Za-z0-9_.\-]+")
HIDDEN_TOKEN = "…"
# A signer's receipt (receipts.py), bare or after `#receipt=`: nobody but its signer
# may hold it, the admins reading a waiting email included.
RECEIPT = re.compile(r"\b[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}\b")


def hide_link_tokens(text: str) -> str:
    """`text` with the token of every signer's link and every receipt replaced by
    `HIDDEN_TOKEN`."""
    return RECEIPT.sub(HIDDEN_TOKEN, LINK_TOKEN.sub(rf"\g<1>{HIDDEN_TOKEN}", text))


@dataclass(frozen=True)
class OutboxRow:
    id: int
    purpose: str
    recipient: str | None  # None once stripped
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    stripped_at: datetime | None = None  # recipient and text removed (sent, or failed long ago)


@dataclass(frozen=True)
class OutboxMessage:
    row: OutboxRow
    headers: dict[str, str]
    message_id: str | None
    body_text: str | None  # None once stripped; link tokens hidden
    petition_slug: str | None


_COLUMNS = (
    "id, purpose, recipient, subject, status, attempts, next_attempt_at, last_error, "
    "created_at, sent_at, stripped_at"
)


async def status_counts(db: Database) -> dict[str, int]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n,"
            " count(*) FILTER (WHERE stripped_at IS NULL) AS unstripped"
            " FROM outbox GROUP BY status"
        )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({r["status"]: r["n"] for r in rows})
    # A failed email stripped by retention has no recipient left to retry.
    counts["retryable"] = sum(r["unstripped"] for r in rows if r["status"] == "failed")
    return counts


async def list_outbox(
    db: Database,
    cipher: Cipher,
    status: str | None,
    purpose: str | None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[OutboxRow], int | None]:
    """Newest first; the id to continue after, or None on the last page. Recipients
    are opened from the sealed column (mail.seal_outbox)."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            f"""
            SELECT {_COLUMNS}, sealed, body_text, body_html, headers FROM outbox
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR purpose = $2)
               AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC
             LIMIT $4
            """,
            status,
            purpose,
            after,
            limit + 1,
        )
    page = [_outbox_row(r, open_outbox(cipher, r)) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


def _outbox_row(row, content: dict) -> OutboxRow:
    values = {k: row[k] for k in OutboxRow.__dataclass_fields__ if k != "recipient"}
    return OutboxRow(recipient=content["recipient"], **values)


async def get_message(db: Database, cipher: Cipher, outbox_id: int) -> OutboxMessage | None:
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(
            f"""
            SELECT {_COLUMNS}, headers, message_id, body_text, body_html, sealed,
                   (SELECT p.slug FROM signatures s JOIN petitions p ON p.id = s.petition_id
                     WHERE s.id = o.signature_id) AS petition_slug
              FROM outbox o WHERE id = $1
            """,
            outbox_id,
        )
    if row is None:
        return None
    content = open_outbox(cipher, row)
    headers = content["headers"]
    body_text = content["body_text"]
    return OutboxMessage(
        row=_outbox_row(row, content),
        headers={name: hide_link_tokens(str(value)) for name, value in headers.items()},
        message_id=row["message_id"],
        body_text=hide_link_tokens(body_text) if body_text is not None else None,
        petition_slug=row["petition_slug"],
    )


async def retry(db: Database, admin_id: int, outbox_ids: Sequence[int]) -> int:
    """Make failed (or waiting) emails due now, with a fresh count of attempts."""
    async with raw_connection(db) as conn, conn.transaction():
        retried = await conn.fetch(
            """
            UPDATE outbox SET status = 'waiting', next_attempt_at = now(), attempts = 0
             WHERE id = ANY($1::bigint[]) AND status IN ('failed', 'waiting')
               AND stripped_at IS NULL
            RETURNING id
            """,
            list(outbox_ids),
        )
        if retried:
            await audit.record(
                conn, admin_id, "outbox.retry", details={"ids": [r["id"] for r in retried]}
            )
    return len(retried)


async def retry_all_failed(db: Database, admin_id: int) -> int:
    async with raw_connection(db) as conn, conn.transaction():
        n = await conn.fetchval(
            """
            WITH retried AS (
                UPDATE outbox SET status = 'waiting', next_attempt_at = now(), attempts = 0
                 WHERE status = 'failed' AND stripped_at IS NULL RETURNING id
            )
            SELECT count(*) FROM retried
            """
        )
        if n:
            await audit.record(conn, admin_id, "outbox.retry_failed", details={"count": n})
    return n
