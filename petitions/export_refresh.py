"""Making the export's sealed blocks (export_blocks.py) in the background.

The worker runs `refresh_periodically`: every REFRESH_EVERY_SECONDS, and straight
on while there is more to make, a pass finds the petitions with emptied blocks or
a block's worth of confirmed signatures past their last block, and makes up to
BLOCKS_PER_PASS blocks (about 0.3 s of work: each block is written a COPY chunk at
a time, so the process goes on answering meanwhile). One process at a time makes
blocks; the others skip the pass.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from databases import Database

from . import export_blocks
from .crypto import Cipher, cipher_for
from .db import open_database, raw_connection, wait_for_any
from .export import ExportFilter, copy_lines
from .settings import Settings

log = logging.getLogger(__name__)

BLOCKS_PER_PASS = 25
REFRESH_EVERY_SECONDS = 30.0
REFRESH_LOCK_KEY = 7_342_011  # a session lock, as retention.py's (the worker's own connection)

# Petitions with an emptied block due to be made again, or with a block's worth of
# confirmed signatures (the tallies count them) past what their blocks hold.
_TO_REFRESH = """
SELECT petition_id FROM export_blocks
 WHERE sealed IS NULL AND made_at <= now() - make_interval(secs => $2)
UNION
SELECT t.petition_id
  FROM (SELECT petition_id, sum(n) AS confirmed FROM signature_tallies GROUP BY 1) AS t
  LEFT JOIN (SELECT petition_id, sum(signatures) AS held FROM export_blocks GROUP BY 1) AS b
       USING (petition_id)
 WHERE t.confirmed - coalesce(b.held, 0) >= $1
 ORDER BY 1
"""


async def refresh(db: Database, cipher: Cipher, limit: int = BLOCKS_PER_PASS) -> int:
    """Try to make up to `limit` blocks where they are missing or emptied; return how
    many were made (0 when another process is making blocks)."""
    async with raw_connection(db) as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", REFRESH_LOCK_KEY):
            return 0
        try:
            return await _refresh(conn, cipher, limit)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", REFRESH_LOCK_KEY)


async def _refresh(conn: asyncpg.Connection, cipher: Cipher, limit: int) -> int:
    tried = made = 0
    due = (export_blocks.BLOCK_SIGNATURES, export_blocks.REMAKE_AFTER_SECONDS)
    for (petition_id,) in await conn.fetch(_TO_REFRESH, *due):
        ranges = await export_blocks.ranges_to_make(conn, petition_id, limit - tried)

        async def write_lines(conn, first_id, last_id, write, petition_id=petition_id) -> None:
            await copy_lines(
                conn, petition_id, ExportFilter(), write, cipher=cipher,
                first_id=first_id, last_id=last_id,
            )  # fmt: skip

        for first_id, last_id in ranges:
            if await export_blocks.make(conn, cipher, petition_id, first_id, last_id, write_lines):
                made += 1
            else:
                log.debug("an export block changed while it was made; made again next pass")
            tried += 1
        if tried >= limit:
            break
    return made


async def make_all(database_url: str, settings: Settings) -> int:
    """Make every block there is to make now (`petitions demo` after a bulk load);
    return how many were made."""
    cipher = cipher_for(settings)
    db = open_database(database_url, max_size=1)
    await db.connect()
    try:
        made = 0
        while batch := await refresh(db, cipher):
            made += batch
        return made
    finally:
        await db.disconnect()


async def refresh_periodically(db: Database, settings: Settings, stop: asyncio.Event) -> None:
    cipher = cipher_for(settings)
    while not stop.is_set():
        made = 0
        try:
            made = await refresh(db, cipher)
        except Exception:  # the database may be restarting: log, and try at the next turn
            log.exception("making the export's blocks failed; trying again later")
        more = made >= BLOCKS_PER_PASS  # (blocks that failed wait for the next turn)
        await wait_for_any(stop, at_most=0.01 if more else REFRESH_EVERY_SECONDS)
