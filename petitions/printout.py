"""The delivery document's list: a petition's public signatories in the order they are handed over.

Organisations first, grouped by organisation type, then by country; then
individuals by country. Each entry is exactly what the public list shows of
it (`signatories.public_entry`, read from the clear columns, so nothing is
decrypted): anonymous signers are counted but never listed, `initials` signers
appear as initials. A country is named only when `disclosure.py` allows it;
the others come last in each section, together and unnamed.

The grouping is the database's ORDER BY, read through a server-side cursor a
batch at a time, so a million signatures never sit in memory at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg

from .db import fetch_in_batches
from .signatories import public_entry
from .signature import Display, Kind, OrganisationType, counted_sql

FETCH_ROWS = 1000

TYPE_ORDER = [t.value for t in OrganisationType]


@dataclass(frozen=True)
class Group:
    kind: str
    organisation_type: str | None  # organisations only
    country: str | None  # None: the countries too small to be named, together


def group_of(entry: dict) -> Group:
    if entry["kind"] == Kind.ORGANISATION:
        kind_type = entry.get("organisation_type") or OrganisationType.OTHER.value
        return Group(Kind.ORGANISATION, kind_type, entry["country"])
    return Group(Kind.INDIVIDUAL, None, entry["country"])


_LISTED = f"""
SELECT public_id, kind, display, name, city, occupation, organisation,
       organisation_type,
       members, website, comment, country, verified_at, initials
  FROM signatures
 WHERE petition_id = $1 AND {counted_sql()} AND display <> '{Display.ANONYMOUS}'
 ORDER BY kind = '{Kind.ORGANISATION}' DESC,
          array_position($2::text[], coalesce(organisation_type, '{OrganisationType.OTHER}')),
          array_position($3::text[], country) NULLS LAST,
          verified_at, public_id
"""


async def listed_signatories(
    conn: asyncpg.Connection, petition_id: int, named_countries: Sequence[str]
) -> AsyncIterator[list[tuple[Group, dict]]]:
    """Batches of (group, public entry) in document order, from one snapshot.

    `named_countries`: the countries that may be named, in the order their groups
    appear (by name in the reader's language); any other country's signers come
    after them in their section, with no country."""
    named = list(named_countries)
    allowed = frozenset(named)
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        batches = fetch_in_batches(conn, _LISTED, petition_id, TYPE_ORDER, named, rows=FETCH_ROWS)
        async for rows in batches:
            batch = []
            for row in rows:
                entry = public_entry(row, allowed)
                batch.append((group_of(entry), entry))
            yield batch
