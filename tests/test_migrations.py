"""The migration runner: once each, in order, under a lock, refusing edited files."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

import asyncpg
import pytest

from petitions.db import asyncpg_dsn
from petitions.migrations import MigrationError, migrate, read_migrations
from petitions.paths import MIGRATIONS_DIR


@pytest.fixture
async def empty_db_url(pg_server_url):
    """A database with nothing in it, not even the schema."""
    from conftest import _admin_execute
    from petitions.db import with_database_name

    name = "petitions_empty_" + __import__("uuid").uuid4().hex[:10]
    await _admin_execute(pg_server_url, f'CREATE DATABASE "{name}"')
    yield with_database_name(pg_server_url, name)
    await _admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _recorded(url: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return [
            r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations ORDER BY 1")
        ]
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_db_url):
    results = await asyncio.gather(*(migrate(empty_db_url) for _ in range(6)))
    names = [m.name for m in read_migrations()]
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(names), "each file applied by exactly one caller"
    assert await _recorded(empty_db_url) == names
    assert await migrate(empty_db_url) == []


@pytest.mark.slow  # starts two Python processes
async def test_two_processes_migrating_at_once(empty_db_url):
    script = (
        "import asyncio, sys; from petitions.migrations import migrate; "
        "print(len(asyncio.run(migrate(sys.argv[1]))))"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, empty_db_url, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [int((await p.communicate())[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outputs) == [0, len(read_migrations())]
    assert await _recorded(empty_db_url) == [m.name for m in read_migrations()]


async def test_edited_migration_is_refused(empty_db_url, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    await migrate(empty_db_url, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(empty_db_url, folder)


async def test_failed_migration_leaves_nothing_behind(empty_db_url, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "9999_broken.sql").write_text("CREATE TABLE half_done (id int);\nTHIS IS NOT SQL;\n")
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await migrate(empty_db_url, folder)
    assert "9999_broken.sql" not in await _recorded(empty_db_url)
    conn = await asyncpg.connect(asyncpg_dsn(empty_db_url))
    try:
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
    finally:
        await conn.close()


async def test_schema_constraints_hold(conn):
    """The database itself refuses what the code must never store."""
    from conftest import add_signature, make_petition

    pid = await make_petition(conn)
    await add_signature(conn, pid, email="Same@Example.org")
    with pytest.raises(asyncpg.UniqueViolationError):
        await add_signature(conn, pid, email="same@example.org")
    await add_signature(conn, pid, kind="organisation", organisation="Bus Workers", country="IR")
    with pytest.raises(asyncpg.UniqueViolationError):
        await add_signature(
            conn, pid, kind="organisation", organisation=" bus  WORKERS ", country="IR"
        )
    await add_signature(conn, pid, kind="organisation", organisation="Bus Workers", country="TR")
    for bad in (
        {"country": "gb"},
        {"display": "everyone"},
        {"status": "maybe"},
        {"name": "x" * 201},
        {"kind": "individual", "members": 5},
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await add_signature(conn, pid, **bad)
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO signatures (petition_id, kind, name, email, email_hash) "
            "VALUES ($1, 'individual', 'A', 'Not@Normalised.org', $2)",
            pid,
            b"x" * 32,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute("INSERT INTO petitions (slug) VALUES ('Bad Slug')")
    extensions = await conn.fetch("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")
    assert extensions == []


async def test_the_transparency_log_starts_with_the_signatures_already_counted(
    empty_db_url, tmp_path
):
    """A site upgraded to migration 0014 with signatures counted already: its log starts
    with one add per counted signature, oldest first, and nothing for the others."""
    from conftest import add_signature, make_petition
    from petitions.db import open_database
    from petitions.transparency import leaves, sequence

    before = tmp_path / "before"
    before.mkdir()
    for migration in read_migrations():
        if migration.name < "0014":
            shutil.copy(MIGRATIONS_DIR / migration.name, before / migration.name)
    await migrate(empty_db_url, before)
    conn = await asyncpg.connect(asyncpg_dsn(empty_db_url))
    try:
        pid = await make_petition(conn)
        counted = [await add_signature(conn, pid) for _ in range(3)]
        await add_signature(conn, pid, status="pending")
        await add_signature(conn, pid, status="withdrawn")
        await migrate(empty_db_url)
        db = open_database(empty_db_url)
        await db.connect()
        try:
            assert await sequence(db) == 3
        finally:
            await db.disconnect()
        logged = await leaves(conn, pid, 0, 10)
        assert [leaf.kind for leaf in logged] == ["add"] * 3
        assert await conn.fetchval("SELECT count(*) FROM log_queue") == 0
        # Each add has its own commitment (no receipt exists for these signers).
        assert len({leaf.commitment for leaf in logged}) == len(counted)
        state = await conn.fetchrow("SELECT size, count FROM log_state WHERE petition_id = $1", pid)
        assert tuple(state) == (3, 3)
    finally:
        await conn.close()
