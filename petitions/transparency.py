"""The transparency log of each petition: storage, the sequencer, signed heads, proofs.

Every change of a petition's count is a leaf of an append-only Merkle log (RFC 9162
hashing, merkle.py; the leaf format in log_format.py): `add` when a signature starts
to count, `remove` when it stops (withdrawn, rejected, invalidated, deleted),
`restore` when it counts again. Signed tree heads (log_keys.py) over the log let
anyone check the count without seeing a signer (docs/integrity.md).

How a change gets in: the triggers of migrations/0014_transparency_log.sql write
each change as a row of its own in `log_queue`, in the transaction that makes it,
so confirming never waits on a row every other confirmation updates. The
sequencer (one process at a time per petition, under an advisory lock) takes
committed rows in order, decides add or restore and which leaf a remove names,
appends the leaves and the hashes of the complete subtrees of TILE leaves and
more, and `sign_due_heads` signs a head when the log has grown (at most every
LOG_HEAD_SECONDS). bench/log_cost.py measured this against appending inside the
confirming transaction (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from databases import Database

from . import merkle
from .db import asyncpg_dsn, listen_forever, raw_connection, wait_for_any
from .log_format import REASONS, Leaf
from .log_keys import LogKey, TreeHead, hour_text, log_key_for, sign_head
from .settings import Settings

log = logging.getLogger(__name__)

TILE_LEVEL = 8  # complete subtrees of 2**8 leaves and more are stored; smaller ones hashed
TILE = 1 << TILE_LEVEL
SEQUENCE_BATCH = 5000
LOG_LOCK = 0x7E0C  # advisory lock class: one sequencer or signer per petition at a time
RECEIPT_PREFIX = b"petitions-receipt-v1\x00"
# Every change of a count notifies this channel (migrations/0002_events.sql's triggers).
COUNT_CHANGES_CHANNEL = "petition_events"


class LogDamaged(RuntimeError):
    """A stored hash the log needs is missing: the log tables were changed by hand."""


def receipt_commitment(secret: bytes) -> bytes:
    """What an add leaf holds of a receipt: nothing anyone can turn back into it."""
    return hashlib.sha256(RECEIPT_PREFIX + secret).digest()


def origin_of(base_url: str, slug: str) -> str:
    """A petition's log is named by its public address (a slug is fixed once published)."""
    return f"{base_url}/p/{slug}"


# The sequencer --------------------------------------------------------------------


async def sequence(db: Database, batch: int = SEQUENCE_BATCH) -> int:
    """Append every committed change waiting in the queue to its petition's log;
    return how many leaves were appended."""
    appended = 0
    async with raw_connection(db) as conn:
        petitions = await conn.fetch("SELECT DISTINCT petition_id FROM log_queue")
        for row in petitions:
            while True:
                taken, leaves = await _sequence_batch(conn, row["petition_id"], batch)
                appended += leaves
                if taken < batch:
                    break
    return appended


_TAKE = """
DELETE FROM log_queue
 WHERE id IN (SELECT id FROM log_queue WHERE petition_id = $1 ORDER BY id LIMIT $2)
RETURNING id, signature_id, counted, reason, hour, version, commitment
"""

# For each add leaf, whether it counts now: the latest remove or restore naming it.
_COUNTING = """
SELECT a.leaf_index, a.signature_id,
       coalesce((SELECT c.kind <> 'remove' FROM log_leaves c
                  WHERE c.petition_id = a.petition_id AND c.target = a.leaf_index
                  ORDER BY c.leaf_index DESC LIMIT 1), true) AS counting
  FROM log_leaves a
 WHERE a.petition_id = $1 AND a.signature_id = ANY($2::bigint[]) AND a.kind = 'add'
"""


