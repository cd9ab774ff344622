"""Petitions, their current statement version, and their counts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from databases import Database

from .db import raw_connection

PETITION_STATUSES = ("draft", "open", "closed", "archived")
# "This petition takes signatures now", in SQL, for a petition aliased `p`
# (the same rule as `Petition.accepts_signatures`).
TAKES_SIGNATURES_SQL = "p.status = 'open' AND (p.closes_at IS NULL OR p.closes_at > now())"
# When a petition aliased `p` stopped taking signatures for good: closed or archived
# (`closed_at`, kept by a trigger of migrations/0007_retention.sql) or past its
# closing time, whichever came first; NULL while it is a draft or still open.
CLOSED_SINCE_SQL = """CASE WHEN p.status IN ('closed', 'archived') THEN least(p.closed_at, p.closes_at)
     WHEN p.status = 'open' AND p.closes_at <= now() THEN p.closes_at END"""
# The same rules as the CHECK constraints in migrations/0001_schema.sql.
SLUG_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,78}[a-z0-9])?$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def valid_slug(slug: str) -> bool:
    return bool(SLUG_PATTERN.match(slug))


def valid_language(code: str) -> bool:
    return bool(LANGUAGE_PATTERN.match(code))


def _wanted_language(language: str | None) -> str:
    """A language asked for in a URL, if it is one; anything else means the default."""
    return language if language and valid_language(language) else ""


@dataclass(frozen=True)
class Petition:
    id: int
    slug: str
    status: str
    goal: int | None
    closes_at: datetime | None
    accepts_individuals: bool
    accepts_organisations: bool
    moderate_organisations: bool
    default_language: str
    published_at: datetime | None
    # The current statement version, in the language asked for (or the default).
    version_id: int
    version: int
    language: str
    languages: tuple[str, ...]
    title: str
    summary: str
    target: str
    body: str
    demands: tuple[str, ...]
    # Countries where signing this petition is dangerous: the sign form explains the
    # initials and anonymous choices to signers from them (migrations/0008).
    dangerous_countries: tuple[str, ...] = ()

    @property
    def is_public(self) -> bool:
        return self.status != "draft"

    @property
    def accepts_signatures(self) -> bool:
        if self.status != "open":
            return False
        return self.closes_at is None or self.closes_at > datetime.now(UTC)


@dataclass(frozen=True)
class Counts:
    individuals: int
    organisations: int
    by_country: tuple[tuple[str, int], ...]  # (code, verified signatures), most first
    updated_at: datetime | None

    @property
    def total(self) -> int:
        return self.individuals + self.organisations


# The newest statement version, and its text in the wanted language, falling back
# to the petition's default language.
_PETITION_SQL = """
SELECT p.id, p.slug, p.status, p.goal, p.closes_at, p.accepts_individuals,
       p.accepts_organisations, p.moderate_organisations, p.default_language, p.published_at,
       p.dangerous_countries,
       v.id AS version_id, v.version, t.language, t.title, t.summary, t.target, t.body, t.demands,
       (SELECT array_agg(language ORDER BY language)
          FROM statement_texts WHERE version_id = v.id) AS languages
  FROM petitions p
  JOIN LATERAL (SELECT id, version FROM statement_versions
                 WHERE petition_id = p.id ORDER BY version DESC LIMIT 1) v ON true
  JOIN LATERAL (SELECT * FROM statement_texts
                 WHERE version_id = v.id
                 ORDER BY language = $1 DESC, language = p.default_language DESC, language
                 LIMIT 1) t ON true
"""


def _petition(row: asyncpg.Record) -> Petition:
    values = dict(row)
    values["languages"] = tuple(values["languages"] or ())
    values["demands"] = tuple(values["demands"])
    values["dangerous_countries"] = tuple(values["dangerous_countries"] or ())
    return Petition(**values)


async def get_petition(db: Database, slug: str, language: str | None = None) -> Petition | None:
    if not valid_slug(slug):
        return None  # no such petition, and nothing to send to the database
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(
            _PETITION_SQL + " WHERE p.slug = $2", _wanted_language(language), slug
        )
    return _petition(row) if row else None


async def fetch_petition_by_id(
    conn: asyncpg.Connection, petition_id: int, language: str | None = None
) -> Petition | None:
    row = await conn.fetchrow(
        _PETITION_SQL + " WHERE p.id = $2", _wanted_language(language), petition_id
    )
    return _petition(row) if row else None


async def list_public_petitions(db: Database, language: str | None = None) -> list[Petition]:
    """Open petitions first, newest first; then closed ones. Drafts and archived are not listed."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            _PETITION_SQL
            + """ WHERE p.status IN ('open', 'closed')
                  ORDER BY p.status = 'open' DESC, p.published_at DESC NULLS LAST, p.id DESC
                  LIMIT 100""",
            _wanted_language(language),
        )
    return [_petition(r) for r in rows]


