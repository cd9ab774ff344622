"""The export's sealed blocks of finished lines (export_blocks.py, export_refresh.py,
migrations/0016): the default export reads them, and gives byte for byte the file the
table gives (and tests/test_export_bytes.py's reference) whatever happened to the rows:
withdrawals, late confirmations, changes the triggers did not see, races with the
worker, blocks sealed under a key now gone or tampered with.

Blocks are cut at 5 confirmed signatures here (BLOCK_SIGNATURES), so a few dozen rows
make a dozen blocks.

How these were checked to bite: each change below, made to a scratch copy of the
project (never to this tree), makes the named tests fail; the copy was then reset.
- copy_csv never calling export_blocks.plan: reads_the_blocks, other_filters_never_read.
- empty_export_blocks (0016) emptying nothing: withdrawal, late_confirmation, deleting.
- plan() taking every ready block as usable: triggers_did_not_see.
- make() without its `_LOCK`: in_flight_when_the_block_is_stored; without its second
  fingerprint: built_is_not_stored.
- copy_csv without its final export_blocks.empty: does_not_open, triggers_did_not_see.
- copy_csv reading blocks for every filter: other_filters_never_read_blocks.
- the fingerprint's hash without xmin: triggers_did_not_see, built_is_not_stored.
- _cut never splitting, or cutting a partial block past the last: split_within,
  only_full_blocks.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from test_export_bytes import every_row, reference_csv, varied_signatures

from admin_support import admin_client
from conftest import CIPHER, SECRET, add_signature, make_petition, opened_signatures, wait_until
from petitions import export, export_blocks, export_refresh
from petitions.cli import main
from petitions.crypto import make_cipher
from petitions.db import asyncpg_dsn, open_database
from petitions.delivery import run_outbox_worker
from petitions.demo import DEMO_SLUG
from petitions.export import HEADER, ExportFilter
from petitions.signature import confirm, withdraw

URL = "/admin/petitions/release-them/export.csv"
BLOCK = 5  # confirmed signatures a block is cut at in these tests
MARKER = b"a line only the block holds\n"
EVERY_CONFIRMED = ExportFilter()  # the default export: the only one that reads blocks


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(export_blocks, "BLOCK_SIGNATURES", BLOCK)
    monkeypatch.setattr(export_blocks, "REMAKE_AFTER_SECONDS", 0)


@pytest.fixture
async def db(db_url):
    """A pool as the worker's (export_refresh.refresh takes one)."""
    database = open_database(db_url)
    await database.connect()
    yield database
    await database.disconnect()


@pytest.fixture
async def other(db_url):
    """A second connection: another process changing rows meanwhile."""
    connection = await asyncpg.connect(asyncpg_dsn(db_url))
    yield connection
    await connection.close()


# Building petitions and blocks ---------------------------------------------------------

STATUSES = ("verified", "verified", "pending", "verified", "held", "verified", "rejected")


async def many_signatures(conn) -> int:
    """test_export_bytes' varied petition and 60 more rows (most confirmed, the others
    pending, held or rejected) of cells that need quoting or neutralising, of both kinds."""
    pid = await varied_signatures(conn)
    for i in range(60):
        cells = {"comment": f'line one\nline "two", {i}'} if i % 3 == 0 else {}
        if i % 4 == 0:
            cells["city"] = "=Tabriz"
        if i % 9 == 0:
            cells["kind"] = "organisation"
        await add_signature(
            conn, pid, name=f"Signer, №{i} ✊", status=STATUSES[i % len(STATUSES)],
            country=("IR", "GB", "FR")[i % 3], **cells,
        )  # fmt: skip
    return pid


async def make_all_blocks(db, limit: int = export_refresh.BLOCKS_PER_PASS) -> None:
    """Run the worker's passes until there is nothing left to make."""
    for _ in range(100):
        if await export_refresh.refresh(db, CIPHER, limit) < limit:
            return
    raise AssertionError("refresh never ran out of blocks to make")


async def blocks_of(conn, pid) -> list[export_blocks.Block]:
    return await export_blocks.blocks_of(conn, pid)


async def verified_ids(conn, pid) -> list[int]:
    return [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM signatures WHERE petition_id = $1 AND status = 'verified' ORDER BY id",
            pid,
        )
    ]


