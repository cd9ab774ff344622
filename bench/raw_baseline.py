"""The database's own pace, for the write figures: raw asyncpg, no web stack.

    python bench/raw_baseline.py sign --dsn DSN [--concurrency 16] [--duration 20]
    python bench/raw_baseline.py confirm --dsn DSN --ids FILE [--concurrency 64] [--duration 20]

`sign` commits what a sign request stores, the signature row and its confirmation
email's outbox row, in one statement and one commit per transaction: every column
copied from the newest signature the app stored in this database (so the sealed
fields, hashes and email are the app's own sizes), with a new public id and email
hash each time; the copies are deleted afterwards (their sealed fields are bound to
the row they came from, so they would fail the app's data-key check). `confirm` runs the single-row UPDATE of a confirmation on pending
signatures (public ids in FILE, one each), so the same triggers fire. Prints one
JSON line: transactions, seconds, per_second, p50_ms, p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

import asyncpg

_COLUMNS = """
SELECT attname FROM pg_attribute
 WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
   AND attgenerated = '' AND attidentity = ''
 ORDER BY attnum
"""

# Set by the statement, not copied from the template row.
_SIGNATURE_SET = {"public_id": "$1", "email_hash": "$2", "created_at": "now()",
                  "updated_at": "now()"}  # fmt: skip
_OUTBOX_SET = {"signature_id": "s.id", "created_at": "now()", "next_attempt_at": "now()",
               "message_id": "$3", "status": "'waiting'"}  # fmt: skip

_TEMPLATE = """
SELECT s.id AS signature_id, o.id AS outbox_id
  FROM signatures s JOIN outbox o ON o.signature_id = s.id AND o.purpose = 'verification'
 WHERE s.kind = 'individual' AND s.status = 'pending'
 ORDER BY s.id DESC LIMIT 1
"""

CONFIRM = """
UPDATE signatures SET status = 'verified', verified_at = now(), updated_at = now()
 WHERE public_id = $1 AND status = 'pending'
"""


async def _insert_statement(conn: asyncpg.Connection) -> tuple[str, list]:
    """The two-row insert and its fixed arguments (from the template rows)."""
    template = await conn.fetchrow(_TEMPLATE)
    if template is None:
        raise SystemExit("no signature with its confirmation email to copy: sign first")
    signature = await conn.fetchrow(
        "SELECT * FROM signatures WHERE id = $1", template["signature_id"]
    )
    outbox = await conn.fetchrow("SELECT * FROM outbox WHERE id = $1", template["outbox_id"])
    arguments: list = []

    def values(table_columns: list[str], fixed: dict[str, str], row) -> list[str]:
        out = []
        for column in table_columns:
            if column in fixed:
                out.append(fixed[column])
            else:
                arguments.append(row[column])
                out.append(f"${len(arguments) + 3}")
        return out

    signature_columns = [r["attname"] for r in await conn.fetch(_COLUMNS, "signatures")]
    outbox_columns = [r["attname"] for r in await conn.fetch(_COLUMNS, "outbox")]
    signature_values = values(signature_columns, _SIGNATURE_SET, signature)
    outbox_values = values(outbox_columns, _OUTBOX_SET, outbox)
    statement = f"""
    WITH s AS (
        INSERT INTO signatures ({", ".join(signature_columns)})
        VALUES ({", ".join(signature_values)})
        RETURNING id
    )
    INSERT INTO outbox ({", ".join(outbox_columns)})
    SELECT {", ".join(outbox_values)} FROM s
    RETURNING signature_id
    """
    return statement, arguments


async def _measure(workers: int, duration: float, transaction) -> dict:
    latencies: list[float] = []
    deadline = time.monotonic() + duration

    async def worker(n: int) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            if not await transaction(n):
                return
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    seconds = time.monotonic() - started
    latencies.sort()
    quantile = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "transactions": len(latencies),
        "seconds": round(seconds, 3),
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(quantile[49] * 1000, 2),
        "p99_ms": round(quantile[98] * 1000, 2),
    }


async def sign(dsn: str, concurrency: int, duration: float) -> dict:
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:
        async with pool.acquire() as conn:
            statement, arguments = await _insert_statement(conn)

        inserted: list[int] = []

        async def transaction(_n: int) -> bool:
            async with pool.acquire() as conn:
                inserted.append(
                    await conn.fetchval(
                        statement,
                        uuid.uuid4(),
                        os.urandom(32),
                        f"<{uuid.uuid4()}@bench>",
                        *arguments,
                    )  # fmt: skip
                )
            return True

        result = await _measure(concurrency, duration, transaction)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM outbox WHERE signature_id = ANY($1)", inserted)
            await conn.execute("DELETE FROM signatures WHERE id = ANY($1)", inserted)
        return result
    finally:
        await pool.close()


async def confirm(dsn: str, ids: list[uuid.UUID], concurrency: int, duration: float) -> dict:
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    waiting = iter(ids)
    confirmed = 0

    async def transaction(_n: int) -> bool:
        nonlocal confirmed
        public_id = next(waiting, None)
        if public_id is None:
            return False
        async with pool.acquire() as conn:
            if await conn.execute(CONFIRM, public_id) == "UPDATE 1":
                confirmed += 1
        return True

    try:
        result = await _measure(concurrency, duration, transaction)
    finally:
        await pool.close()
    return {
        **result,
        "confirmed": confirmed,
        "ids": len(ids),
        "ran_out": next(waiting, None) is None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("sign", "confirm"))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--ids", help="confirm: a file of pending public ids, one a line")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20)
    args = parser.parse_args()
    import uvloop

    if args.mode == "sign":
        result = uvloop.run(sign(args.dsn, args.concurrency, args.duration))
    else:
        with open(args.ids) as f:
            ids = [uuid.UUID(line.strip()) for line in f if line.strip()]
        result = uvloop.run(confirm(args.dsn, ids, args.concurrency, args.duration))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
