"""The outbox as an admin sees it: what waits, what went, what failed, and trying again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from databases import Database

from . import audit
from .db import raw_connection

STATUSES = ("waiting", "sent", "failed")
PURPOSES = ("verification", "reminder", "update", "test", "notice")
PAGE_SIZE = 50


@dataclass(frozen=True)
class OutboxRow:
    id: int
    purpose: str
    recipient: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class OutboxMessage:
    row: OutboxRow
    headers: dict[str, str]
    message_id: str | None
    body_text: str
    petition_slug: str | None


_COLUMNS = (
    "id, purpose, recipient, subject, status, attempts, next_attempt_at, last_error, "
    "created_at, sent_at"
)


async def status_counts(db: Database) -> dict[str, int]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM outbox GROUP BY status")
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({r["status"]: r["n"] for r in rows})
    return counts


async def list_outbox(
    db: Database,
    status: str | None,
    purpose: str | None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[OutboxRow], int | None]:
    """Newest first; the id to continue after, or None on the last page."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            f"""
            SELECT {_COLUMNS} FROM outbox
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
    page = [OutboxRow(**dict(r)) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def get_message(db: Database, outbox_id: int) -> OutboxMessage | None:
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(
            f"""
            SELECT {_COLUMNS}, headers, message_id, body_text,
                   (SELECT p.slug FROM signatures s JOIN petitions p ON p.id = s.petition_id
                     WHERE s.id = o.signature_id) AS petition_slug
              FROM outbox o WHERE id = $1
            """,
            outbox_id,
        )
    if row is None:
        return None
    values = dict(row)
    headers = values.pop("headers")
    return OutboxMessage(
        row=OutboxRow(**{k: values[k] for k in OutboxRow.__dataclass_fields__}),
        headers=json.loads(headers) if isinstance(headers, str) else dict(headers or {}),
        message_id=values["message_id"],
        body_text=values["body_text"],
        petition_slug=values["petition_slug"],
    )


async def retry(db: Database, admin_id: int, outbox_ids: Sequence[int]) -> int:
    """Make failed (or waiting) emails due now, with a fresh count of attempts."""
    async with raw_connection(db) as conn, conn.transaction():
        retried = await conn.fetch(
            """
            UPDATE outbox SET status = 'waiting', next_attempt_at = now(), attempts = 0
             WHERE id = ANY($1::bigint[]) AND status IN ('failed', 'waiting')
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
                 WHERE status = 'failed' RETURNING id
            )
            SELECT count(*) FROM retried
            """
        )
        if n:
            await audit.record(conn, admin_id, "outbox.retry_failed", details={"count": n})
    return n
