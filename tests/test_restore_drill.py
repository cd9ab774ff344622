"""The restore drill of docs/operations.md ("Backups and a restore drill"), step by step,
with the PostgreSQL binaries the embedded server ships (pg_dump, createdb, pg_restore):
a database with signatures is dumped, restored into a fresh database, and `petitions`
run against the copy gives the same export, the same count.json, and a transparency
log that `petitions audit` accepts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pgserver
import pytest
from served import start_serving, stop

from conftest import SECRET, add_signature, free_port, make_petition
from petitions import transparency
from petitions.db import open_database, with_database_name
from petitions.log_keys import log_key_for
from petitions.signing import verify_signature, withdraw_signature

pytestmark = pytest.mark.slow

BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"
SLUG = "release-them"


def run(*command: str, env: dict | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert done.returncode == 0, f"{command[0]} failed: {done.stdout}{done.stderr}"
    return done.stdout


def petitions_env(database_url: str, data_dir: Path, base_url: str) -> dict:
    """What every process of the restored site needs: the database, and the keys kept
    apart from the dump (here SECRET_KEY alone: DATA_KEY and LOG_KEY derive from it)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(data_dir),
        "BASE_URL": base_url,
        "LOG_LEVEL": "WARNING",
    }


def petitions(*arguments: str, env: dict) -> str:
    return run(sys.executable, "-m", "petitions.cli", *arguments, env=env)


async def count_json(base: str) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{base}/p/{SLUG}/count.json")).json()


@pytest.fixture
async def site_with_signatures(db_url, settings, conn):
    """A petition with signatures of every kind and status, confirmed through the app
    (receipts, tallies, live events), some withdrawn, its log sequenced and a head
    signed for the address the restored copy will be served at; (base URL, port)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    pid = await make_petition(conn, goal=500)
    pending = [
        await add_signature(conn, pid, status="pending", country=c, display=d, kind=k)
        for c, d, k in (
            ("IR", "public", "individual"), ("GB", "initials", "individual"),
            ("BR", "anonymous", "individual"), ("FR", "public", "organisation"),
        ) * 6
    ]  # fmt: skip
    db = open_database(db_url)
    await db.connect()
    try:
        for signature in pending[:20]:
            await verify_signature(db, signature["public_id"])
        for signature in pending[:20:7]:
            await withdraw_signature(db, signature["public_id"])
        await add_signature(conn, pid, status="held", name="Held Person")
        await transparency.sequence(db)
        await transparency.sign_due_heads(db, log_key_for(settings), base, 0)
    finally:
        await db.disconnect()
    return base, port


async def test_a_dump_restored_into_a_fresh_database_serves_the_same_petition(
    site_with_signatures, db_url, pg_server_url, tmp_path
):
    base, port = site_with_signatures
    env = petitions_env(db_url, tmp_path, base)
    dump = tmp_path / "petitions.dump"
    drill_name = f"petitions_drill_{uuid.uuid4().hex[:8]}"
    drill_url = with_database_name(pg_server_url, drill_name)
    drill_env = petitions_env(drill_url, tmp_path, base)
    server = None

    # What the original answers at the time of the dump.
    original_csv = tmp_path / "original.csv"
    petitions("export", SLUG, "-o", str(original_csv), env=env)
    original = start_serving(port, env, tmp_path)
    try:
        original_count = await count_json(base)
    finally:
        stop(original)
    assert original_count["count"] == 17  # 20 confirmed, 3 of them withdrawn; held: not counted

    # 1. The nightly dump.
    run(str(BIN / "pg_dump"), "--format=custom", f"--file={dump}", f"--dbname={db_url}")
    assert dump.stat().st_size > 0
    try:
        # 2. A fresh database, and the dump restored into it.
        run(
            str(BIN / "createdb"),
            f"--maintenance-db={with_database_name(pg_server_url, 'postgres')}",
            drill_name,
        )
        run(
            str(BIN / "pg_restore"), "--exit-on-error", "--single-transaction", "--no-owner",
            f"--dbname={drill_url}", str(dump),
        )  # fmt: skip
        # 3. Migrations: nothing to apply, every checksum matches.
        petitions("migrate", env=drill_env)
        # 4. The export of the copy is the original's, byte for byte.
        restored_csv = tmp_path / "restored.csv"
        petitions("export", SLUG, "-o", str(restored_csv), env=drill_env)
        assert restored_csv.read_bytes() == original_csv.read_bytes()
        assert original_csv.read_text().count("\n") == 1 + 17  # the header and the counted
        # 5. Served at the site's address: the same count, and the log audits.
        server = start_serving(port, drill_env, tmp_path)
        assert await count_json(base) == original_count
        audited = petitions("audit", f"{base}/p/{SLUG}", env=drill_env)
        assert "leaves: 23\n" in audited and "count: 17\n" in audited, audited
        assert audited.rstrip().endswith("OK"), audited
    finally:
        if server is not None:
            stop(server)
        # 6. The drill's database goes.
        run(
            str(BIN / "dropdb"), "--if-exists", "--force",
            f"--maintenance-db={with_database_name(pg_server_url, 'postgres')}", drill_name,
        )  # fmt: skip