async def _sequence_batch(conn: asyncpg.Connection, petition_id: int, batch: int):
    """Take up to `batch` queued changes of one petition and append their leaves, in
    one transaction; (changes taken, leaves appended). (0, 0) when another process
    holds the petition's log."""
    async with conn.transaction():
        if not await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, $2)", LOG_LOCK, petition_id
        ):
            return 0, 0
        queued = sorted(await conn.fetch(_TAKE, petition_id, batch), key=lambda r: r["id"])
        if not queued:
            return 0, 0
        size, count = await _state(conn, petition_id)
        last_hour = await conn.fetchval(
            "SELECT hour FROM log_leaves WHERE petition_id = $1 AND leaf_index = $2",
            petition_id, size - 1,
        )  # fmt: skip
        known = await conn.fetch(_COUNTING, petition_id, [q["signature_id"] for q in queued])
        add_leaf = {r["signature_id"]: r["leaf_index"] for r in known}
        counting = {r["leaf_index"]: r["counting"] for r in known}
        leaves: list[tuple[Leaf, int | None, object]] = []
        for change in queued:
            hour = change["hour"] if last_hour is None else max(change["hour"], last_hour)
            last_hour = hour
            index = size + len(leaves)
            target = add_leaf.get(change["signature_id"])
            if change["counted"] and target is None:
                commitment = change["commitment"] or os.urandom(32)  # no receipt to match
                leaf = Leaf(index, "add", hour_text(hour), change["version"] or 0, commitment)
                add_leaf[change["signature_id"]] = index
                counting[index] = True
                count += 1
            elif change["counted"] and not counting[target]:
                leaf = Leaf(index, "restore", hour_text(hour), target=target)
                counting[target] = True
                count += 1
            elif not change["counted"] and target is not None and counting[target]:
                reason = change["reason"] if change["reason"] in REASONS else "deleted"
                leaf = Leaf(index, "remove", hour_text(hour), target=target, reason=reason)
                counting[target] = False
                count -= 1
            else:
                # Nothing changes in the count (a change made and undone before the log
                # saw the first): nothing to log.
                continue
            signature_id = change["signature_id"] if leaf.kind == "add" else None
            leaves.append((leaf, signature_id, hour))
        if leaves:
            await _append(conn, petition_id, size, leaves)
        await conn.execute(
            "UPDATE log_state SET size = $2, count = $3 WHERE petition_id = $1",
            petition_id, size + len(leaves), count,
        )  # fmt: skip
        return len(queued), len(leaves)


async def _state(conn: asyncpg.Connection, petition_id: int) -> tuple[int, int]:
    await conn.execute(
        "INSERT INTO log_state (petition_id) VALUES ($1) ON CONFLICT DO NOTHING", petition_id
    )
    row = await conn.fetchrow(
        "SELECT size, count FROM log_state WHERE petition_id = $1", petition_id
    )
    return row["size"], row["count"]


