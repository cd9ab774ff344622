"""The audit log: one row per admin action, written in the same transaction as the action."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from databases import Database

from .db import raw_connection


@dataclass(frozen=True)
class AuditEntry:
    created_at: datetime
    admin_email: str | None
    action: str
    signature_id: int | None
    details: dict


async def record(
    conn: asyncpg.Connection,
    admin_id: int | None,
    action: str,
    *,
    petition_id: int | None = None,
    signature_id: int | None = None,
    details: dict | None = None,
) -> None:
    await conn.execute(
        """
        INSERT INTO audit_log (admin_id, action, petition_id, signature_id, details)
        VALUES ($1, $2, $3, $4, $5::jsonb)
        """,
        admin_id,
        action,
        petition_id,
        signature_id,
        json.dumps(details or {}, default=str),
    )


async def recent_for_petition(db: Database, petition_id: int, limit: int = 20) -> list[AuditEntry]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            """
            SELECT l.created_at, a.email AS admin_email, l.action, l.signature_id, l.details
              FROM audit_log l LEFT JOIN admins a ON a.id = l.admin_id
             WHERE l.petition_id = $1
             ORDER BY l.created_at DESC, l.id DESC
             LIMIT $2
            """,
            petition_id,
            limit,
        )
    return [
        AuditEntry(
            r["created_at"], r["admin_email"], r["action"], r["signature_id"],
            json.loads(r["details"]) if isinstance(r["details"], str) else r["details"],
        )
        for r in rows
    ]  # fmt: skip
