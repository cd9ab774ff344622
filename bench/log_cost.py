"""What the transparency log costs the confirmation path, and what serving it costs.

    python bench/log_cost.py [--signatures 20000] [--concurrency 32 64]

Starts an embedded PostgreSQL in a temporary directory (loopback only, stopped at
the end) and, for one petition with N pending signatures (bulk-inserted, then
sealed as the signing flow stores them), confirms all of them with
`signature.confirm` from C connections at once, each way on a fresh copy of the
data (CREATE DATABASE ... TEMPLATE):

  (a) no log: the update trigger that queues changes disabled;
  (b0) the shipped triggers, no sequencer running (the queue row alone);
  (b) the shipped design: each change queued as a row of its own (migration 0014),
      the sequencer running in the same process (poll 0.2 s), as the worker does;
      a few confirmations are followed until a signed head covers them;
  (c) appending inside the confirming transaction (this file only): the trigger
      takes the next index from `log_state` (one row per petition) and inserts the
      leaf with its hash computed in SQL; a lower bound (no subtree hashes).

Each way is measured on two paths: `signature.confirm` alone (one statement), and
the whole confirmation, `signing.verify_signature` with the receipt email (composed,
sealed and queued in the same transaction, so (c) holds the log's row meanwhile).
Then (d) `verify_signature` with and without the receipt email; (e) the sequencer
draining a backlog of 100,000 queued changes; (f) serving log.json, entries.json
(pages of 10,000) and proof.json of random leaves from a log of 100,000+ leaves,
through the ASGI app in-process (httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SECRET = "bench-secret-key-" + "x" * 32
SLUG = "log-bench"
TEMPLATE = "log_bench_template"
MERGE_SAMPLES = 8

_PENDING = """
INSERT INTO signatures (petition_id, version_id, kind, status, display, name, email,
                        email_hash, country, language, created_at, updated_at)
SELECT $1, $2, 'individual', 'pending', 'initials', 'Signer ' || g,
       'bench-' || g || '@example.org', sha256(convert_to('bench-' || g, 'UTF8')),
       'SE', 'en', now(), now()
  FROM generate_series(1, $3) g
"""

# Counted signatures each with a receipt commitment: 100,000 queued changes at once.
_VERIFIED = """
INSERT INTO signatures (petition_id, version_id, kind, status, display, name, email_hash,
                        country, language, created_at, verified_at, updated_at,
                        receipt_commitment)
SELECT $1, $2, 'individual', 'verified', 'anonymous', 'Signer ' || g,
       sha256(convert_to('backlog-' || g, 'UTF8')), 'SE', 'en', now(), now(), now(),
       sha256(convert_to('receipt-' || g || '-' || random(), 'UTF8'))
  FROM generate_series(1, $3) g
"""

# (c): the leaf written in the confirming transaction, its index taken from the
# petition's one log_state row. Only adds: the confirmations are all this measures.
_IN_TRANSACTION = r"""
CREATE OR REPLACE FUNCTION signatures_log_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
    next_index bigint;
    data bytea;
BEGIN
    FOR r IN
        SELECT n.petition_id, n.id, n.receipt_commitment AS commitment,
               coalesce(v.version, 0) AS version, date_trunc('hour', now(), 'UTC') AS hour
          FROM new_rows n JOIN old_rows o ON o.id = n.id
          LEFT JOIN statement_versions v ON v.id = n.version_id
         WHERE counted_status(n.status) AND NOT counted_status(o.status)
         ORDER BY n.id
    LOOP
        UPDATE log_state SET size = size + 1, count = count + 1
         WHERE petition_id = r.petition_id
        RETURNING size - 1 INTO next_index;
        data := convert_to(concat_ws(E'\t', 'add',
                    to_char(r.hour AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24"Z"'),
                    r.version, encode(r.commitment, 'hex')), 'UTF8');
        INSERT INTO log_leaves (petition_id, leaf_index, kind, hour, version, commitment,
                                leaf_hash, signature_id)
        VALUES (r.petition_id, next_index, 'add', r.hour, r.version, r.commitment,
                sha256('\x00'::bytea || data), r.id);
    END LOOP;
    RETURN NULL;
END $$;
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, count: int, seconds: float, latencies: list[float]) -> str:
    ms = [x * 1000 for x in latencies]
    return (
        f"{name}: {count:,} in {seconds:.2f} s = {count / seconds:,.0f}/s; latency ms "
        f"p50 {percentile(ms, 50):.1f}, p95 {percentile(ms, 95):.1f}, "
        f"p99 {percentile(ms, 99):.1f}, max {max(ms):.1f}"
    )


