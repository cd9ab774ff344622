"""Apply the numbered .sql files in migrations/, once each, in order."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .db import asyncpg_dsn
from .paths import MIGRATIONS_DIR

log = logging.getLogger(__name__)

# Any fixed number will do; every process that migrates takes the same lock.
MIGRATION_LOCK_KEY = 7_342_001
MIGRATION_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """A migration cannot be applied safely; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def read_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        if not MIGRATION_NAME.match(path.name):
            raise MigrationError(f"{path.name}: migration files are named like 0001_schema.sql")
        migrations.append(Migration(path.name, path.read_text(encoding="utf-8")))
    if not migrations:
        raise MigrationError(f"no migrations found in {directory}")
    return migrations


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call.

    An advisory lock serialises concurrent callers, so each file is applied once
    even when several processes start together. A file changed after it was
    applied is refused: write a new migration instead.
    """
    migrations = read_migrations(directory)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            return await _apply_pending(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            name       text PRIMARY KEY,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    applied = {
        r["name"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")
    }
    for migration in migrations:
        recorded = applied.get(migration.name)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"{migration.name} was changed after it was applied to this database "
                f"(recorded checksum {recorded[:12]}, file {migration.checksum[:12]}). "
                "Applied migrations are never edited: restore the file and add a new migration."
            )
    unknown = sorted(set(applied) - {m.name for m in migrations})
    if unknown:
        log.warning("database has migrations this version does not know: %s", ", ".join(unknown))

    done = []
    for migration in migrations:
        if migration.name in applied:
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                migration.name,
                migration.checksum,
            )
        log.info("applied migration %s", migration.name)
        done.append(migration.name)
    return done
