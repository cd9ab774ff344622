"""The public signatory list: verified signatures, newest first, as each signer chose to appear.

Only this module decides what of a signature the public may see. Emails never
leave it; `initials` signers appear as initials, country and role; `anonymous`
signers are counted but never listed (nor found by a search).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import uuid
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from databases import Database

from .db import raw_connection
from .disclosure import public_time_text
from .fields import BadValue, FieldReader
from .i18n import _
from .keys import derive_key
from .signature import Display, Kind, counted_sql

MAX_QUERY_LENGTH = 100
MAX_PAGE_SIZE = 100


@lru_cache(maxsize=8)
def cursor_keys(secret_key: str) -> tuple[bytes, bytes]:
    """The keys of page cursors: one encrypts, one makes the nonce (see Cursor)."""
    aes_key = derive_key(secret_key, "page-cursor/aes-gcm")
    return aes_key, derive_key(secret_key, "page-cursor/nonce")


_CURSOR_PLAIN = struct.Struct(">q16s")  # microseconds since the epoch, public id
_CURSOR_BYTES = 12 + _CURSOR_PLAIN.size + 16  # nonce, ciphertext, tag
_CURSOR_CONTEXT = b"petitions/signatures-cursor/v1/"


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last entry's verification time and public id.

    Keyset pagination needs the exact time, which the public must not see
    (public times are no finer than the hour), so the `after` parameter is
    this pair encrypted and authenticated with AES-GCM under a key derived
    from SECRET_KEY, bound to the petition. The nonce is an HMAC of the
    petition and the pair (a synthetic IV): the same page always has the same
    address, so pages stay cacheable, and a nonce repeats only with its
    plaintext. A changed, cut or foreign cursor fails authentication: 400.
    """

    verified_at: datetime
    public_id: uuid.UUID

    def encode(self, secret_key: str, petition_id: int) -> str:
        aes_key, nonce_key = cursor_keys(secret_key)
        micros = (self.verified_at - _EPOCH) // _MICROSECOND
        plain = _CURSOR_PLAIN.pack(micros, self.public_id.bytes)
        context = _CURSOR_CONTEXT + str(petition_id).encode()
        nonce = hmac.new(nonce_key, context + plain, hashlib.sha256).digest()[:12]
        sealed = nonce + AESGCM(aes_key).encrypt(nonce, plain, context)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, secret_key: str, petition_id: int) -> Cursor:
        try:
            if len(text) > 100 or not text.isascii():
                raise ValueError
            sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            if len(sealed) != _CURSOR_BYTES:
                raise ValueError
            aes_key, _nonce_key = cursor_keys(secret_key)
            context = _CURSOR_CONTEXT + str(petition_id).encode()
            plain = AESGCM(aes_key).decrypt(sealed[:12], sealed[12:], context)
            micros, id_bytes = _CURSOR_PLAIN.unpack(plain)
            return cls(_EPOCH + micros * _MICROSECOND, uuid.UUID(bytes=id_bytes))
        except (ValueError, binascii.Error, InvalidTag, struct.error, OverflowError):
            raise BadValue(_("The page cursor `after` is not valid.")) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class ListFilter:
    kind: str | None = None
    country: str | None = None
    q: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ListFilter:
        """Raises FieldErrors (a BadValue) naming what is wrong."""
        read = FieldReader(params)
        kind = read.option("kind", list(Kind), _("`kind` must be individual or organisation."))
        country = read.country(
            "country", _("`country` must be an ISO 3166-1 alpha-2 code such as GB or IR.")
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
    organisation_type, members, website, comment, country, verified_at, initials"""


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
    countries: Container[str] = frozenset(),
) -> tuple[list[dict], Cursor | None]:
    """One page of public entries and the cursor of the next page (None on the last).

    `countries`: those the public may see named now (`disclosure.public_breakdown`);
    entries from any other country have no country, and a filter for one of them
    finds what a filter for a country nobody signed from finds: nothing, at once."""
    if filters.country and filters.country not in countries:
        return [], None
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
    entries = [public_entry(r, countries) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = Cursor(last["verified_at"], last["public_id"])
    return entries, next_cursor


def initials(text: str | None) -> str:
    words = [w for w in re.split(r"[\s\-'’.]+", text or "") if w]
    return "".join(w[0].upper() + "." for w in words[:4])


def public_entry(row, countries: Container[str] = frozenset()) -> dict:
    """What the public may see of one verified signature, by its display choice.

    Its country only if it is one of `countries` (those with enough signers to
    be named, see disclosure.py); its time rounded down to the hour."""
    entry: dict = {
        "id": str(row["public_id"]),
        "kind": row["kind"],
        "country": row["country"] if row["country"] in countries else None,
        "signed_at": public_time_text(row["verified_at"]),
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
    else:  # initials: as the form promises, initials, country and occupation (or type)
        # Precomputed when it was stored: the name itself is sealed (personal.py).
        entry["initials"] = _get(row, "initials") or initials(
            row["organisation"] if row["kind"] == "organisation" else row["name"]
        )
        if row["kind"] == "organisation":
            entry["organisation_type"] = row["organisation_type"]
        else:
            entry["occupation"] = row["occupation"]
    return entry


def _get(row, column: str):
    try:
        return row[column]
    except (KeyError, IndexError):
        return None
