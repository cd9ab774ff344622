"""Moderation: the campaign's view of every signature, and the moderator's actions on them.

The actions (approve, reject, restore) are transitions of the signature's
lifecycle, defined and applied in `signature.py`; this module lists and
filters signatures for the moderation page and describes what an action did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from databases import Database

from . import signature
from .crypto import Cipher
from .db import raw_connection
from .fields import BadValue, FieldReader
from .personal import personal_of, query_hashes
from .signature import (
    MODERATOR_ACTIONS,
    ORGANISATION_ALREADY_COUNTED,
    Kind,
    Status,
    counted_sql,
)

MAX_QUERY_LENGTH = 200
PAGE_SIZE = 50
ACTION_NAMES = tuple(t.name for t in MODERATOR_ACTIONS)


@dataclass(frozen=True)
class ModerationFilter:
    status: str | None = None
    kind: str | None = None
    country: str | None = None
    q: str | None = None  # name, organisation or email

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ModerationFilter:
        """Raises FieldErrors (a BadValue) naming what is wrong."""
        read = FieldReader(params)
        status = read.option(
            "status", list(Status), f"`status` must be one of {', '.join(Status)}."
        )
        kind = read.option("kind", list(Kind), "`kind` must be individual or organisation.")
        country = read.country(
            "country", "`country` must be an ISO 3166-1 alpha-2 code such as IR."
        )
        q = read.search("q", MAX_QUERY_LENGTH)
        read.check()
        return cls(status, kind, country, q)

    def as_query(self) -> dict[str, str]:
        pairs = (("status", self.status), ("kind", self.kind), ("country", self.country),
                 ("q", self.q))  # fmt: skip
        return {k: v for k, v in pairs if v}


@dataclass(frozen=True)
class ModerationRow:
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
    # An organisation's signature that does not count while another one for the same
    # organisation (name and country) does: a second person signing for it.
    duplicate: bool = False
    # Why a held signature was held when confirmed, if not for the reasons above: its
    # network's or email domain's hourly limit (sign_limits.py), the block list.
    hold_reason: str | None = None


# The personal fields are sealed: the search finds keyed hashes (personal.py's blind
# index: words of the name and organisation, the email's domain, the email's hash),
# and the page opens the blob of each row it shows.
_LIST = f"""
SELECT s.id, s.public_id, s.kind, s.status, s.display, s.sealed, s.name, s.email,
       s.organisation, s.organisation_type, s.country, s.city, s.occupation, s.website,
       s.members, s.comment, s.updates, s.ref, v.version, s.created_at, s.verified_at,
       s.hold_reason, (s.kind = '{Kind.ORGANISATION}' AND NOT {counted_sql("s.status")}
        AND {ORGANISATION_ALREADY_COUNTED}) AS duplicate
  FROM signatures s
  LEFT JOIN statement_versions v ON v.id = s.version_id
 WHERE s.petition_id = $1
   AND ($2::text IS NULL OR s.status = $2)
   AND ($3::text IS NULL OR s.kind = $3)
   AND ($4::text IS NULL OR s.country = $4)
   AND (NOT $5::boolean
        OR ($6::bytea[] IS NOT NULL AND s.search_hashes @> $6::bytea[])
        OR s.search_hashes @> ARRAY[$7::bytea]
        OR s.email_hash = $8::bytea)
   AND ($9::bigint IS NULL OR s.id < $9)
 ORDER BY s.id DESC
 LIMIT $10
"""


async def list_signatures(
    db: Database,
    petition_id: int,
    filters: ModerationFilter,
    after: int | None = None,
    limit: int = PAGE_SIZE,
    *,
    cipher: Cipher,
    secret_key: str,
) -> tuple[list[ModerationRow], int | None]:
    """One page of signatures, newest first, and where the next page starts (None: last)."""
    words = domain = email = None
    if filters.q:
        words, domain, email = query_hashes(secret_key, filters.q)
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            _LIST,
            petition_id,
            filters.status,
            filters.kind,
            filters.country,
            bool(filters.q),
            words,
            domain,
            email,
            after,
            limit + 1,
        )
    page = [_row(cipher, r) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


def _row(cipher: Cipher, row) -> ModerationRow:
    values = {k: row[k] for k in ModerationRow.__dataclass_fields__ if k in row.keys()}
    values.update(personal_of(cipher, row))
    return ModerationRow(**values)


async def status_counts(db: Database, petition_id: int) -> dict[str, int]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM signatures WHERE petition_id = $1 GROUP BY status",
            petition_id,
        )
    counts = dict.fromkeys(Status, 0)
    counts.update({r["status"]: r["n"] for r in rows})
    return counts


# Actions --------------------------------------------------------------------------


async def moderate(
    db: Database, petition_id: int, admin_id: int, action: str, signature_ids: Sequence[int]
) -> int:
    """Apply `action` to those of the signatures it fits; return how many changed."""
    if action not in ACTION_NAMES:
        raise BadValue("Choose approve, reject or restore.")
    if not signature_ids:
        return 0
    async with raw_connection(db) as conn:
        return await signature.moderate(conn, petition_id, admin_id, action, signature_ids)


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


def parse_action(raw: object) -> str:
    if raw not in ACTION_NAMES:
        raise BadValue("Choose approve, reject or restore.")
    return raw  # type: ignore[return-value]