class Bench:
    def __init__(self, server_uri: str) -> None:
        from petitions.db import with_database_name

        self.server_uri = server_uri
        self.url_of = lambda name: with_database_name(server_uri, name)

    async def admin(self, sql: str) -> None:
        import asyncpg

        from petitions.db import asyncpg_dsn

        conn = await asyncpg.connect(asyncpg_dsn(self.server_uri))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def show_settings(self) -> None:
        import asyncpg

        from petitions.db import asyncpg_dsn

        conn = await asyncpg.connect(asyncpg_dsn(self.server_uri))
        try:
            names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            shown = [f"{n} {await conn.fetchval(f'SHOW {n}')}" for n in names]
        finally:
            await conn.close()
        print("PostgreSQL: " + ", ".join(shown))

    async def connect(self, name: str):
        import asyncpg

        from petitions.db import asyncpg_dsn

        return await asyncpg.connect(asyncpg_dsn(self.url_of(name)))

    async def migrated(self, name: str) -> int:
        """A new migrated database with the open petition; its id."""
        from crypto_cost import make_open_petition

        from petitions.db import ensure_database
        from petitions.migrations import migrate

        await ensure_database(self.server_uri, name)
        await migrate(self.url_of(name))
        await make_open_petition(self.url_of(name), SLUG)
        conn = await self.connect(name)
        try:
            return await conn.fetchval("SELECT id FROM petitions WHERE slug = $1", SLUG)
        finally:
            await conn.close()

    async def petition(self, conn) -> tuple[int, int]:
        return tuple(
            await conn.fetchrow(
                "SELECT p.id, (SELECT max(v.id) FROM statement_versions v"
                " WHERE v.petition_id = p.id) FROM petitions p WHERE p.slug = $1",
                SLUG,
            )
        )

    async def make_template(self, n: int) -> None:
        from petitions.crypto import make_cipher
        from petitions.sealing import seal_clear_rows

        await self.migrated(TEMPLATE)
        conn = await self.connect(TEMPLATE)
        try:
            petition_id, version_id = await self.petition(conn)
            started = time.perf_counter()
            await conn.execute(_PENDING, petition_id, version_id, n)
            await seal_clear_rows(conn, make_cipher(SECRET), SECRET)
            await conn.execute("VACUUM ANALYZE")
            print(f"template: {n:,} pending signatures inserted and sealed in "
                  f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        finally:
            await conn.close()

    async def fresh_copy(self, name: str) -> list:
        """A copy of the template; its pending signatures' public ids, shuffled."""
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        conn = await self.connect(name)
        try:
            ids = [r[0] for r in await conn.fetch("SELECT public_id FROM signatures")]
        finally:
            await conn.close()
        random.shuffle(ids)
        return ids

    async def drop(self, name: str) -> None:
        await self.admin(f"DROP DATABASE {name} WITH (FORCE)")


PATHS = {
    "confirm": "signature.confirm",
    "verify": "verify_signature + receipt email",
}
VARIANTS = {
    "a": "(a) no log",
    "q": "(b0) queued, no sequencer",
    "b": "(b) queued, sequencer running (shipped)",
    "c": "(c) appended in the confirming transaction",
}


async def confirm_all(url: str, ids: list, concurrency: int, path: str, followed=None):
    """Confirm every id from `concurrency` connections at once; (seconds, latencies).
    path "confirm": `signature.confirm` alone, one statement; "verify": the whole
    confirmation (`verify_signature`: confirm, the receipt made, its email composed,
    sealed and queued, one transaction). `followed(public_id, committed_at)` is told
    of each confirmation as it commits."""
    import asyncpg

    from petitions.db import asyncpg_dsn, open_database
    from petitions.mail import Mailer
    from petitions.settings import load_settings
    from petitions.signature import confirm
    from petitions.signing import verify_signature
    from petitions.transparency import receipt_commitment

    settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET}, env_file=None)
    mailer = Mailer(settings)
    # Either C connections of its own or a pool of C, not both (max_connections 100).
    db = open_database(url, max_size=concurrency)
    connections: list = [None] * concurrency
    if path == "confirm":
        connections = [await asyncpg.connect(asyncpg_dsn(url)) for _ in range(concurrency)]
    else:
        await db.connect()
    queue = iter(ids)
    latencies: list[float] = []

    async def worker(conn) -> None:
        for public_id in queue:
            started = time.perf_counter()
            if path == "confirm":
                state = await confirm(conn, public_id, receipt_commitment(os.urandom(32)))
            else:
                state = await verify_signature(db, public_id, mailer)
            done = time.perf_counter()
            latencies.append(done - started)
            assert state is not None and state.changed, state
            if followed is not None:
                followed(public_id, done)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        seconds = time.perf_counter() - started
        for conn in connections:
            if conn is not None:
                await conn.close()
        if path != "confirm":
            await db.disconnect()
    return seconds, latencies


