"""The public signatory list: verified signatures, newest first, as each signer chose to appear.

Only this module decides what of a signature the public may see. Emails never
leave it; `initials` signers appear as initials, country and role; `anonymous`
signers are counted but never listed (nor found by a search).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from databases import Database

from .db import raw_connection
from .fields import BadValue, FieldReader
from .signature import Display, Kind, counted_sql

MAX_QUERY_LENGTH = 100
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last entry's verification time and public id."""

    verified_at: datetime
    public_id: uuid.UUID

    def encode(self) -> str:
        micros = int(self.verified_at.timestamp() * 1_000_000)
        raw = f"{micros}.{self.public_id.hex}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            if len(text) > 100:
                raise ValueError
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            micros, hex_id = raw.split(".")
            when = datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
            return cls(when, uuid.UUID(hex=hex_id))
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError):
            raise BadValue("The page cursor `after` is not valid.") from None


@dataclass(frozen=True)
class ListFilter:
    kind: str | None = None
    country: str | None = None
    q: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ListFilter:
        """Raises FieldErrors (a BadValue) naming what is wrong."""
        read = FieldReader(params)
        kind = read.option("kind", list(Kind), "`kind` must be individual or organisation.")
        country = read.country(
            "country", "`country` must be an ISO 3166-1 alpha-2 code such as GB or IR."
        )
        q = read.search("q", MAX_QUERY_LENGTH)
        read.check()
        return cls(kind, country, q)

    def as_query(self) -> dict[str, str]:
        return {
            k: v for k, v in (("kind", self.kind), ("country", self.country), ("q", self.q)) if v
        }


def search_query(q: str) -> str:
    """A tsquery matching every word of `q` as a prefix ("mar silv" finds "Maria Silva")."""
    words = re.findall(r"\w+", q)[:8]
    if not words:
        return ""  # an empty query matches nothing
    return " & ".join(f"'{word}':*" for word in words)


SEARCH_TIMEOUT = "3s"
_PUBLIC_COLUMNS = """public_id, kind, display, name, city, occupation, organisation,
    organisation_type, members, website, comment, country, verified_at"""


class ListTooSlow(Exception):
    """A search matched so much that listing it would hold the database up."""


def _list_query(petition_id: int, filters: ListFilter, after: Cursor | None, limit: int):
    """The SQL for one page, with only the conditions in use (each shape gets its own
    plan, so the kind, country and search indexes are used when they help)."""
    args: list = [petition_id]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["petition_id = $1", counted_sql(), f"display <> '{Display.ANONYMOUS}'"]
    if filters.q:
        # A search only matches what each signer agreed to show (see
        # public_search_vector in migrations/0003_search.sql).
        where.append(
            "public_search_vector(display, name, organisation, city, occupation)"
            f" @@ to_tsquery('simple', {arg(search_query(filters.q))})"
        )
    if filters.kind:
        where.append(f"kind = {arg(filters.kind)}")
    if filters.country:
        where.append(f"country = {arg(filters.country)}")
    if after:
        where.append(
            f"(verified_at, public_id) < ({arg(after.verified_at)}, {arg(after.public_id)})"
        )
    select = f"""SELECT {_PUBLIC_COLUMNS} FROM signatures WHERE {" AND ".join(where)}"""
    order = f"ORDER BY verified_at DESC, public_id DESC LIMIT {arg(limit + 1)}"
    if filters.q:
        # Matches are found through the GIN index first, then ordered: left to
        # itself the planner may walk the whole list in order looking for a rare word.
        sql = f"WITH found AS MATERIALIZED ({select}) SELECT * FROM found {order}"
    else:
        sql = f"{select} {order}"
    return sql, args


async def list_signatories(
    db: Database,
    petition_id: int,
    filters: ListFilter = ListFilter(),
    after: Cursor | None = None,
    limit: int = 50,
) -> tuple[list[dict], Cursor | None]:
    """One page of public entries and the cursor of the next page (None on the last)."""
    sql, args = _list_query(petition_id, filters, after, limit)
    async with raw_connection(db) as conn:
        if filters.q:
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL statement_timeout = '{SEARCH_TIMEOUT}'")
                    rows = await conn.fetch(sql, *args)
            except asyncpg.QueryCanceledError:
                raise ListTooSlow from None
        else:
            rows = await conn.fetch(sql, *args)
    entries = [public_entry(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = Cursor(last["verified_at"], last["public_id"])
    return entries, next_cursor


def initials(text: str | None) -> str:
    words = [w for w in re.split(r"[\s\-'’.]+", text or "") if w]
    return "".join(w[0].upper() + "." for w in words[:4])


def public_entry(row) -> dict:
    """What the public may see of one verified signature, by its display choice."""
    entry: dict = {
        "id": str(row["public_id"]),
        "kind": row["kind"],
        "country": row["country"],
        "signed_at": row["verified_at"].isoformat(),
    }
    if row["display"] == Display.PUBLIC:
        entry["name"] = row["name"]
        entry["city"] = row["city"]
        entry["occupation"] = row["occupation"]
        entry["comment"] = row["comment"]
        if row["kind"] == "organisation":
            entry["organisation"] = row["organisation"]
            entry["organisation_type"] = row["organisation_type"]
            entry["members"] = row["members"]
            entry["website"] = row["website"]
    else:  # initials
        entry["initials"] = initials(
            row["organisation"] if row["kind"] == "organisation" else row["name"]
        )
        entry["occupation"] = row["occupation"]
        if row["kind"] == "organisation":
            entry["organisation_type"] = row["organisation_type"]
    return entry
