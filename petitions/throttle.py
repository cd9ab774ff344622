"""Counting attempts per bucket (an email, a network) over a sliding period, in PostgreSQL.

Hits are kept in one row per bucket and minute (`throttle_counters`), so every
app process sees the same counts and a period is the sum of its minutes.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg


async def recent_hits(conn: asyncpg.Connection, bucket: str, period: timedelta) -> int:
    return await conn.fetchval(
        """
        SELECT coalesce(sum(hits), 0)::int FROM throttle_counters
         WHERE bucket = $1 AND window_start > now() - $2::interval
        """,
        bucket,
        period,
    )


async def add_hit(conn: asyncpg.Connection, bucket: str) -> None:
    await conn.execute(
        """
        INSERT INTO throttle_counters AS t (bucket, window_start, hits)
        VALUES ($1, date_trunc('minute', now()), 1)
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = t.hits + 1
        """,
        bucket,
    )


async def remove_hit(conn: asyncpg.Connection, bucket: str) -> None:
    """Take back this minute's hit (an attempt that turned out to be fine)."""
    await conn.execute(
        """
        UPDATE throttle_counters SET hits = hits - 1
         WHERE bucket = $1 AND window_start = date_trunc('minute', now()) AND hits > 0
        """,
        bucket,
    )


async def forget(conn: asyncpg.Connection, bucket: str) -> None:
    await conn.execute("DELETE FROM throttle_counters WHERE bucket = $1", bucket)


async def drop_old(conn: asyncpg.Connection, prefix: str, older_than: timedelta) -> None:
    """Delete the counters of one kind (a bucket prefix) that no period still needs."""
    await conn.execute(
        "DELETE FROM throttle_counters WHERE starts_with(bucket, $1) "
        "AND window_start < now() - $2::interval",
        prefix,
        older_than,
    )


async def seconds_until_below(
    conn: asyncpg.Connection, bucket: str, period: timedelta, limit: int
) -> int:
    """How long until the bucket's hits within the period drop below the limit
    (at least 1 second when they are at or over it now, 0 when they are below)."""
    return await conn.fetchval(
        """
        SELECT coalesce(max(greatest(1, ceil(extract(epoch FROM w + $2::interval - now()))))::int, 0)
          FROM (SELECT window_start AS w,
                       sum(hits) OVER (ORDER BY window_start DESC) AS newer_hits
                  FROM throttle_counters
                 WHERE bucket = $1 AND window_start > now() - $2::interval) AS windows
         WHERE newer_hits >= $3
        """,
        bucket,
        period,
        limit,
    )