async def confirmation_variants(bench: Bench, concurrencies: list[int], paths: list[str]) -> None:
    from petitions.db import open_database
    from petitions.settings import load_settings
    from petitions.transparency import run_sequencer

    for path in paths:
        for concurrency in concurrencies:
            for variant, label in VARIANTS.items():
                name = f"log_bench_{path}_{variant}_{concurrency}"
                ids = await bench.fresh_copy(name)
                url = bench.url_of(name)
                conn = await bench.connect(name)
                petition_id, _ = await bench.petition(conn)
                if variant == "a":
                    await conn.execute(
                        "ALTER TABLE signatures DISABLE TRIGGER signatures_log_update"
                    )
                elif variant == "c":
                    await conn.execute(_IN_TRANSACTION)
                    await conn.execute(
                        "INSERT INTO log_state (petition_id) VALUES ($1)", petition_id
                    )
                await conn.close()
                title = f"{PATHS[path]}, C={concurrency}, {label}"

                if variant != "b":
                    seconds, latencies = await confirm_all(url, ids, concurrency, path)
                    print(summary(title, len(ids), seconds, latencies))
                    if variant == "c":
                        await check_in_transaction_leaves(bench, name, petition_id, len(ids))
                    await bench.drop(name)
                    continue

                settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET}, env_file=None)
                db = open_database(url, max_size=2)
                await db.connect()
                stop = asyncio.Event()
                sequencer = asyncio.create_task(run_sequencer(db, settings, stop, poll_seconds=0.2))
                watcher = MergeWatcher(url, petition_id)
                await watcher.start()
                seconds, latencies = await confirm_all(
                    url, ids, concurrency, path, watcher.maybe_follow
                )
                print(summary(title, len(ids), seconds, latencies))
                ended = time.perf_counter()
                backlog = await watcher.queued()
                await watcher.wait_sequenced(len(ids))
                drained = time.perf_counter() - ended
                await watcher.wait_covered()
                stop.set()
                await sequencer
                await db.disconnect()
                await watcher.close()
                print(f"    queue at the end of the load: {backlog:,} changes, all sequenced "
                      f"{drained:.2f} s later; heads signed every {settings.log_head_seconds} s")  # fmt: skip
                print("    " + watcher.report())
                await bench.drop(name)


async def check_in_transaction_leaves(bench: Bench, name: str, petition_id: int, n: int) -> None:
    """(c) wrote one leaf per confirmation, numbered 0..n-1, hashed as log_format says."""
    from petitions import merkle
    from petitions.log_format import Leaf
    from petitions.log_keys import hour_text

    conn = await bench.connect(name)
    try:
        size, indexes = await conn.fetchrow(
            "SELECT (SELECT size FROM log_state WHERE petition_id = $1),"
            " (SELECT count(DISTINCT leaf_index) FROM log_leaves WHERE petition_id = $1)",
            petition_id,
        )
        assert size == indexes == n, (size, indexes, n)
        for r in await conn.fetch("SELECT * FROM log_leaves ORDER BY random() LIMIT 20"):
            leaf = Leaf(r["leaf_index"], "add", hour_text(r["hour"]), r["version"], r["commitment"])
            assert merkle.leaf_hash(leaf.data()) == r["leaf_hash"], r["leaf_index"]
    finally:
        await conn.close()


