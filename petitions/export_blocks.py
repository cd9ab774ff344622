"""Sealed blocks of finished export lines: a large petition's export near COPY's speed.

Every signer's personal fields are sealed one signature at a time (personal.py),
so writing a CSV line means opening a blob, parsing its JSON and quoting nine
cells: some 7 µs of Python a row, where PostgreSQL's COPY of the table itself
writes a row in 4. A block keeps the finished lines of a run of a petition's
confirmed signatures, sealed as one value under the data key, so the usual
export (every confirmed signature, no filter) opens a few hundred blocks instead
of a million rows. Blocks are a cache: dropping them all changes nothing but speed.

- Which rows. A petition's blocks tile its ids from 1 to the last block's
  `last_id`; each holds the lines of the confirmed signatures in its range, in id
  order. Confirmed signatures past the last block are written from the table.
- Made by the worker (`refresh`, export_refresh.py): full blocks of
  BLOCK_SIGNATURES are cut past the last one, and emptied blocks are made again
  (at most once a minute each).
- Never out of date. A block records how many confirmed signatures it was made
  from and a fingerprint of their row versions (a sum of 64-bit hashes of each
  row's xmin and id, which every insert, update and delete changes), both in the
  associated data of its seal. An export compares them with the rows in its own
  snapshot and writes from the table whatever does not match.
- Never a copy of erased data. migrations/0016 empties, in the same transaction,
  every block around a confirmed signature that is inserted, changed (confirmed,
  edited, withdrawn, erased, anonymised) or deleted. A block is stored under an
  exclusive advisory lock per petition (tried a few times, never queued for)
  after its rows are fingerprinted again; the trigger takes the same lock shared,
  so a change either committed before that check (which then fails), is in
  flight (the lock is refused; the store tries again shortly), or empties the
  block after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from .crypto import Cipher, DataKeyError

BLOCK_SIGNATURES = 2_000  # confirmed signatures a block is cut at: about 400 kB of CSV
# A block is made at most once a minute: on a petition in full swing, late
# confirmations keep emptying its newest blocks, and remaking one at every pass
# would keep a core busy. Meanwhile the export writes their rows from the table.
REMAKE_AFTER_SECONDS = 60.0

# Tried, never waited for, so confirmations never queue behind a block being stored:
# while a change to the petition's confirmed signatures is in flight, the store
# tries again a moment later, STORE_TRIES times, then leaves it to the next pass.
STORE_TRIES = 20
STORE_PAUSE_SECONDS = 0.005
_LOCK = (
    "SELECT pg_try_advisory_xact_lock(hashtext('petitions/export_blocks'),"
    " hashtext($1::bigint::text))"
)

# A row version: its xmin (a new one on every insert and update) hashed with its id,
# to 64 bits, so that another set of row versions sums the same only by a 64-bit
# coincidence, never because xmins were shuffled between rows.
_VERSION_HASH = "hashint8extended(s.xmin::text::bigint, s.id)"

_FINGERPRINT = f"""
SELECT count(*)::int AS signatures, coalesce(sum({_VERSION_HASH}), 0) AS fingerprint
  FROM signatures s
 WHERE s.petition_id = $1 AND s.status = 'verified' AND s.id BETWEEN $2 AND $3
"""

# The ready blocks' rows together, leaving out the ranges of emptied blocks ($4:
# their bounds, first and last + 1 each; an id inside one lands in an odd bucket).
_FINGERPRINT_READY = f"""
SELECT count(*)::int AS signatures, coalesce(sum({_VERSION_HASH}), 0) AS fingerprint
  FROM signatures s
 WHERE s.petition_id = $1 AND s.status = 'verified' AND s.id BETWEEN $2 AND $3
   AND width_bucket(s.id, $4::bigint[]) % 2 = 0
"""

# Each ready block's rows apart ($2: the ready blocks' bounds): bucket 2k + 1 is
# the k-th block. Read only when the sum over all of them did not match.
_FINGERPRINT_EACH = f"""
SELECT width_bucket(s.id, $2::bigint[]) AS bucket, count(*)::int AS signatures,
       sum({_VERSION_HASH}) AS fingerprint
  FROM signatures s
 WHERE s.petition_id = $1 AND s.status = 'verified'
 GROUP BY 1
"""

_BLOCKS = """
SELECT first_id, last_id, signatures, fingerprint, sealed IS NOT NULL AS ready
  FROM export_blocks
 WHERE petition_id = $1
 ORDER BY first_id