async def get_counts(db: Database, petition_id: int) -> Counts:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            """
            SELECT kind, country, sum(n)::bigint AS n, max(updated_at) AS updated_at
              FROM signature_tallies WHERE petition_id = $1
             GROUP BY kind, country
            """,
            petition_id,
        )
    return _counts(rows)


async def get_counts_for(db: Database, petition_ids: list[int]) -> dict[int, Counts]:
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            """
            SELECT petition_id, kind, country, sum(n)::bigint AS n, max(updated_at) AS updated_at
              FROM signature_tallies WHERE petition_id = ANY($1::bigint[])
             GROUP BY petition_id, kind, country
            """,
            petition_ids,
        )
    return {pid: _counts([r for r in rows if r["petition_id"] == pid]) for pid in petition_ids}


def _counts(rows) -> Counts:
    by_kind = {"individual": 0, "organisation": 0}
    by_country: dict[str, int] = {}
    updated = [r["updated_at"] for r in rows]
    for r in rows:
        by_kind[r["kind"]] += r["n"]
        if r["country"]:
            by_country[r["country"]] = by_country.get(r["country"], 0) + r["n"]
    countries = sorted(
        ((c, n) for c, n in by_country.items() if n > 0), key=lambda cn: (-cn[1], cn[0])
    )
    return Counts(
        individuals=by_kind["individual"],
        organisations=by_kind["organisation"],
        by_country=tuple(countries),
        updated_at=max(updated) if updated else None,
    )


@dataclass(frozen=True)
class StatementText:
    title: str
    summary: str = ""
    target: str = ""
    body: str = ""
    demands: tuple[str, ...] = ()


async def create_petition(
    conn: asyncpg.Connection,
    slug: str,
    texts: dict[str, StatementText],
    *,
    status: str = "draft",
    goal: int | None = None,
    closes_at: datetime | None = None,
    accepts_individuals: bool = True,
    accepts_organisations: bool = True,
    moderate_organisations: bool = False,
    default_language: str = "en",
    created_by: int | None = None,
    dangerous_countries: Sequence[str] = (),
) -> int:
    """Create a petition with statement version 1 in the given languages; return its id."""
    if default_language not in texts:
        raise ValueError("the statement needs a text in the petition's default language")
    async with conn.transaction():
        petition_id = await conn.fetchval(
            """
            INSERT INTO petitions (slug, status, goal, closes_at, accepts_individuals,
                                   accepts_organisations, moderate_organisations,
                                   default_language, published_at, dangerous_countries)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $2 = 'draft' THEN NULL ELSE now() END,
                    $9)
            RETURNING id
            """,
            slug, status, goal, closes_at, accepts_individuals, accepts_organisations,
            moderate_organisations, default_language, list(dangerous_countries),
        )  # fmt: skip
        version_id = await conn.fetchval(
            "INSERT INTO statement_versions (petition_id, version, created_by) "
            "VALUES ($1, 1, $2) RETURNING id",
            petition_id,
            created_by,
        )
        await conn.executemany(
            """
            INSERT INTO statement_texts (version_id, language, title, summary, target, body, demands)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """,
            [
                (version_id, lang, t.title, t.summary, t.target, t.body, list(t.demands))
                for lang, t in texts.items()
            ],
        )
    return petition_id


@dataclass(frozen=True)
class StatementVersion:
    version: int
    created_at: datetime
    note: str
    languages: tuple[str, ...]


async def statement_history(db: Database, petition_id: int) -> list[StatementVersion]:
    """Every version of a petition's statement, newest first."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            """
            SELECT v.version, v.created_at, v.note,
                   array(SELECT language FROM statement_texts t
                          WHERE t.version_id = v.id ORDER BY language) AS languages
              FROM statement_versions v
             WHERE v.petition_id = $1
             ORDER BY v.version DESC
            """,
            petition_id,
        )
    return [
        StatementVersion(r["version"], r["created_at"], r["note"], tuple(r["languages"]))
        for r in rows
    ]
