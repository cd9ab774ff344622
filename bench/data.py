"""The benchmark databases and what the load scripts read: form tokens, confirmation links."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
from servers import SLUG, Cluster

from petitions.demo import (
    GeneratedSignature,
    GenerationRun,
    SignerPool,
    add_generated_signatures,
    generated_signatures,
    load_demo,
)
from petitions.sealing import prepare_database
from petitions.settings import load_settings
from petitions.tokens import Tokens

COPY_BATCH = 25_000


def _settings(cluster: Cluster, database: str):
    return load_settings(
        {"DATABASE_URL": cluster.database_url(database), "SECRET_KEY": cluster.secret_key,
         "DATA_DIR": str(cluster.data_dir)},
        env_file=None,
    )  # fmt: skip


async def _admin(cluster: Cluster, sql: str) -> None:
    conn = await asyncpg.connect(cluster.dsn("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def signature_count(cluster: Cluster, database: str) -> int | None:
    """Signatures of the demo petition, or None when the database is not there."""
    try:
        conn = await asyncpg.connect(cluster.dsn(database))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM signatures s JOIN petitions p ON p.id = s.petition_id"
            " WHERE p.slug = $1",
            SLUG,
        )
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


async def demo_database(cluster: Cluster, database: str, fresh: bool) -> None:
    """Migrated, with the demo petition (360 signatures); dropped first when `fresh`."""
    if fresh:
        await _admin(cluster, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if await signature_count(cluster, database) is None:
        await _admin(cluster, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await _admin(cluster, f'CREATE DATABASE "{database}"')
    url = cluster.database_url(database)
    await prepare_database(url, _settings(cluster, database))
    await load_demo(url, cluster.secret_key)


async def grow_to(cluster: Cluster, database: str, signatures: int) -> tuple[int, float]:
    """Add generated verified signatures until the demo petition has `signatures`
    (`petitions demo --signatures N`'s path: COPY in batches, then sealing);
    the count now and the seconds it took."""
    started = time.monotonic()
    have = await signature_count(cluster, database) or 0
    if have < signatures:
        url = cluster.database_url(database)
        print(f"loading {signatures - have:,} signatures into {database}", flush=True)
        await add_generated_signatures(url, cluster.secret_key, SLUG, signatures - have)
        await prepare_database(url, _settings(cluster, database))  # seals them
        have = signatures
    return have, time.monotonic() - started


async def add_pending(cluster: Cluster, database: str, count: int) -> None:
    """`count` pending individual signatures with public display (as if signed and not
    yet confirmed), loaded like `petitions demo` loads verified ones, then sealed."""
    url = cluster.database_url(database)
    conn = await asyncpg.connect(cluster.dsn(database))
    try:
        petition = await conn.fetchrow(
            """SELECT p.id, now() AS now,
                      (SELECT v.id FROM statement_versions v WHERE v.petition_id = p.id
                        ORDER BY v.version DESC LIMIT 1) AS version_id
                 FROM petitions p WHERE p.slug = $1""",
            SLUG,
        )
        run = GenerationRun(
            cluster.secret_key, petition["id"], petition["version_id"], secrets.token_hex(4)
        )
        now = petition["now"]
        pool = SignerPool(random.Random(run.token), now - timedelta(hours=1), now)
        done = 0
        while done < count:
            rows = [
                row._replace(
                    kind="individual",
                    display="public",
                    status="pending",
                    verified_at=None,
                    updated_at=row.created_at,
                    organisation=None,
                    organisation_type=None,
                    website=None,
                    members=None,
                )  # fmt: skip
                for row in generated_signatures(run, pool, done + 1, min(COPY_BATCH, count - done))
            ]
            await conn.copy_records_to_table(
                "signatures", records=rows, columns=GeneratedSignature._fields
            )
            done += len(rows)
    finally:
        await conn.close()
    await prepare_database(url, _settings(cluster, database))


async def pending_public_ids(cluster: Cluster, database: str) -> list[uuid.UUID]:
    """Pending signatures of the demo petition, in a random order."""
    conn = await asyncpg.connect(cluster.dsn(database))
    try:
        rows = await conn.fetch(
            "SELECT s.public_id FROM signatures s JOIN petitions p ON p.id = s.petition_id"
            " WHERE p.slug = $1 AND s.status = 'pending' AND s.hold_reason IS NULL",
            SLUG,
        )
    finally:
        await conn.close()
    ids = [r["public_id"] for r in rows]
    random.shuffle(ids)
    return ids


async def export_blocks(cluster: Cluster, database: str, drop: bool = False) -> dict[str, int]:
    """The demo petition's export blocks (petitions/export_blocks.py): how many are
    ready and emptied, the confirmed signatures they hold and all its confirmed
    signatures. With `drop`, delete them first (an export as after a bulk load,
    before the worker made any)."""
    conn = await asyncpg.connect(cluster.dsn(database))
    try:
        petition_id = await conn.fetchval("SELECT id FROM petitions WHERE slug = $1", SLUG)
        if drop:
            await conn.execute("DELETE FROM export_blocks WHERE petition_id = $1", petition_id)
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE sealed IS NOT NULL) AS ready,"
            "       count(*) FILTER (WHERE sealed IS NULL) AS emptied,"
            "       coalesce(sum(signatures) FILTER (WHERE sealed IS NOT NULL), 0) AS held,"
            "       (SELECT count(*) FROM signatures"
            "         WHERE petition_id = $1 AND status = 'verified') AS confirmed"
            "  FROM export_blocks WHERE petition_id = $1",
            petition_id,
        )
        return dict(row)
    finally:
        await conn.close()


async def transactions(cluster: Cluster, database: str) -> int:
    """Transactions the database has counted (committed and rolled back)."""
    conn = await asyncpg.connect(cluster.dsn("postgres"))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
    finally:
        await conn.close()


def write_form_tokens(cluster: Cluster, path: Path, count: int) -> Path:
    """`count` sign-form tokens, as the petition page hands them out."""
    tokens = Tokens(cluster.secret_key)
    path.write_text("".join(tokens.form_token(SLUG) + "\n" for _ in range(count)))
    return path


def write_verify_paths(cluster: Cluster, public_ids: list[uuid.UUID], path: Path) -> Path:
    """The confirmation links the emails would carry."""
    tokens = Tokens(cluster.secret_key)
    path.write_text("".join(f"/verify/{tokens.signature_link('verify', p)}\n" for p in public_ids))
    return path


def write_ids(public_ids: list[uuid.UUID], path: Path) -> Path:
    path.write_text("".join(f"{p}\n" for p in public_ids))
    return path


def run(coroutine):
    return asyncio.run(coroutine)
