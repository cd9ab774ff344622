"""Keeping signer data sealed: rows still in clear are sealed, old keys are rotated out.

- `seal_clear_rows`: the Python half of migration 0006. SQL cannot encrypt, so
  rows stored in clear before it (and anything written in clear since, such as
  the demo's bulk load) are sealed here and their clear columns emptied, in
  short batches. Every start (`petitions migrate`, `serve`, `worker`, `demo`,
  `export`, `create-admin`) and `petitions rotate-key` run it; a database with
  nothing in clear costs one index look-up per table.
- `rotate`: `petitions rotate-key`. Re-seals every value not sealed under the
  current DATA_KEY, online: batches of rows taken by id, each batch one short
  transaction that locks its rows with FOR UPDATE SKIP LOCKED (a row someone is
  changing at that moment is left for the next pass), until no value is left
  under another key.
- `check_data_key`: at start, opens the newest and the oldest sealed values, so
  a wrong DATA_KEY stops the process with a message that names the keys,
  instead of failing on every page later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from . import totp
from .crypto import (
    OUTBOX_CONTEXT,
    Cipher,
    DataKeyError,
    cipher_for,
    key_id_of,
    signature_context,
)
from .db import asyncpg_dsn
from .mail import open_outbox, seal_outbox
from .migrations import migrate
from .personal import personal_of, stored_columns

log = logging.getLogger(__name__)

BATCH = 500
MAX_PASSES = 20  # rotation passes over rows that were locked by someone else


# Sealing what is still in clear ----------------------------------------------------

_CLEAR_SIGNATURES = """
SELECT id, public_id, kind, display, country, sealed, name, email, city, occupation,
       organisation, organisation_type, website, members, comment
  FROM signatures
 WHERE sealed IS NULL AND (name IS NOT NULL OR email IS NOT NULL) AND id > $1
 ORDER BY id
 LIMIT $2
   FOR UPDATE SKIP LOCKED
"""

# One statement per batch (the table's statement triggers run once, not per row).
# Search hashes travel as comma-separated hex: arrays of arrays must be rectangular.
_SEAL_SIGNATURES = """
UPDATE signatures s
   SET sealed = u.sealed, email_hash = coalesce(s.email_hash, u.email_hash),
       organisation_hash = u.organisation_hash,
       search_hashes = CASE WHEN u.search IS NOT NULL THEN
           ARRAY(SELECT decode(h, 'hex') FROM unnest(string_to_array(u.search, ',')) AS h) END,
       initials = u.initials, name = u.name, city = u.city, occupation = u.occupation,
       organisation = u.organisation, organisation_type = u.organisation_type,
       website = u.website, members = u.members, comment = u.comment, email = NULL
  FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
              $13::int[], $14::text[])
       AS u(id, sealed, email_hash, organisation_hash, search, initials, name, city,
            occupation, organisation, organisation_type, website, members, comment)
 WHERE s.id = u.id
"""

_CLEAR_OUTBOX = """
SELECT id, recipient, body_text, body_html, headers, sealed
  FROM outbox
 WHERE sealed IS NULL AND recipient IS NOT NULL AND id > $1
 ORDER BY id
 LIMIT $2
   FOR UPDATE SKIP LOCKED
"""

_SEAL_OUTBOX = """
UPDATE outbox o SET sealed = u.sealed, recipient = NULL, body_text = NULL, body_html = NULL,
                    headers = '{}'
  FROM unnest($1::bigint[], $2::bytea[]) AS u(id, sealed)
 WHERE o.id = u.id