"""


@dataclass(frozen=True)
class Block:
    first_id: int
    last_id: int
    signatures: int
    fingerprint: int
    ready: bool = True


@dataclass(frozen=True)
class Piece:
    """A run of the export, in id order: a block's lines, or the rows from first_id
    to last_id (None: to the end) written from the table."""

    first_id: int
    last_id: int | None
    block: Block | None = None


@dataclass
class Plan:
    pieces: list[Piece]
    unusable: list[int]  # first ids of ready blocks whose rows changed without emptying them


def _bounds(blocks: Sequence[Block]) -> list[int]:
    return [bound for b in blocks for bound in (b.first_id, b.last_id + 1)]


def _context(petition_id: int, block: Block) -> bytes:
    """What a block's seal is bound to: where it belongs, the rows it was made from,
    and the file's layout (a block written by a version with other columns never opens)."""
    from .export import LAYOUT  # export.py reads blocks through this module

    return (
        f"petitions/export-block/{LAYOUT}/{petition_id}/{block.first_id}/{block.last_id}/"
        f"{block.signatures}/{block.fingerprint}"
    ).encode()


async def blocks_of(conn: asyncpg.Connection, petition_id: int) -> list[Block]:
    rows = await conn.fetch(_BLOCKS, petition_id)
    return [
        Block(r["first_id"], r["last_id"], r["signatures"], int(r["fingerprint"]), r["ready"])
        for r in rows
    ]


async def fingerprint(
    conn: asyncpg.Connection, petition_id: int, first_id: int, last_id: int
) -> tuple[int, int]:
    row = await conn.fetchrow(_FINGERPRINT, petition_id, first_id, last_id)
    return row["signatures"], int(row["fingerprint"])


# Reading ---------------------------------------------------------------------------


async def plan(conn: asyncpg.Connection, petition_id: int) -> Plan | None:
    """How to write every confirmed signature of the petition: blocks where they
    match the rows this transaction sees, the table elsewhere; None when the petition
    has no ready block. Call it inside the export's repeatable-read transaction."""
    blocks = await blocks_of(conn, petition_id)
    ready = [b for b in blocks if b.ready]
    if not ready:
        return None
    seen = await conn.fetchrow(
        _FINGERPRINT_READY, petition_id, blocks[0].first_id, blocks[-1].last_id,
        _bounds([b for b in blocks if not b.ready]),
    )  # fmt: skip
    expected = (sum(b.signatures for b in ready), sum(b.fingerprint for b in ready))
    if (seen["signatures"], int(seen["fingerprint"])) == expected:
        usable = set(ready)
    else:  # find which blocks no longer match
        found = {
            r["bucket"]: (r["signatures"], int(r["fingerprint"]))
            for r in await conn.fetch(_FINGERPRINT_EACH, petition_id, _bounds(ready))
        }
        usable = {
            b
            for k, b in enumerate(ready)
            if found.get(2 * k + 1, (0, 0)) == (b.signatures, b.fingerprint)
        }
    pieces: list[Piece] = []
    for block in blocks:
        if block in usable:
            pieces.append(Piece(block.first_id, block.last_id, block))
        elif pieces and pieces[-1].block is None:  # runs on from the rows before it
            pieces[-1] = Piece(pieces[-1].first_id, block.last_id)
        else:
            pieces.append(Piece(block.first_id, block.last_id))
    if pieces[-1].block is None:
        pieces[-1] = Piece(pieces[-1].first_id, None)
    else:
        pieces.append(Piece(blocks[-1].last_id + 1, None))
    return Plan(pieces, [b.first_id for b in ready if b not in usable])


async def open_block(
    conn: asyncpg.Connection, cipher: Cipher, petition_id: int, block: Block
) -> bytes | None:
    """The block's lines; None when it cannot be opened (sealed under a key this
    process does not have, or for another layout): its rows are then written
    from the table."""
    sealed = await conn.fetchval(
        "SELECT sealed FROM export_blocks WHERE petition_id = $1 AND first_id = $2",
        petition_id, block.first_id,
    )  # fmt: skip
    if sealed is None:
        return None
    try:
        return cipher.open(sealed, _context(petition_id, block))
    except DataKeyError:
        return None


async def empty(conn: asyncpg.Connection, petition_id: int, first_ids: Sequence[int]) -> None:
    """Mark blocks to be made again (an export found them out of date)."""
    await conn.execute(
        "UPDATE export_blocks SET sealed = NULL"
        " WHERE petition_id = $1 AND first_id = ANY($2::bigint[]) AND sealed IS NOT NULL",
        petition_id, list(first_ids),
    )  # fmt: skip


# Making ----------------------------------------------------------------------------

WriteLines = Callable[
    [asyncpg.Connection, int, int, Callable[[bytes], Awaitable[None]]], Awaitable[None]
]