class MergeWatcher:
    """Follows a few confirmations until a leaf holds them and a signed head covers it."""

    def __init__(self, url: str, petition_id: int) -> None:
        self.url, self.petition_id = url, petition_id
        self.samples: dict = {}  # public id -> [committed, sequenced, covered]
        self.last = 0.0

    async def start(self) -> None:
        import asyncpg

        from petitions.db import asyncpg_dsn

        # One connection for the watching task, one for the waits (asyncpg: one query at a time).
        self.conn = await asyncpg.connect(asyncpg_dsn(self.url))
        self.watching = await asyncpg.connect(asyncpg_dsn(self.url))
        self.task = asyncio.create_task(self._watch())

    def maybe_follow(self, public_id, committed: float) -> None:
        if len(self.samples) < MERGE_SAMPLES and committed - self.last >= 0.5:
            self.last = committed
            self.samples[public_id] = [committed, None, None]

    async def _watch(self) -> None:
        while True:
            for public_id, times in list(self.samples.items()):
                if times[2] is not None:
                    continue
                row = await self.watching.fetchrow(
                    """SELECT l.leaf_index,
                              EXISTS (SELECT 1 FROM log_heads h WHERE h.petition_id = $2
                                         AND h.size > l.leaf_index) AS covered
                         FROM signatures s JOIN log_leaves l
                           ON l.signature_id = s.id AND l.kind = 'add'
                        WHERE s.public_id = $1""",
                    public_id, self.petition_id,
                )  # fmt: skip
                now = time.perf_counter()
                if row is not None and times[1] is None:
                    times[1] = now
                if row is not None and row["covered"]:
                    times[2] = now
            await asyncio.sleep(0.02)

    async def queued(self) -> int:
        return await self.conn.fetchval("SELECT count(*) FROM log_queue")

    async def wait_sequenced(self, n: int) -> None:
        while True:
            size = await self.conn.fetchval(
                "SELECT size FROM log_state WHERE petition_id = $1", self.petition_id
            )
            if size == n:
                return
            await asyncio.sleep(0.02)

    async def wait_covered(self) -> None:
        while True:
            if all(t[2] is not None for t in self.samples.values()):
                return
            if self.task.done():  # it failed: say why
                self.task.result()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.conn.close()
        await self.watching.close()

    def report(self) -> str:
        sequenced = sorted(t[1] - t[0] for t in self.samples.values())
        covered = sorted(t[2] - t[0] for t in self.samples.values())
        return (
            f"merge delay of {len(covered)} confirmations sampled under load: commit -> leaf "
            f"{', '.join(f'{s:.2f}' for s in sequenced)} s; commit -> signed head covering it "
            f"{', '.join(f'{s:.1f}' for s in covered)} s"
        )


async def receipt_cost(bench: Bench, concurrency: int, n_sequential: int) -> None:
    """(d) verify_signature with the receipt email vs without it (the confirm, the receipt
    made), interleaved one at a time, then each at `concurrency`."""
    from petitions.db import open_database
    from petitions.mail import Mailer
    from petitions.settings import load_settings
    from petitions.signing import verify_signature

    name = "log_bench_d"
    ids = await bench.fresh_copy(name)
    url = bench.url_of(name)
    settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET}, env_file=None)
    mailer = Mailer(settings)
    db = open_database(url, max_size=concurrency)
    await db.connect()
    try:
        ways = {"confirm alone (no mailer)": None, "confirm + receipt email": mailer}
        timings: dict[str, list[float]] = {w: [] for w in ways}
        for i in range(n_sequential + 20):
            for way, chosen in ways.items():
                public_id = ids.pop()
                started = time.perf_counter()
                state = await verify_signature(db, public_id, chosen)
                elapsed = time.perf_counter() - started
                assert state is not None and state.changed and state.receipt is not None
                if i >= 20:
                    timings[way].append(elapsed * 1000)
        baseline = statistics.median(timings["confirm alone (no mailer)"])
        for way, values in timings.items():
            median = statistics.median(values)
            print(f"(d) one at a time, verify_signature, {way}: median {median:.2f} ms "
                  f"(+{median - baseline:.2f}), p95 {percentile(values, 95):.2f} ms, "
                  f"n={len(values)}")  # fmt: skip
        share = len(ids) // 2
        for way, chosen in ways.items():
            batch, ids = ids[:share], ids[share:]
            latencies: list[float] = []
            queue = iter(batch)

            async def worker(chosen=chosen, queue=queue, latencies=latencies) -> None:
                for public_id in queue:
                    started = time.perf_counter()
                    await verify_signature(db, public_id, chosen)
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            seconds = time.perf_counter() - started
            print(summary(f"(d) C={concurrency} verify_signature, {way}", len(batch), seconds,
                          latencies))  # fmt: skip
        conn = await bench.connect(name)
        mails = await conn.fetchval("SELECT count(*) FROM outbox WHERE purpose = 'receipt'")
        await conn.close()
        print(f"    receipt emails queued: {mails:,}")
    finally:
        await db.disconnect()
        await bench.drop(name)