async def _append(conn: asyncpg.Connection, petition_id: int, size: int, leaves) -> None:
    """Write the leaves after `size` and the stored subtrees they complete."""
    hashes = [merkle.leaf_hash(leaf.data()) for leaf, _, _ in leaves]
    await conn.copy_records_to_table(
        "log_leaves",
        columns=(
            "petition_id", "leaf_index", "kind", "hour", "version", "commitment", "target",
            "reason", "leaf_hash", "signature_id",
        ),
        records=[
            (
                petition_id, leaf.index, leaf.kind, hour, leaf.version, leaf.commitment,
                leaf.target, leaf.reason, leaf_hash, signature_id,
            )
            for (leaf, signature_id, hour), leaf_hash in zip(leaves, hashes, strict=True)
        ],
    )  # fmt: skip
    new_size = size + len(leaves)
    # The complete subtrees of TILE leaves this batch finished, from the leaves...
    nodes: dict[tuple[int, int], bytes] = {}
    first_block = size // TILE
    for block in range(first_block, new_size // TILE):
        start = block * TILE
        if start < size:  # begun by an earlier batch
            earlier = await conn.fetch(
                "SELECT leaf_hash FROM log_leaves WHERE petition_id = $1"
                " AND leaf_index >= $2 AND leaf_index < $3 ORDER BY leaf_index",
                petition_id, start, size,
            )  # fmt: skip
            block_hashes = [r["leaf_hash"] for r in earlier] + hashes[: start + TILE - size]
        else:
            block_hashes = hashes[start - size : start - size + TILE]
        nodes[(TILE_LEVEL, block)] = merkle.root_of(block_hashes)
    # ...and the larger ones above them, from their two halves.
    level = TILE_LEVEL + 1
    while (1 << level) <= new_size:
        finished = range(size >> level, new_size >> level)
        if finished:
            wanted = [
                (level - 1, child)
                for index in finished
                for child in (2 * index, 2 * index + 1)
                if (level - 1, child) not in nodes
            ]
            children = {**nodes, **await _stored_nodes(conn, petition_id, wanted)}
            for index in finished:
                nodes[(level, index)] = merkle.node_hash(
                    children[(level - 1, 2 * index)], children[(level - 1, 2 * index + 1)]
                )
        level += 1
    if nodes:
        await conn.copy_records_to_table(
            "log_nodes",
            columns=("petition_id", "level", "node_index", "hash"),
            records=[(petition_id, lv, i, h) for (lv, i), h in nodes.items()],
        )


async def _stored_nodes(conn, petition_id: int, wanted: Iterable[tuple[int, int]]) -> dict:
    wanted = list(wanted)
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT level, node_index, hash FROM log_nodes n
            WHERE petition_id = $1
              AND (level, node_index) IN (SELECT * FROM unnest($2::smallint[], $3::bigint[]))""",
        petition_id, [lv for lv, _ in wanted], [i for _, i in wanted],
    )  # fmt: skip
    found = {(r["level"], r["node_index"]): r["hash"] for r in rows}
    if len(found) != len(set(wanted)):
        raise LogDamaged(f"stored subtree hashes of petition {petition_id} are missing")
    return found


async def _subtree_hashes(conn, petition_id: int, wanted: Iterable[tuple[int, int]]) -> dict:
    """The hashes of complete subtrees (level, index): stored ones read, smaller ones
    hashed from their block's leaves."""
    wanted = set(wanted)
    found = await _stored_nodes(conn, petition_id, [w for w in wanted if w[0] >= TILE_LEVEL])
    small = [w for w in wanted if w[0] < TILE_LEVEL]
    blocks: dict[int, list[bytes]] = {}
    for level, index in small:
        start = index << level
        block = start // TILE
        if block not in blocks:
            rows = await conn.fetch(
                "SELECT leaf_hash FROM log_leaves WHERE petition_id = $1"
                " AND leaf_index >= $2 AND leaf_index < $3 ORDER BY leaf_index",
                petition_id, block * TILE, (block + 1) * TILE,
            )  # fmt: skip
            blocks[block] = [r["leaf_hash"] for r in rows]
        offset = start - block * TILE
        piece = blocks[block][offset : offset + (1 << level)]
        if len(piece) != 1 << level:
            raise LogDamaged(f"leaves of petition {petition_id} are missing")
        found[(level, index)] = merkle.root_of(piece)
    return found


async def _range_hashes(conn, petition_id: int, ranges: list[tuple[int, int]]) -> list[bytes]:
    """MTH of each [start, end) leaf range, reading each stored subtree once."""
    pieces = [merkle.complete_subtrees(start, end) for start, end in ranges]
    hashes = await _subtree_hashes(conn, petition_id, {p for ps in pieces for p in ps})
    return [merkle.combine([hashes[p] for p in ps]) for ps in pieces]


async def tree_root(conn: asyncpg.Connection, petition_id: int, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    return (await _range_hashes(conn, petition_id, [(0, size)]))[0]


# Signed tree heads ------------------------------------------------------------------

_DUE_FOR_A_HEAD = """
SELECT p.id, p.slug
  FROM petitions p
  LEFT JOIN log_state st ON st.petition_id = p.id
  LEFT JOIN LATERAL (SELECT size, created_at FROM log_heads h
                      WHERE h.petition_id = p.id ORDER BY size DESC LIMIT 1) last ON true
 WHERE p.published_at IS NOT NULL
   AND (last.size IS NULL
        OR (coalesce(st.size, 0) > last.size
            AND last.created_at <= now() - make_interval(secs => $1)))
"""


async def sign_due_heads(db: Database, key: LogKey, base_url: str, every_seconds: float) -> int:
    """Sign a head for every published petition whose log grew since its last head,
    once that head is `every_seconds` old, and a first head (of size 0, perhaps) for
    those that have none; return how many were signed."""
    signed = 0
    async with raw_connection(db) as conn:
        for row in await conn.fetch(_DUE_FOR_A_HEAD, float(every_seconds)):
            head = await sign_current_head(conn, key, row["id"], origin_of(base_url, row["slug"]))
            signed += head is not None
    return signed


async def sign_current_head(
    conn: asyncpg.Connection, key: LogKey, petition_id: int, origin: str
) -> TreeHead | None:
    """Sign a head over the whole log as it stands (None: another process is at it,
    or the latest head already covers it)."""
    async with conn.transaction():
        if not await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, $2)", LOG_LOCK, petition_id
        ):
            return None
        size, count = await _state(conn, petition_id)
        if await conn.fetchval(
            "SELECT 1 FROM log_heads WHERE petition_id = $1 AND size >= $2", petition_id, size
        ):
            return None
        root = await tree_root(conn, petition_id, size)
        now = await conn.fetchval("SELECT now()")
        head = sign_head(key, origin, size, root, count, hour_text(now))
        await conn.execute(
            """INSERT INTO log_heads (petition_id, size, root_hash, count, origin, time,
                                      key_id, public_key, signature)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            petition_id, head.size, head.root, head.count, head.origin, head.time,
            head.key_id, head.public_key, head.signature,
        )  # fmt: skip
        return head


async def run_sequencer(
    db: Database, settings: Settings, stop: asyncio.Event, poll_seconds: float = 1.0
) -> None:
    """Sequence and sign until `stop` is set: whenever some count changes, in any
    process (the live-event triggers' notifications), and every `poll_seconds` anyway."""
    key = log_key_for(settings)
    wakeup = asyncio.Event()

    async def connected() -> None:
        wakeup.set()

    listener = asyncio.create_task(
        listen_forever(
            asyncpg_dsn(settings.database_url), COUNT_CHANGES_CHANNEL,
            on_notify=lambda _payload: wakeup.set(), on_connected=connected,
            application_name="petitions log sequencer",
        ),
        name="log-sequencer-listener",
    )  # fmt: skip
    try:
        while not stop.is_set():
            wakeup.clear()
            try:
                await sequence(db)
                await sign_due_heads(db, key, settings.base_url, settings.log_head_seconds)
            except Exception:  # the database may be restarting: log, wait, go on
                log.exception("sequencing the transparency logs failed; trying again shortly")
            await wait_for_any(wakeup, stop, at_most=poll_seconds)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


# Reading the log ----------------------------------------------------------------------

_HEAD_COLUMNS = "origin, size, root_hash, count, time, key_id, public_key, signature"


def _head(row) -> TreeHead:
    return TreeHead(
        row["origin"], row["size"], row["root_hash"], row["count"], row["time"],
        row["key_id"], row["public_key"], row["signature"],
    )  # fmt: skip


async def latest_head(conn: asyncpg.Connection, petition_id: int) -> TreeHead | None:
    row = await conn.fetchrow(
        f"SELECT {_HEAD_COLUMNS} FROM log_heads WHERE petition_id = $1 ORDER BY size DESC LIMIT 1",
        petition_id,
    )
    return _head(row) if row else None


async def heads_after(conn, petition_id: int, after: int, limit: int) -> list[TreeHead]:
    rows = await conn.fetch(
        f"SELECT {_HEAD_COLUMNS} FROM log_heads WHERE petition_id = $1 AND size > $2"
        " ORDER BY size LIMIT $3",
        petition_id, after, limit,
    )  # fmt: skip
    return [_head(r) for r in rows]


def _leaf(row) -> Leaf:
    return Leaf(
        row["leaf_index"], row["kind"], hour_text(row["hour"]), row["version"],
        row["commitment"], row["target"], row["reason"],
    )  # fmt: skip


async def leaves(conn, petition_id: int, start: int, end: int) -> list[Leaf]:
    rows = await conn.fetch(
        "SELECT leaf_index, kind, hour, version, commitment, target, reason FROM log_leaves"
        " WHERE petition_id = $1 AND leaf_index >= $2 AND leaf_index < $3 ORDER BY leaf_index",
        petition_id, start, end,
    )  # fmt: skip
    return [_leaf(r) for r in rows]


async def inclusion_proof(conn, petition_id: int, index: int, size: int) -> tuple[bytes, list]:
    """The leaf hash of leaf `index` and its audit path in the tree of `size` leaves."""
    ranges = merkle.inclusion_proof_ranges(index, size)
    hashes = await _range_hashes(conn, petition_id, [(index, index + 1), *ranges])
    return hashes[0], hashes[1:]


async def consistency_proof(conn, petition_id: int, first: int, second: int) -> list[bytes]:
    return await _range_hashes(conn, petition_id, merkle.consistency_proof_ranges(first, second))


@dataclass(frozen=True)
class ReceiptCheck:
    """Where a receipt's signature stands in the log up to a signed head."""

    leaf: Leaf  # its add leaf
    counted: bool
    last_change: Leaf | None  # the latest remove or restore naming it


async def find_receipt(conn, petition_id: int, commitment: bytes, size: int) -> ReceiptCheck | None:
    """The add leaf holding `commitment` among the first `size` leaves (None: not there)."""
    row = await conn.fetchrow(
        "SELECT leaf_index, kind, hour, version, commitment, target, reason FROM log_leaves"
        " WHERE petition_id = $1 AND commitment = $2 AND kind = 'add' AND leaf_index < $3",
        petition_id, commitment, size,
    )  # fmt: skip
    if row is None:
        return None
    change = await conn.fetchrow(
        "SELECT leaf_index, kind, hour, version, commitment, target, reason FROM log_leaves"
        " WHERE petition_id = $1 AND target = $2 AND leaf_index < $3"
        " ORDER BY leaf_index DESC LIMIT 1",
        petition_id, row["leaf_index"], size,
    )  # fmt: skip
    last = _leaf(change) if change else None
    return ReceiptCheck(_leaf(row), last is None or last.kind == "restore", last)