def block_holding(blocks, signature_id: int) -> export_blocks.Block:
    return next(b for b in blocks if b.first_id <= signature_id <= b.last_id)


async def is_emptied(conn, pid, block) -> bool:
    return await conn.fetchval(
        "SELECT sealed IS NULL FROM export_blocks WHERE petition_id = $1 AND first_id = $2",
        pid,
        block.first_id,
    )


async def a_confirmed_signer_in(conn, pid, block) -> dict:
    """A confirmed signature inside the block, with its personal fields opened."""
    rows = await opened_signatures(
        conn, "petition_id = $1 AND status = 'verified' AND id BETWEEN $2 AND $3",
        pid, block.first_id, block.last_id,
    )  # fmt: skip
    return rows[len(rows) // 2]


async def lines_of(conn, pid, block) -> bytes:
    lines = await export_blocks.open_block(conn, CIPHER, pid, block)
    assert lines is not None, block
    return lines


async def store_sealed(conn, pid, block, sealed: bytes) -> None:
    await conn.execute(
        "UPDATE export_blocks SET sealed = $3 WHERE petition_id = $1 AND first_id = $2",
        pid, block.first_id, sealed,
    )  # fmt: skip


async def reseal(conn, pid, block, lines: bytes, cipher=CIPHER) -> None:
    """Seal `lines` as the block's, bound to what the block says it was made from."""
    await store_sealed(conn, pid, block, cipher.seal(lines, export_blocks._context(pid, block)))


# Exporting -----------------------------------------------------------------------------


async def exported(conn, pid, filters: ExportFilter = EVERY_CONFIRMED) -> bytes:
    chunks: list[bytes] = []

    async def write(chunk: bytes) -> None:
        chunks.append(chunk)

    await export.copy_csv(conn, pid, filters, write, cipher=CIPHER)
    return b"".join(chunks)


async def exported_from_table(conn, pid) -> bytes:
    """The default export without blocks: every line written from the table."""
    chunks = [(",".join(HEADER) + "\n").encode()]

    async def write(chunk: bytes) -> None:
        chunks.append(chunk)

    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        await export.copy_lines(conn, pid, EVERY_CONFIRMED, write, cipher=CIPHER)
    return b"".join(chunks)


async def reference(conn, pid, **filters) -> bytes:
    return reference_csv(await every_row(conn, pid), **filters)


async def assert_export_is_the_reference(conn, pid) -> bytes:
    expected = await reference(conn, pid)
    assert await exported_from_table(conn, pid) == expected
    assert await exported(conn, pid) == expected
    return expected


async def current_plan(conn, pid) -> export_blocks.Plan | None:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        return await export_blocks.plan(conn, pid)


# The tests -----------------------------------------------------------------------------


async def test_blocks_give_the_same_file_as_the_table(app, conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    blocks = await blocks_of(conn, pid)
    confirmed = await verified_ids(conn, pid)
    assert len(blocks) >= 8 and all(b.ready for b in blocks)
    assert blocks[0].first_id == 1
    assert all(b.first_id == a.last_id + 1 for a, b in zip(blocks, blocks[1:], strict=False))
    held = sum(b.signatures for b in blocks)
    assert all(b.signatures == BLOCK for b in blocks)
    assert 0 <= len(confirmed) - held < BLOCK  # only the tail is left to the table
    plan = await current_plan(conn, pid)
    assert plan.unusable == [] and [p.block for p in plan.pieces if p.block] == blocks

    expected = await assert_export_is_the_reference(conn, pid)
    assert b"'=Tabriz" in expected and b'"Signer, \xe2\x84\x9612 \xe2\x9c\x8a"' in expected
    async with admin_client(app, conn, "editor") as editor:
        response = await editor.get(URL)
        assert response.status_code == 200
        assert response.content == expected
    assert all(b.ready for b in await blocks_of(conn, pid))  # nothing was found out of date


async def test_the_default_export_reads_the_blocks(app, conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    block = (await blocks_of(conn, pid))[3]
    original_sealed = await conn.fetchval(
        "SELECT sealed FROM export_blocks WHERE petition_id = $1 AND first_id = $2",
        pid, block.first_id,
    )  # fmt: skip
    lines = await lines_of(conn, pid, block)
    expected = await reference(conn, pid)
    assert expected.count(lines) == 1  # the block holds exactly its rows' lines

    await reseal(conn, pid, block, MARKER + lines)
    with_marker = expected.replace(lines, MARKER + lines)
    assert await exported(conn, pid) == with_marker
    async with admin_client(app, conn, "editor") as editor:
        assert (await editor.get(URL)).content == with_marker

    await store_sealed(conn, pid, block, original_sealed)
    assert await exported(conn, pid) == expected


async def test_a_withdrawal_empties_its_block_in_the_same_transaction(conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    blocks = await blocks_of(conn, pid)
    block = blocks[4]
    signer = await a_confirmed_signer_in(conn, pid, block)
    personal = [signer["name"].encode(), signer["email"].encode()]
    lines = await lines_of(conn, pid, block)
    assert all(value in lines for value in personal)

    async with conn.transaction():
        assert (await withdraw(conn, signer["public_id"])).status == "withdrawn"
        assert await is_emptied(conn, pid, block)
    assert [b.ready for b in await blocks_of(conn, pid)] == [b != block for b in blocks]

    expected = await assert_export_is_the_reference(conn, pid)
    assert not any(value in expected for value in personal)

    await make_all_blocks(db)
    remade = block_holding(await blocks_of(conn, pid), signer["id"])
    assert (remade.first_id, remade.last_id) == (block.first_id, block.last_id)
    assert remade.ready and remade.signatures == BLOCK - 1
    lines = await lines_of(conn, pid, remade)
    assert not any(value in lines for value in personal)
    assert await assert_export_is_the_reference(conn, pid) == expected


async def test_a_late_confirmation_inside_a_block_empties_it(conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    blocks = await blocks_of(conn, pid)
    late = await conn.fetchrow(
        "SELECT id, public_id FROM signatures WHERE petition_id = $1 AND status = 'pending'"
        " AND kind = 'individual' AND id BETWEEN $2 AND $3 ORDER BY id LIMIT 1",
        pid, blocks[2].first_id, blocks[-1].last_id,
    )  # fmt: skip
    block = block_holding(blocks, late["id"])

    assert (await confirm(conn, late["public_id"])).status == "verified"
    assert await is_emptied(conn, pid, block)
    expected = await assert_export_is_the_reference(conn, pid)
    assert str(late["public_id"]).encode() in expected

    await make_all_blocks(db)
    remade = block_holding(await blocks_of(conn, pid), late["id"])
    assert (remade.first_id, remade.last_id) == (block.first_id, block.last_id)
    assert remade.ready and remade.signatures == BLOCK + 1
    assert str(late["public_id"]).encode() in await lines_of(conn, pid, remade)
    assert await assert_export_is_the_reference(conn, pid) == expected


async def test_a_change_the_triggers_did_not_see_is_written_from_the_table(conn, other, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    block = (await blocks_of(conn, pid))[5]
    signer = await a_confirmed_signer_in(conn, pid, block)
    # With triggers off (a replica's apply, a careless restore), nothing empties the block.
    await other.execute("SET session_replication_role = replica")
    await other.execute("UPDATE signatures SET ref = 'unseen.change' WHERE id = $1", signer["id"])
    assert not await is_emptied(conn, pid, block)
    assert (await current_plan(conn, pid)).unusable == [block.first_id]

    expected = await assert_export_is_the_reference(conn, pid)
    assert b",unseen.change," in expected
    assert await is_emptied(conn, pid, block)  # the export found it out of date

    await make_all_blocks(db)
    remade = block_holding(await blocks_of(conn, pid), signer["id"])
    assert remade.ready and b",unseen.change," in await lines_of(conn, pid, remade)
    assert (await current_plan(conn, pid)).unusable == []
    assert await assert_export_is_the_reference(conn, pid) == expected


def table_lines(pid):
    """What the worker writes a block with (export_refresh._refresh's write_lines)."""

    async def write_lines(conn, first_id, last_id, write) -> None:
        await export.copy_lines(
            conn, pid, EVERY_CONFIRMED, write, cipher=CIPHER, first_id=first_id, last_id=last_id
        )

    return write_lines


async def first_range(conn, pid) -> tuple[int, int]:
    ranges = await export_blocks.ranges_to_make(conn, pid, 1)
    assert ranges, "nothing to make"
    return ranges[0]


async def test_a_change_committed_while_a_block_is_built_is_not_stored(conn, other):
    pid = await many_signatures(conn)
    first_id, last_id = await first_range(conn, pid)
    victim = (await verified_ids(conn, pid))[2]
    assert first_id <= victim <= last_id

    async def lines_then_a_change(conn, first_id, last_id, write) -> None:
        await table_lines(pid)(conn, first_id, last_id, write)
        await other.execute("UPDATE signatures SET ref = 'raced' WHERE id = $1", victim)

    made = await export_blocks.make(conn, CIPHER, pid, first_id, last_id, lines_then_a_change)
    assert made is False
    assert await blocks_of(conn, pid) == []

    assert await export_blocks.make(conn, CIPHER, pid, first_id, last_id, table_lines(pid))
    (block,) = await blocks_of(conn, pid)
    assert b",raced," in await lines_of(conn, pid, block)
    await assert_export_is_the_reference(conn, pid)


async def test_a_change_in_flight_when_the_block_is_stored_stops_it_at_once(conn, other, db):
    pid = await many_signatures(conn)
    first_id, last_id = await first_range(conn, pid)
    victim = (await verified_ids(conn, pid))[2]
    async with other.transaction():
        await other.execute("UPDATE signatures SET ref = 'uncommitted' WHERE id = $1", victim)
        # The change holds the petition's lock shared: make() does not wait for it (so
        # confirmations never queue behind a block being stored), and stores nothing.
        making = export_blocks.make(conn, CIPHER, pid, first_id, last_id, table_lines(pid))
        assert await asyncio.wait_for(making, 5) is False
    assert await blocks_of(conn, pid) == []
    await make_all_blocks(db)
    assert b",uncommitted," in await assert_export_is_the_reference(conn, pid)


async def test_a_short_change_elsewhere_in_the_petition_only_delays_the_store(conn, other):
    """A confirmation of the same petition outside the block holds the lock for a
    moment: the store tries again and succeeds."""
    pid = await many_signatures(conn)
    first_id, last_id = await first_range(conn, pid)
    elsewhere = (await verified_ids(conn, pid))[-1]
    assert elsewhere > last_id

    async def brief_change() -> None:
        async with other.transaction():
            await other.execute("UPDATE signatures SET ref = 'brief' WHERE id = $1", elsewhere)
            await asyncio.sleep(0.03)

    changing = asyncio.create_task(brief_change())
    await asyncio.sleep(0.01)
    made = await export_blocks.make(conn, CIPHER, pid, first_id, last_id, table_lines(pid))
    await changing
    assert made is True
    assert [(b.first_id, b.last_id) for b in await blocks_of(conn, pid)] == [(first_id, last_id)]


async def test_a_block_that_does_not_open_is_written_from_the_table_and_emptied(conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    blocks = await blocks_of(conn, pid)
    foreign, tampered = blocks[2], blocks[6]
    other_key = make_cipher("another-secret-key-" + "y" * 32)
    await reseal(conn, pid, foreign, await lines_of(conn, pid, foreign), cipher=other_key)
    sealed = await conn.fetchval(
        "SELECT sealed FROM export_blocks WHERE petition_id = $1 AND first_id = $2",
        pid, tampered.first_id,
    )  # fmt: skip
    await store_sealed(conn, pid, tampered, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    assert (await current_plan(conn, pid)).unusable == []  # the rows match: only opening fails

    await assert_export_is_the_reference(conn, pid)
    emptied = [b for b in await blocks_of(conn, pid) if not b.ready]
    assert [b.first_id for b in emptied] == [foreign.first_id, tampered.first_id]

    await make_all_blocks(db)
    assert all(b.ready for b in await blocks_of(conn, pid))
    await assert_export_is_the_reference(conn, pid)


async def test_other_filters_never_read_blocks(conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    blocks = await blocks_of(conn, pid)
    for block in blocks:  # every block valid, and each with a line the table has not
        await reseal(conn, pid, block, MARKER + await lines_of(conn, pid, block))
    assert (await exported(conn, pid)).count(MARKER) == len(blocks)

    since = datetime.now(UTC) - timedelta(days=7)
    for filters in (
        {"status": None},
        {"status": "pending"},
        {"kind": "individual"},
        {"kind": "organisation", "status": None},
        {"country": "IR"},
        {"since": since},
        {"since": since, "status": None, "country": "GB"},
    ):
        body = await exported(conn, pid, ExportFilter(**filters))
        assert body == await reference(conn, pid, **filters), filters
    assert await blocks_of(conn, pid) == blocks  # none read, none emptied


async def test_deleting_a_petition_deletes_its_blocks(conn, db):
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    assert await blocks_of(conn, pid)
    # A petition with confirmed signatures cannot be deleted at once: the tallies'
    # delete trigger (0001) writes to signature_tallies for the petition being deleted.
    await conn.execute("DELETE FROM signatures WHERE petition_id = $1", pid)
    assert not any(b.ready for b in await blocks_of(conn, pid))  # the DELETE trigger
    await conn.execute("DELETE FROM petitions WHERE id = $1", pid)
    assert await conn.fetchval("SELECT count(*) FROM export_blocks") == 0


async def add_confirmed(conn, pid, n: int) -> list[int]:
    return [(await add_signature(conn, pid))["id"] for _ in range(n)]


async def test_only_full_blocks_are_cut_past_the_last_one_and_the_tail_is_exported(conn, db):
    pid = await make_petition(conn)
    ids = await add_confirmed(conn, pid, 2 * BLOCK + 3)
    await make_all_blocks(db)
    blocks = await blocks_of(conn, pid)
    assert [(b.first_id, b.last_id) for b in blocks] == [(1, ids[4]), (ids[4] + 1, ids[9])]
    assert await export_blocks.ranges_to_make(conn, pid, 10) == []
    expected = await assert_export_is_the_reference(conn, pid)
    for tail_id in ids[10:]:
        public_id = await conn.fetchval("SELECT public_id FROM signatures WHERE id = $1", tail_id)
        assert str(public_id).encode() in expected

    ids += await add_confirmed(conn, pid, 2 * BLOCK + 1)  # 13 past the last block: 2 full
    assert await export_blocks.ranges_to_make(conn, pid, 10) == [
        (ids[9] + 1, ids[14]),
        (ids[14] + 1, ids[19]),
    ]
    assert await export_blocks.ranges_to_make(conn, pid, 1) == [(ids[9] + 1, ids[14])]
    await assert_export_is_the_reference(conn, pid)


async def a_block_that_grew(conn, db) -> tuple[int, export_blocks.Block]:
    """A petition whose first block, of 5 confirmed signatures among 8 pending ones,
    is followed by another block and then holds 13 once they are all confirmed."""
    pid = await make_petition(conn)
    pending = []
    for i in range(BLOCK):
        await add_signature(conn, pid)
        if i < BLOCK - 1:
            pending += [await add_signature(conn, pid, status="pending") for _ in range(2)]
    await add_confirmed(conn, pid, BLOCK + 2)
    await make_all_blocks(db)
    grown = (await blocks_of(conn, pid))[0]
    assert grown.signatures == BLOCK and len(await blocks_of(conn, pid)) == 2
    for signature in pending:
        await confirm(conn, signature["public_id"])
    assert await is_emptied(conn, pid, grown)
    return pid, grown


async def test_an_emptied_block_that_grew_is_split_within_its_bounds(conn, db):
    pid, grown = await a_block_that_grew(conn, db)
    ranges = await export_blocks.ranges_to_make(conn, pid, 10)
    assert len(ranges) == 3  # 13 confirmed signatures: about 5 each
    assert ranges[0][0] == grown.first_id and ranges[-1][1] == grown.last_id
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))
    for first_id, last_id in ranges:
        held = await export_blocks.fingerprint(conn, pid, first_id, last_id)
        assert BLOCK - 1 <= held[0] <= BLOCK + 1
    await make_all_blocks(db)
    assert [(b.first_id, b.last_id) for b in await blocks_of(conn, pid)][:3] == ranges
    await assert_export_is_the_reference(conn, pid)


async def test_remaking_a_split_block_a_range_at_a_time_leaves_no_row_out(conn, db):
    # Fails today: make() of the split's first range deletes the whole emptied block
    # it overlaps, so until (or unless) the other ranges are made, their rows are in
    # no block and before the next one: the export leaves them out, and the worker
    # never makes them again (there is no emptied block left, and they are not past
    # the last block).
    pid, _ = await a_block_that_grew(conn, db)
    expected = await assert_export_is_the_reference(conn, pid)
    assert await export_refresh.refresh(db, CIPHER, 1) == 1  # the first of its 3 ranges
    await make_all_blocks(db)
    assert await exported(conn, pid) == expected
    blocks = await blocks_of(conn, pid)
    assert all(b.first_id == a.last_id + 1 for a, b in zip(blocks, blocks[1:], strict=False))


async def all_confirmed_in_ready_blocks(conn, pid) -> bool:
    """Every full block's worth of confirmed signatures is in a ready block, none emptied."""
    confirmed = len(await verified_ids(conn, pid))
    held, emptied = await conn.fetchrow(
        "SELECT coalesce(sum(signatures) FILTER (WHERE sealed IS NOT NULL), 0),"
        "       count(*) FILTER (WHERE sealed IS NULL)"
        "  FROM export_blocks WHERE petition_id = $1",
        pid,
    )
    return emptied == 0 and confirmed - held < BLOCK


async def test_the_worker_makes_the_blocks_and_makes_an_emptied_one_again(
    conn, db, settings, monkeypatch
):
    monkeypatch.setattr(export_refresh, "REFRESH_EVERY_SECONDS", 0.05)
    pid = await many_signatures(conn)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_outbox_worker(db, settings, stop, poll_seconds=0.05))
    try:
        await wait_until(lambda: all_confirmed_in_ready_blocks(conn, pid), what="the blocks")
        block = (await blocks_of(conn, pid))[1]
        signer = await a_confirmed_signer_in(conn, pid, block)
        await withdraw(conn, signer["public_id"])
        await wait_until(lambda: all_confirmed_in_ready_blocks(conn, pid), what="remade")
    finally:
        stop.set()
        await worker
    remade = block_holding(await blocks_of(conn, pid), block.first_id)
    assert (remade.first_id, remade.last_id) == (block.first_id, block.last_id)
    assert signer["email"].encode() not in await lines_of(conn, pid, remade)
    assert await exported(conn, pid) == await reference(conn, pid)


async def test_the_demo_command_makes_the_blocks_of_what_it_loaded(conn, settings, monkeypatch):
    for name, value in (("DATABASE_URL", settings.database_url), ("SECRET_KEY", SECRET),
                        ("DATA_DIR", str(settings.data_dir))):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(main, ["demo", "--signatures", "40"]) == 0
    pid = await conn.fetchval("SELECT id FROM petitions WHERE slug = $1", DEMO_SLUG)
    assert await all_confirmed_in_ready_blocks(conn, pid)
    assert len(await blocks_of(conn, pid)) >= 40 // BLOCK - 1
    assert await exported(conn, pid) == await reference(conn, pid)


async def test_an_emptied_block_is_made_again_at_most_once_a_minute(conn, db, monkeypatch):
    """A petition in full swing keeps emptying its newest blocks with late
    confirmations: the worker waits before remaking one, and the export meanwhile
    writes its rows from the table."""
    monkeypatch.setattr(export_blocks, "REMAKE_AFTER_SECONDS", 60)
    pid = await many_signatures(conn)
    await make_all_blocks(db)
    block = (await blocks_of(conn, pid))[1]
    await withdraw(conn, (await a_confirmed_signer_in(conn, pid, block))["public_id"])
    await make_all_blocks(db)
    assert await is_emptied(conn, pid, block)
    assert await exported(conn, pid) == await reference(conn, pid)
    await conn.execute(
        "UPDATE export_blocks SET made_at = made_at - interval '61 seconds'"
        " WHERE petition_id = $1 AND first_id = $2",
        pid, block.first_id,
    )  # fmt: skip
    await make_all_blocks(db)
    assert not await is_emptied(conn, pid, block)
    assert await exported(conn, pid) == await reference(conn, pid)