async def sequencer_and_serving(bench: Bench, backlog: int) -> None:
    """(e) the sequencer draining `backlog` queued changes; (f) serving the log."""
    import httpx

    from petitions.app import create_app
    from petitions.db import open_database, raw_connection
    from petitions.log_keys import log_key_for
    from petitions.settings import load_settings
    from petitions.transparency import origin_of, sequence, sign_current_head

    name = "log_bench_e"
    petition_id = await bench.migrated(name)
    url = bench.url_of(name)
    conn = await bench.connect(name)
    _, version_id = await bench.petition(conn)
    started = time.perf_counter()
    await conn.execute(_VERIFIED, petition_id, version_id, backlog)
    inserted = time.perf_counter() - started
    queued = await conn.fetchval("SELECT count(*) FROM log_queue")
    await conn.execute("VACUUM ANALYZE")
    await conn.close()
    print(f"(e) {backlog:,} verified signatures inserted in one statement in {inserted:.1f} s "
          f"({queued:,} changes queued by the trigger)")  # fmt: skip

    settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": SECRET}, env_file=None)
    db = open_database(url, max_size=4)
    await db.connect()
    try:
        started = time.perf_counter()
        appended = await sequence(db)
        seconds = time.perf_counter() - started
        print(f"(e) sequencer: {appended:,} leaves appended in {seconds:.2f} s = "
              f"{appended / seconds:,.0f} leaves/s (batches of 5,000, subtree hashes stored)")  # fmt: skip
        started = time.perf_counter()
        async with raw_connection(db) as conn:
            head = await sign_current_head(
                conn, log_key_for(settings), petition_id, origin_of(settings.base_url, SLUG)
            )
        print(f"(e) signing a head over {head.size:,} leaves (root from stored subtrees): "
              f"{(time.perf_counter() - started) * 1000:.1f} ms")  # fmt: skip
    finally:
        await db.disconnect()

    app = create_app(settings, run_outbox_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.base_url) as client:
            size = (await client.get(f"/p/{SLUG}/log.json")).json()["size"]
            assert size == backlog, size
            pages = [
                f"/p/{SLUG}/log/entries.json?start={s}&end={min(s + 10_000, size)}"
                for s in range(0, size, 10_000)
            ]
            rng = random.Random(12)
            proofs = [f"/p/{SLUG}/log/proof.json?leaf={rng.randrange(size)}" for _ in range(2000)]
            cases = {
                "log.json": [f"/p/{SLUG}/log.json"] * 2000,
                "entries.json, pages of 10,000": pages * 2,
                f"proof.json, random leaves of {size:,}": proofs,
            }
            for label, paths in cases.items():
                for concurrency in (1, 16):
                    queue = iter(paths)
                    sizes: list[int] = []
                    latencies: list[float] = []

                    async def worker(queue=queue, sizes=sizes, latencies=latencies) -> None:
                        for path in queue:
                            started = time.perf_counter()
                            response = await client.get(path)
                            latencies.append(time.perf_counter() - started)
                            assert response.status_code == 200, (path, response.status_code)
                            sizes.append(len(response.content))

                    started = time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
                    seconds = time.perf_counter() - started
                    print(
                        summary(
                            f"(f) {label}, {concurrency} at a time", len(paths), seconds, latencies
                        )  # fmt: skip
                        + f"; {statistics.mean(sizes) / 1000:,.1f} kB a response"
                    )
    await bench.drop(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--only", choices=("confirm", "receipt", "sequencer"), default=None)
    parser.add_argument("--paths", nargs="+", choices=tuple(PATHS), default=list(PATHS))
    args = parser.parse_args()
    if args.signatures < 1000 or args.backlog < 1 or min(args.concurrency) < 1:
        parser.error("--signatures must be at least 1000; --backlog and --concurrency positive")

    from petitions.db import start_embedded_server

    print(f"{os.cpu_count()} CPU cores; PostgreSQL and this process share them")
    data_dir = Path(tempfile.mkdtemp(prefix="petitions-log-bench-"))
    server = start_embedded_server(data_dir)
    try:
        bench = Bench(server.get_uri())

        async def run() -> None:
            await bench.show_settings()
            if args.only in (None, "confirm", "receipt"):
                await bench.make_template(args.signatures)
            if args.only in (None, "confirm"):
                await confirmation_variants(bench, args.concurrency, args.paths)
            if args.only in (None, "receipt"):
                await receipt_cost(bench, args.concurrency[0], min(1000, args.signatures // 4))
            if args.only in (None, "sequencer"):
                await sequencer_and_serving(bench, args.backlog)

        asyncio.run(run())
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
