"""The campaign's figures: every petition at a glance, and one petition in detail.

Verified counts come from the tallies; the other statuses are counted through
the (petition, status) index, and the daily series through the public-list
index, so even a petition with a million signatures answers quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from databases import Database

from .db import raw_connection
from .log_keys import SHORT_HEX
from .signature import Status

DAYS_SHOWN = 90
COUNTRIES_SHOWN = 15
REFS_SHOWN = 10


@dataclass(frozen=True)
class PetitionOverview:
    id: int
    slug: str
    title: str
    status: str
    goal: int | None
    published_at: datetime | None
    closes_at: datetime | None
    verified: int
    pending: int
    held: int
    # The transparency log's latest signed head (None before the first is signed).
    log_size: int | None = None
    log_root: bytes | None = None
    log_count: int | None = None

    @property
    def log_short(self) -> str | None:
        """The head's short form, as the petition page and the emails print it."""
        if self.log_size is None:
            return None
        return f"{self.log_size}:{self.log_root.hex()[:SHORT_HEX]}"


_STATUS_ORDER = "array_position(ARRAY['open', 'draft', 'closed', 'archived'], p.status)"


async def petition_overviews(db: Database) -> list[PetitionOverview]:
    """Every petition, drafts and archived ones too: open first, then newest."""
    async with raw_connection(db) as conn:
        rows = await conn.fetch(
            f"""
            SELECT p.id, p.slug, t.title, p.status, p.goal, p.published_at, p.closes_at,
                   (SELECT coalesce(sum(n), 0) FROM signature_tallies
                     WHERE petition_id = p.id)::bigint AS verified,
                   (SELECT count(*) FROM signatures
                     WHERE petition_id = p.id AND status = 'pending') AS pending,
                   (SELECT count(*) FROM signatures
                     WHERE petition_id = p.id AND status = 'held') AS held,
                   h.size AS log_size, h.root_hash AS log_root, h.count AS log_count
              FROM petitions p
              LEFT JOIN LATERAL (SELECT size, root_hash, count FROM log_heads
                                  WHERE petition_id = p.id
                                  ORDER BY size DESC LIMIT 1) h ON true
              JOIN LATERAL (SELECT id FROM statement_versions WHERE petition_id = p.id
                             ORDER BY version DESC LIMIT 1) v ON true
              JOIN LATERAL (SELECT title FROM statement_texts WHERE version_id = v.id
                             ORDER BY language = p.default_language DESC, language
                             LIMIT 1) t ON true
             ORDER BY {_STATUS_ORDER}, p.created_at DESC, p.id DESC
            """
        )
    return [PetitionOverview(**dict(r)) for r in rows]


@dataclass(frozen=True)
class PetitionStats:
    statuses: dict[str, int]
    days: list[tuple[date, int]]  # verified per day (UTC), oldest first, gaps filled with 0
    countries: list[tuple[str, int]]  # verified per country, most first
    refs: list[tuple[str, int]]  # verified per referrer code, most first
    no_country: int

    @property
    def verified(self) -> int:
        return self.statuses["verified"]


async def petition_stats(
    db: Database, petition_id: int, since: datetime | None, today: date | None = None
) -> PetitionStats:
    """Figures for one petition; the daily series starts at `since` (its publication),
    at most DAYS_SHOWN days back."""
    today = today or datetime.now(UTC).date()
    first_day = today - timedelta(days=DAYS_SHOWN - 1)
    if since is not None:
        first_day = min(max(first_day, since.astimezone(UTC).date()), today)
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    async with raw_connection(db) as conn:
        statuses = await conn.fetch(
            "SELECT status, count(*) AS n FROM signatures WHERE petition_id = $1 GROUP BY status",
            petition_id,
        )
        daily = await conn.fetch(
            """
            SELECT (verified_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
              FROM signatures
             WHERE petition_id = $1 AND status = 'verified' AND verified_at >= $2
             GROUP BY 1
            """,
            petition_id,
            start,
        )
        countries = await conn.fetch(
            """
            SELECT country, sum(n)::bigint AS n FROM signature_tallies
             WHERE petition_id = $1 GROUP BY country HAVING sum(n) > 0
             ORDER BY n DESC, country
            """,
            petition_id,
        )
        refs = await conn.fetch(
            """
            SELECT ref, count(*) AS n FROM signatures
             WHERE petition_id = $1 AND status = 'verified' AND ref IS NOT NULL
             GROUP BY ref ORDER BY n DESC, ref LIMIT $2
            """,
            petition_id,
            REFS_SHOWN,
        )
    by_status = dict.fromkeys(Status, 0)
    by_status.update({r["status"]: r["n"] for r in statuses})
    per_day = {r["day"]: r["n"] for r in daily}
    days = [
        (first_day + timedelta(days=i), per_day.get(first_day + timedelta(days=i), 0))
        for i in range((today - first_day).days + 1)
    ]
    return PetitionStats(
        statuses=by_status,
        days=days,
        countries=[(r["country"], r["n"]) for r in countries if r["country"]],
        refs=[(r["ref"], r["n"]) for r in refs],
        no_country=sum(r["n"] for r in countries if not r["country"]),
    )


def top_countries(
    countries: list[tuple[str, int]], shown: int = COUNTRIES_SHOWN
) -> list[tuple[str, int]]:
    """The first `shown` countries, and the rest together as ("", n)."""
    top = countries[:shown]
    rest = sum(n for _, n in countries[shown:])
    return top + ([("", rest)] if rest else [])