"""


@dataclass
class SealReport:
    signatures: int = 0
    emails: int = 0
    duplicates: list[int] = field(default_factory=list)  # organisations that count twice


def _signature_values(cipher: Cipher, secret_key: str, row, personal: dict) -> tuple:
    stored = stored_columns(
        cipher, secret_key, row["public_id"], row["kind"], row["display"], row["country"],
        personal,
    )  # fmt: skip
    search = stored["search_hashes"]
    return (
        row["id"], stored["sealed"], stored["email_hash"], stored["organisation_hash"],
        ",".join(h.hex() for h in search) if search else None, stored["initials"],
        stored["name"], stored["city"], stored["occupation"], stored["organisation"],
        stored["organisation_type"], stored["website"], stored["members"], stored["comment"],
    )  # fmt: skip


def _columns(values: list[tuple]) -> list[list]:
    """Rows of values as the arrays of one UPDATE ... FROM unnest(...)."""
    return [list(column) for column in zip(*values, strict=True)]


async def _each_batch(conn: asyncpg.Connection, query: str, batch: int, work, *args) -> int:
    """`work(rows)` on `query`'s rows a batch at a time (ids after the last batch's), each
    batch in a short transaction of its own; return how many rows there were."""
    done = last = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(query, last, batch, *args)
            if not rows:
                return done
            last = rows[-1]["id"]
            await work(rows)
        done += len(rows)


async def seal_clear_rows(
    conn: asyncpg.Connection, cipher: Cipher, secret_key: str, batch: int = BATCH
) -> SealReport:
    """Seal every signature and email still in clear; idempotent."""
    report = SealReport()

    async def seal_signatures(rows) -> None:
        values = [_signature_values(cipher, secret_key, r, personal_of(cipher, r)) for r in rows]
        try:
            async with conn.transaction():
                await conn.execute(_SEAL_SIGNATURES, *_columns(values))
        except asyncpg.UniqueViolationError:
            # Two counted signatures that the new folding (look-alike letters) makes
            # one organisation: seal them one by one, and leave the second without
            # an organisation hash, counted as before.
            for value in values:
                try:
                    async with conn.transaction():
                        await conn.execute(_SEAL_SIGNATURES, *_columns([value]))
                except asyncpg.UniqueViolationError:
                    alone = (*value[:3], None, *value[4:])
                    await conn.execute(_SEAL_SIGNATURES, *_columns([alone]))
                    report.duplicates.append(value[0])

    async def seal_emails(rows) -> None:
        values = []
        for row in rows:
            content = open_outbox(cipher, row)
            sealed = seal_outbox(
                cipher, content["recipient"], content["body_text"], content["body_html"],
                content["headers"],
            )  # fmt: skip
            values.append((row["id"], sealed))
        await conn.execute(_SEAL_OUTBOX, *_columns(values))

    report.signatures = await _each_batch(conn, _CLEAR_SIGNATURES, batch, seal_signatures)
    report.emails = await _each_batch(conn, _CLEAR_OUTBOX, batch, seal_emails)
    if report.signatures or report.emails:
        log.info("sealed %d signatures and %d emails that were in clear",
                 report.signatures, report.emails)  # fmt: skip
    for signature_id in report.duplicates:
        log.warning(
            "signature %d names an organisation that already counts once its name is folded "
            "for look-alike letters; it stays counted, without an organisation hash: a "
            "moderator may reject one of the two",
            signature_id,
        )
    return report


# Rotating the data key -------------------------------------------------------------

# Key ids are bytes 2-5 of a sealed value (crypto.py).
_OLD_SIGNATURES = """
SELECT id, public_id, sealed FROM signatures
 WHERE id > $1 AND sealed IS NOT NULL AND substring(sealed FROM 2 FOR 4) <> $3
 ORDER BY id LIMIT $2
   FOR UPDATE SKIP LOCKED
"""
_OLD_EMAILS = """
SELECT id, sealed FROM outbox
 WHERE id > $1 AND sealed IS NOT NULL AND substring(sealed FROM 2 FOR 4) <> $3
 ORDER BY id LIMIT $2
   FOR UPDATE SKIP LOCKED
