"""The export's sealed blocks of finished lines (export_blocks.py, export_refresh.py,
migrations/0016): the default export reads them, and gives byte for byte the file the
table gives (and tests/test_export_bytes.py's reference) whatever happened to the rows:
withdrawals, late confirmations, changes the triggers did not see, races with the
worker, blocks sealed under a key now gone or tampered with.

Blocks are cut at 5 confirmed signatures here (BLOCK_SIGNATURES), so a few dozen rows
make a dozen blocks.

How some of these were checked to bite (each by breaking the code locally, seeing the
test fail, and restoring the file exactly):
- test_the_default_export_reads_the_blocks: copy_csv with `plan = None` (never using
  blocks) fails it: the marker line is missing.
- test_a_withdrawal_empties_its_block_in_the_same_transaction: dropping the UPDATE
  trigger (DROP TRIGGER signatures_export_blocks_update in the test) fails the
  "emptied in the same transaction" assertion.
- test_a_change_the_triggers_did_not_see_is_written_from_the_table: plan() treating
  every ready block as usable fails it (the old `ref` is written).
- test_a_change_committed_while_the_block_waits_to_be_stored_is_not_stored: make()
  without its `_LOCK` statement stores the block (returns True before the commit).
- test_a_block_that_does_not_open_is_written_from_the_table_and_emptied: copy_csv
  without the final `export_blocks.empty(...)` fails the "emptied" assertions.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from admin_support import admin_client
from conftest import CIPHER, add_signature, make_petition, opened_signatures
from petitions import export, export_blocks, export_refresh
from petitions.crypto import make_cipher
from petitions.db import asyncpg_dsn, open_database
from petitions.export import HEADER, ExportFilter
from petitions.signature import confirm, withdraw
from test_export_bytes import every_row, reference_csv, varied_signatures

URL = "/admin/petitions/release-them/export.csv"
BLOCK = 5  # confirmed signatures a block is cut at in these tests
MARKER = b"a line only the block holds\n"


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(export_blocks, "BLOCK_SIGNATURES", BLOCK)


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
    """test_export_bytes' varied petition and 60 more rows (two thirds confirmed) of
    cells that need quoting or neutralising, of both kinds."""
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


async def exported(conn, pid, filters: ExportFilter = ExportFilter()) -> bytes:
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
        await export.copy_lines(conn, pid, ExportFilter(), write, cipher=CIPHER)
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
