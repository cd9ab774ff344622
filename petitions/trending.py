"""Trending: the networks and email domains signing fastest in the last hour against
their usual rate, and an alert to the admins when one rises far above it.

A source is a signature's keyed network hash (its /24 or /48) or keyed email-domain
hash: the site keeps neither in clear, so sources are shown by a short label of the
hash (invalidation.hash_label), and the links to act on one carry the whole hash.
The usual rate is the hourly average over the seven days before the last hour.

The outbox worker of every process checks every `CHECK_EVERY_SECONDS`
(delivery.py); a source whose last hour exceeds its usual rate by
TRENDING_ALERT_PER_HOUR gets one email to every active admin, at most once an hour
however many processes check (`trending_alerts` keeps when each was last told).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from databases import Database

from .db import raw_connection
from .invalidation import hash_label
from .mail import Mailer

log = logging.getLogger(__name__)

CHECK_EVERY_SECONDS = 300.0
USUAL_HOURS = 7 * 24
ALERT_INTERVAL = timedelta(hours=1)
MAX_SOURCES = 25
CANDIDATES = 200  # the busiest sources of the last hour whose usual rate is looked up


@dataclass(frozen=True)
class Source:
    kind: str  # "network" or "domain"
    hash: bytes
    last_hour: int
    usual: float  # signatures an hour, on average, in the seven days before
    petition_id: int  # the petition it signed most in the last hour
    petition_slug: str
    petition_title: str

    @property
    def label(self) -> str:
        return hash_label(self.hash)

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    @property
    def rise(self) -> float:
        return self.last_hour - self.usual


# The last hour's sources, then the usual rate of the busiest of them, each through
# the (hash, created_at) index of its kind.
_TRENDING = f"""
WITH hour AS (
    SELECT network_hash, domain_hash, petition_id FROM signatures
     WHERE created_at > $1::timestamptz - interval '1 hour' AND created_at <= $1
), sources AS (
    SELECT 'network' AS kind, network_hash AS hash, count(*) AS last_hour,
           mode() WITHIN GROUP (ORDER BY petition_id) AS petition_id
      FROM hour WHERE network_hash IS NOT NULL GROUP BY network_hash
    UNION ALL
    SELECT 'domain', domain_hash, count(*), mode() WITHIN GROUP (ORDER BY petition_id)
      FROM hour WHERE domain_hash IS NOT NULL GROUP BY domain_hash
    ORDER BY last_hour DESC
    LIMIT {CANDIDATES}
), rated AS (
    SELECT s.*,
           CASE WHEN s.kind = 'network' THEN
               (SELECT count(*) FROM signatures x WHERE x.network_hash = s.hash
                   AND x.created_at > $1::timestamptz - interval '1 hour' - interval '{USUAL_HOURS} hours'
                   AND x.created_at <= $1::timestamptz - interval '1 hour')
           ELSE
               (SELECT count(*) FROM signatures x WHERE x.domain_hash = s.hash
                   AND x.created_at > $1::timestamptz - interval '1 hour' - interval '{USUAL_HOURS} hours'
                   AND x.created_at <= $1::timestamptz - interval '1 hour')
           END::float8 / {USUAL_HOURS} AS usual
      FROM sources s
)
SELECT r.kind, r.hash, r.last_hour, r.usual, r.petition_id, p.slug, t.title
  FROM rated r
  JOIN petitions p ON p.id = r.petition_id
  JOIN LATERAL (SELECT t.title FROM statement_versions v
                  JOIN statement_texts t ON t.version_id = v.id
                 WHERE v.petition_id = p.id
                 ORDER BY v.version DESC, t.language = p.default_language DESC, t.language
                 LIMIT 1) t ON true
 ORDER BY r.last_hour - r.usual DESC, r.last_hour DESC, r.kind, r.hash
 LIMIT $2
"""


async def _trending(conn: asyncpg.Connection, now: datetime | None, limit: int) -> list[Source]:
    now = now or await conn.fetchval("SELECT now()")
    rows = await conn.fetch(_TRENDING, now, limit)
    return [
        Source(r["kind"], r["hash"], r["last_hour"], r["usual"], r["petition_id"], r["slug"],
               r["title"])
        for r in rows
    ]  # fmt: skip


async def trending(db: Database, now: datetime | None = None, limit: int = MAX_SOURCES):
    """The sources signing fastest in the hour before `now` against their usual rate,
    the fastest rise first."""
    async with raw_connection(db) as conn:
        return await _trending(conn, now, limit)


# Told now, unless told less than an hour ago: one process, one alert, per source.
_CLAIM = """
INSERT INTO trending_alerts AS t (source_kind, source_hash, alerted_at)
VALUES ($1, $2, $3)
ON CONFLICT (source_kind, source_hash) DO UPDATE SET alerted_at = excluded.alerted_at
 WHERE t.alerted_at <= excluded.alerted_at - $4::interval
RETURNING 1
"""

_ADMINS = "SELECT email FROM admins WHERE NOT disabled ORDER BY id"


async def send_alerts(
    db: Database, mailer: Mailer, threshold: int, now: datetime | None = None
) -> list[Source]:
    """Queue an alert to every active admin about the sources whose last hour exceeds
    their usual rate by `threshold` (0: none), each at most once an hour; return the
    sources alerted."""
    if threshold <= 0:
        return []
    async with raw_connection(db) as conn, conn.transaction():
        now = now or await conn.fetchval("SELECT now()")
        rising = [s for s in await _trending(conn, now, CANDIDATES) if s.rise >= threshold]
        alerted = [
            s for s in rising
            if await conn.fetchval(_CLAIM, s.kind, s.hash, now, ALERT_INTERVAL)
        ]  # fmt: skip
        if alerted:
            url = f"{mailer.settings.base_url}/admin/trending"
            for row in await conn.fetch(_ADMINS):
                message = mailer.trending_alert(row["email"], alerted, url)
                await mailer.enqueue(conn, message, "notice")
    if alerted:
        log.warning(
            "trending: %d source(s) far above their usual rate; admins alerted", len(alerted)
        )
    return alerted
