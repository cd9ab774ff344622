"""Moderation: the campaign's view of every signature, and approving, rejecting, restoring.

Each action is one UPDATE of `signatures.status` (the tally triggers keep the
counts, and the live updates hear of it) together with one audit-log row per
signature changed, in one statement.

- approve: held -> verified, counted from now.
- reject: pending, verified or held -> rejected (the data stays, so it can be restored).
- restore: rejected -> verified when its email had been confirmed, else back to
  pending (an unconfirmed signature must never count).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from databases import Database

from .countries import COUNTRY_CODES
from .db import raw_connection
from .fields import BadValue, has_forbidden_characters

STATUSES = ("pending", "verified", "held", "rejected", "withdrawn")
KINDS = ("individual", "organisation")
MAX_QUERY_LENGTH = 200
PAGE_SIZE = 50


class BadModerationRequest(BadValue):
    """A filter or action is malformed; the message is safe to show."""


@dataclass(frozen=True)
class ModerationFilter:
    status: str | None = None
    kind: str | None = None
    country: str | None = None
    q: str | None = None  # name, organisation or email

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ModerationFilter:
        def get(name: str) -> str | None:
            value = params.get(name)
            return value.strip() or None if isinstance(value, str) else None

        status, kind = get("status"), get("kind")
        country = (get("country") or "").upper() or None
        q = get("q")
        if status is not None and status not in STATUSES:
            raise BadModerationRequest(f"`status` must be one of {', '.join(STATUSES)}.")
        if kind is not None and kind not in KINDS:
            raise BadModerationRequest("`kind` must be individual or organisation.")
        if country is not None and country not in COUNTRY_CODES:
            raise BadModerationRequest("`country` must be an ISO 3166-1 alpha-2 code such as IR.")
        if q is not None:
            if len(q) > MAX_QUERY_LENGTH:
                raise BadModerationRequest(
                    f"The search text is longer than {MAX_QUERY_LENGTH} characters."
                )
            if has_forbidden_characters(q):
                raise BadModerationRequest("The search text contains control characters.")
        return cls(status, kind, country, q)

    def as_query(self) -> dict[str, str]:
        pairs = (("status", self.status), ("kind", self.kind), ("country", self.country),
                 ("q", self.q))  # fmt: skip
        return {k: v for k, v in pairs if v}


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class SignatureRow:
    id: int
    public_id: object
    kind: str
    status: str
    display: str
    name: str | None
    email: str | None
    organisation: str | None
    organisation_type: str | None
    country: str | None
    city: str | None
    occupation: str | None
    website: str | None
    members: int | None
    comment: str | None
    updates: bool
    ref: str | None
    version: int | None
    created_at: datetime
    verified_at: datetime | None


_LIST = """
SELECT s.id, s.public_id, s.kind, s.status, s.display, s.name, s.email, s.organisation,
       s.organisation_type, s.country, s.city, s.occupation, s.website, s.members, s.comment,
       s.updates, s.ref, v.version, s.created_at, s.verified_at
  FROM signatures s
  LEFT JOIN statement_versions v ON v.id = s.version_id
 WHERE s.petition_id = $1
   AND ($2::text IS NULL OR s.status = $2)
   AND ($3::text IS NULL OR s.kind = $3)
   AND ($4::text IS NULL OR s.country = $4)
   AND ($5::text IS NULL OR s.name ILIKE $5 OR s.organisation ILIKE $5 OR s.email ILIKE $5)
   AND ($6::bigint IS NULL OR s.id < $6)
 ORDER BY s.id DESC
 LIMIT $7
"""


async def list_signatures(
    db: Database,
    petition_id: int,
    filters: ModerationFilter,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[SignatureRow], int | None]:
    """One page of signatures, newest first, and where the next page starts (None: last)."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            _LIST,
            petition_id,
            filters.status,
            filters.kind,
            filters.country,
            _like(filters.q) if filters.q else None,
            after,
            limit + 1,
        )
    page = [SignatureRow(**dict(r)) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def status_counts(db: Database, petition_id: int) -> dict[str, int]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM signatures WHERE petition_id = $1 GROUP BY status",
            petition_id,
        )
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({r["status"]: r["n"] for r in rows})
    return counts


# Actions --------------------------------------------------------------------------

# action -> (the statuses it applies to, the new status, the new verified_at)
ACTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "approve": (("held",), "'verified'", "now()"),
    "reject": (("pending", "verified", "held"), "'rejected'", "s.verified_at"),
    "restore": (
        ("rejected",),
        "CASE WHEN s.verified_at IS NOT NULL THEN 'verified' ELSE 'pending' END",
        "s.verified_at",
    ),
}


async def moderate(
    db: Database, petition_id: int, admin_id: int, action: str, signature_ids: Sequence[int]
) -> int:
    """Apply `action` to those of the signatures it fits; return how many changed."""
    if action not in ACTIONS:
        raise BadModerationRequest("Choose approve, reject or restore.")
    if not signature_ids:
        return 0
    applies_to, new_status, new_verified_at = ACTIONS[action]
    statement = f"""
    WITH target AS (
        SELECT id, status FROM signatures
         WHERE petition_id = $1 AND id = ANY($2::bigint[]) AND status = ANY($3::text[])
         ORDER BY id
           FOR UPDATE
    ), changed AS (
        UPDATE signatures s
           SET status = {new_status}, verified_at = {new_verified_at}, updated_at = now()
          FROM target t
         WHERE s.id = t.id
        RETURNING s.id, t.status AS old_status, s.status AS new_status
    )
    INSERT INTO audit_log (admin_id, action, petition_id, signature_id, details)
    SELECT $4, $5, $1, id, jsonb_build_object('from', old_status, 'to', new_status)
      FROM changed
    RETURNING signature_id
    """
    async with raw_connection(db) as conn:
        changed = await conn.fetch(
            statement,
            petition_id,
            list(signature_ids),
            list(applies_to),
            admin_id,
            f"signature.{action}",
        )
    return len(changed)


def describe(action: str, changed: int, asked: int) -> str:
    """A line for the page after an action."""
    done = {"approve": "approved", "reject": "rejected", "restore": "restored"}[action]
    message = f"{changed} signature{'s' if changed != 1 else ''} {done}."
    if changed < asked:
        skipped = asked - changed
        message += (
            f" {skipped} could not be {done}: "
            f"{'it was' if skipped == 1 else 'they were'} not in a state that allows it."
        )
    return message


_SAFE_ACTION = re.compile(r"^(approve|reject|restore)$")


def parse_action(raw: object) -> str:
    if not isinstance(raw, str) or not _SAFE_ACTION.match(raw):
        raise BadModerationRequest("Choose approve, reject or restore.")
    return raw