async def make(
    conn: asyncpg.Connection,
    cipher: Cipher,
    petition_id: int,
    first_id: int,
    last_id: int,
    write_lines: WriteLines,
) -> bool:
    """Make and store the block from first_id to last_id (replacing any block it
    overlaps); False when its rows changed before it could be stored (the next pass
    makes it again). `write_lines(conn, first_id, last_id, write)` writes the export
    lines of the confirmed signatures in that range."""
    pieces: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        pieces.append(chunk)

    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        made_from = await fingerprint(conn, petition_id, first_id, last_id)
        await write_lines(conn, first_id, last_id, collect)
    block = Block(first_id, last_id, *made_from)
    sealed = cipher.seal(b"".join(pieces), _context(petition_id, block))
    for _ in range(STORE_TRIES):
        async with conn.transaction():
            stored = await _store(conn, petition_id, block, sealed)
        if stored is not None:
            return stored
        await asyncio.sleep(STORE_PAUSE_SECONDS)  # a change of the petition is in flight
    return False


async def _store(
    conn: asyncpg.Connection, petition_id: int, block: Block, sealed: bytes
) -> bool | None:
    """In a transaction: store the block if its rows are still the ones it was made
    from (else False); None while a change to the petition's confirmed signatures is
    in flight (it holds the lock shared)."""
    if not await conn.fetchval(_LOCK, petition_id):
        return None
    first_id, last_id = block.first_id, block.last_id
    if await fingerprint(conn, petition_id, first_id, last_id) != (
        block.signatures, block.fingerprint,
    ):  # fmt: skip
        return False
    replaced = await conn.fetch(
        "DELETE FROM export_blocks WHERE petition_id = $1 AND first_id <= $3 AND last_id >= $2"
        " RETURNING first_id, last_id",
        petition_id, first_id, last_id,
    )  # fmt: skip
    # What the replaced blocks covered beyond this one stays covered, emptied (to be
    # made next), so the blocks still tile the ids and no row falls between them.
    rows = [(petition_id, first_id, last_id, block.signatures, block.fingerprint, sealed)]
    if replaced and (start := min(r["first_id"] for r in replaced)) < first_id:
        rows.append((petition_id, start, first_id - 1, 0, 0, None))
    if replaced and (end := max(r["last_id"] for r in replaced)) > last_id:
        rows.append((petition_id, last_id + 1, end, 0, 0, None))
    await conn.executemany(
        "INSERT INTO export_blocks (petition_id, first_id, last_id, signatures, fingerprint,"
        " sealed) VALUES ($1, $2, $3, $4, $5, $6)",
        rows,
    )
    return True


async def ranges_to_make(
    conn: asyncpg.Connection, petition_id: int, limit: int
) -> list[tuple[int, int]]:
    """Up to `limit` ranges to make: emptied blocks made over REMAKE_AFTER_SECONDS ago
    (split where they now hold far more than a block's worth), then full blocks past
    the last one."""
    emptied = await conn.fetch(
        "SELECT first_id, last_id FROM export_blocks WHERE petition_id = $1"
        " AND sealed IS NULL AND made_at <= now() - make_interval(secs => $2)"
        " ORDER BY first_id",
        petition_id, REMAKE_AFTER_SECONDS,
    )  # fmt: skip
    ranges: list[tuple[int, int]] = []
    for block in emptied:
        if len(ranges) < limit:
            ranges += await _cut(conn, petition_id, block["first_id"], block["last_id"], limit)
    end = await conn.fetchval(
        "SELECT max(last_id) FROM export_blocks WHERE petition_id = $1", petition_id
    )
    if len(ranges) < limit:
        ranges += await _cut(conn, petition_id, (end or 0) + 1, None, limit - len(ranges))
    return ranges[:limit]


async def _cut(
    conn: asyncpg.Connection, petition_id: int, first_id: int, last_id: int | None, limit: int
) -> list[tuple[int, int]]:
    """The range from first_id to last_id cut into blocks of about BLOCK_SIGNATURES
    confirmed signatures. An emptied block's range (last_id given) keeps its bounds,
    split evenly when it now holds over twice a block's worth; past the last block
    (last_id None) only full blocks are cut, `limit` at most."""
    ids = [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM signatures WHERE petition_id = $1 AND status = 'verified'"
            " AND id >= $2 AND ($3::bigint IS NULL OR id <= $3) ORDER BY id LIMIT $4",
            petition_id,
            first_id,
            last_id,
            None if last_id is not None else BLOCK_SIGNATURES * limit,
        )  # fmt: skip
    ]
    if last_id is None:
        ends = ids[BLOCK_SIGNATURES - 1 :: BLOCK_SIGNATURES][:limit]
    else:
        n = max(1, round(len(ids) / BLOCK_SIGNATURES)) if len(ids) > 2 * BLOCK_SIGNATURES else 1
        ends = [ids[(k + 1) * len(ids) // n - 1] for k in range(n - 1)] + [last_id]
    ranges = []
    for end in ends:
        ranges.append((first_id, end))
        first_id = end + 1
    return ranges