"""
_REMAINING = """
SELECT (SELECT count(*) FROM signatures
         WHERE sealed IS NOT NULL AND substring(sealed FROM 2 FOR 4) <> $1),
       (SELECT count(*) FROM outbox
         WHERE sealed IS NOT NULL AND substring(sealed FROM 2 FOR 4) <> $1)
"""


@dataclass
class RotationReport:
    signatures: int = 0
    emails: int = 0
    passes: int = 0
    remaining: tuple[int, int] = (0, 0)  # under another key still (rows locked throughout)


async def rotate(
    conn: asyncpg.Connection,
    cipher: Cipher,
    batch: int = BATCH,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-seal every sealed value that is not under the current key (online)."""
    report = RotationReport()
    current = cipher.current.id
    tables = (
        ("signatures", _OLD_SIGNATURES, lambda row: signature_context(row["public_id"])),
        ("outbox", _OLD_EMAILS, lambda row: OUTBOX_CONTEXT),
    )
    while report.passes < MAX_PASSES:
        report.passes += 1
        for table, query, context in tables:

            async def reseal(rows, table=table, context=context) -> None:
                values = [
                    (r["id"], cipher.seal(cipher.open(r["sealed"], context(r)), context(r)))
                    for r in rows
                ]
                await conn.execute(
                    f"UPDATE {table} t SET sealed = u.sealed"
                    " FROM unnest($1::bigint[], $2::bytea[]) AS u(id, sealed) WHERE t.id = u.id",
                    *_columns(values),
                )
                if table == "signatures":
                    report.signatures += len(rows)
                else:
                    report.emails += len(rows)
                if progress is not None:
                    progress(report)

            await _each_batch(conn, query, batch, reseal, current)
        report.remaining = tuple(await conn.fetchrow(_REMAINING, current))
        if report.remaining == (0, 0):
            break
    async with conn.transaction():  # a handful of rows: the admins' second-factor secrets
        await totp.reseal(conn, cipher)
    # The export's blocks are a cache: emptied, the worker makes them again under the
    # current key (re-sealing a confirmed signature above emptied its block already).
    await conn.execute(
        "UPDATE export_blocks SET sealed = NULL"
        " WHERE sealed IS NOT NULL AND substring(sealed FROM 2 FOR 4) <> $1",
        current,
    )
    return report


# Checking the key at start --------------------------------------------------------


async def check_data_key(conn: asyncpg.Connection, cipher: Cipher) -> None:
    """Open the newest and oldest sealed values; DataKeyError, saying which key is
    missing, when this process cannot read the database's data."""
    for table, context in (
        ("signatures", lambda row: signature_context(row["public_id"])),
        ("outbox", lambda row: OUTBOX_CONTEXT),
    ):
        columns = "public_id, sealed" if table == "signatures" else "sealed"
        for order in ("DESC", "ASC"):
            row = await conn.fetchrow(
                f"SELECT {columns} FROM {table} WHERE sealed IS NOT NULL ORDER BY id {order} LIMIT 1"
            )
            if row is None:
                break
            try:
                cipher.open(row["sealed"], context(row))
            except DataKeyError as error:
                raise DataKeyError(
                    f"This DATA_KEY cannot read the signer data in this database: {error}"
                ) from None
            if order == "ASC" and not cipher.is_current(row["sealed"]):
                log.warning(
                    "%s holds values sealed under data key %s, not the current %s: run "
                    "`petitions rotate-key`", table, key_id_of(row["sealed"]),
                    cipher.current.hex_id,
                )  # fmt: skip


# At start ----------------------------------------------------------------------------


async def prepare_database(url: str, settings) -> list[str]:
    """Apply pending migrations, seal what is in clear, check the data key; return
    the migrations applied. What every command does before it uses the database."""
    applied = await migrate(url)
    cipher = cipher_for(settings)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await check_data_key(conn, cipher)
        await seal_clear_rows(conn, cipher, settings.secret_key)
    finally:
        await conn.close()
    return applied
