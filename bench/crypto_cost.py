"""What encrypting signer data at rest costs on the sign path and the export path.

    python bench/crypto_cost.py [--signatures 500] [--export-rows 20000]

Starts an embedded PostgreSQL in a temporary directory (loopback only, nothing
leaves the machine) and measures:

1. the Python work a signature adds: sealing its personal fields, computing its
   keyed hashes and blind index, sealing its confirmation email (per signature);
2. the sign request end to end through the ASGI app, with the real cipher and
   with a stand-in that copies the plaintext where the ciphertext goes (so the
   difference is the encryption alone);
3. the export of the same rows twice: stored in clear (as before migration 0006;
   the export reads them from the clear columns) and sealed (each row opened).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SECRET = "bench-secret-key-" + "x" * 32


def _null_cipher(cipher):
    """A cipher that keeps the format but not the secrecy: plaintext in place of
    ciphertext, a zero tag. Only to measure what the encryption itself costs."""
    from petitions.crypto import HEADER_BYTES, NONCE_BYTES, TAG_BYTES, VERSION, Cipher

    class NullCipher(Cipher):
        def seal(self, plaintext: bytes, context: bytes) -> bytes:
            return VERSION + self.current.id + bytes(NONCE_BYTES) + plaintext + bytes(TAG_BYTES)

        def open(self, blob: bytes, context: bytes) -> bytes:
            return bytes(blob)[HEADER_BYTES:-TAG_BYTES]

    return NullCipher(cipher.current)


async def make_open_petition(url: str, slug: str) -> None:
    import asyncpg

    from petitions.db import asyncpg_dsn
    from petitions.petitions import StatementText, create_petition

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        text = StatementText(title="Release the detained workers", summary="", target="",
                             body="Free them.", demands=())  # fmt: skip
        await create_petition(conn, slug, {"en": text}, status="open")
    finally:
        await conn.close()


def _neutralised(column: str) -> str:
    quote = "''''"
    return (
        f"CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', chr(9), chr(13)) "
        f"THEN {quote} || {column} ELSE {column} END"
    )


def _utc(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


# The export's query before migration 0006 (PostgreSQL wrote the CSV), for comparison.
COPY_BEFORE = (
    "SELECT s.public_id, s.status, s.kind, "
    + ", ".join(_neutralised(f"s.{c}") for c in ("name", "email", "organisation"))
    + ", s.organisation_type, s.country, "
    + ", ".join(_neutralised(f"s.{c}") for c in ("city", "occupation", "website"))
    + ", s.members, "
    + _neutralised("s.comment")
    + ", s.display, CASE WHEN s.updates THEN 'yes' ELSE 'no' END, "
    + _neutralised("s.ref")
    + ", s.language, v.version, "
    + _utc("s.created_at")
    + ", "
    + _utc("s.verified_at")
    + """ FROM signatures s LEFT JOIN statement_versions v ON v.id = s.version_id
         WHERE s.petition_id = $1 AND ($2::text IS NULL OR s.status = $2)
           AND ($3::text IS NULL OR s.kind = $3) AND ($4::text IS NULL OR s.country = $4)
           AND ($5::timestamptz IS NULL OR coalesce(s.verified_at, s.created_at) >= $5)
         ORDER BY s.id"""
)


def micro(n: int) -> None:
    from petitions.crypto import make_cipher, signature_context
    from petitions.mail import seal_outbox
    from petitions.personal import personal_of, stored_columns

    cipher = make_cipher(SECRET)
    personal = {
        "name": "Leyla Ahmadi", "email": "leyla.ahmadi@example.org", "city": "Malmö",
        "occupation": "Bus driver", "organisation": "Sugar Workers' Federation",
        "organisation_type": "federation", "website": "https://sugarworkers.example.org",
        "members": 12500, "comment": "Solidarity from Malmö! " * 5,
    }  # fmt: skip
    body = "Hello Leyla,\n\n" + "x" * 900
    html = "<p>" + "x" * 2500 + "</p>"
    ids = [uuid.uuid4() for _ in range(n)]
    started = time.perf_counter()
    rows = []
    for public_id in ids:
        stored = stored_columns(
            cipher, SECRET, public_id, "organisation", "initials", "IR", personal
        )
        seal_outbox(cipher, personal["email"], body, html, {})
        rows.append({"public_id": public_id, "sealed": stored["sealed"]})
    sign_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for row in rows:
        personal_of(cipher, row)
    open_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for public_id in ids:
        cipher.seal_json(personal, signature_context(public_id))
    seal_only_us = (time.perf_counter() - started) / n * 1e6
    print(f"per signature, stored columns + sealed email: {sign_us:.1f} µs "
          f"(of which AES-GCM sealing the personal fields: {seal_only_us:.1f} µs)")  # fmt: skip
    print(f"per exported row, opening the sealed fields: {open_us:.1f} µs")


async def sign_path(url: str, n: int) -> None:
    import httpx

    from petitions.app import create_app
    from petitions.settings import load_settings

    # One client address signs them all: the sign limits would hold or refuse it.
    environ = {"DATABASE_URL": url, "SECRET_KEY": SECRET, "BASE_URL": "http://testserver",
               "SIGN_LIMIT_PER_HOUR": "0", "SIGN_CEILING_PER_HOUR": "0"}  # fmt: skip
    settings = load_settings(environ, env_file=None)
    await make_open_petition(url, "sign-bench")
    app = create_app(settings, run_outbox_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def fresh_token() -> str:  # a form token carries a few submissions
                page = await client.get("/p/sign-bench")
                return page.text.split('name="form_token" value="')[1].split('"')[0]

            real = app.state.mailer.cipher
            null = _null_cipher(real)
            timings: dict[str, list[float]] = {"AES-GCM": [], "no encryption": []}
            for i in range(-20, n):
                for name, cipher in (("AES-GCM", real), ("no encryption", null)):
                    app.state.mailer.cipher = cipher
                    token = await fresh_token()
                    data = {
                        "kind": "individual", "name": "Leyla Ahmadi", "country": "SE",
                        "email": f"{name[:2]}-{i}@example.org", "city": "Malmö",
                        "comment": "Solidarity", "display": "initials", "form_token": token,
                    }  # fmt: skip
                    started = time.perf_counter()
                    response = await client.post(
                        "/p/sign-bench/sign", data=data, headers={"Origin": "http://testserver"}
                    )
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 303, response.text
                    if i >= 0:
                        timings[name].append(elapsed)
            app.state.mailer.cipher = real
    for name, values in timings.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        print(f"sign request ({name}): median {median:.2f} ms, IQR {q3 - q1:.2f} ms, n={n}")


async def export_path(url: str, rows: int) -> None:
    import asyncpg

    from petitions.crypto import make_cipher
    from petitions.db import asyncpg_dsn, open_database
    from petitions.demo import add_generated_signatures
    from petitions.export import ExportFilter, stream_csv
    from petitions.sealing import seal_clear_rows

    await make_open_petition(url, "export-bench")
    await add_generated_signatures(url, SECRET, "export-bench", rows)  # bulk-loaded in clear
    cipher = make_cipher(SECRET)
    db = open_database(url, max_size=2)
    await db.connect()
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        pid = await conn.fetchval("SELECT id FROM petitions WHERE slug = 'export-bench'")

        async def export() -> tuple[float, bytes]:
            started = time.perf_counter()
            out = bytearray()
            async for chunk in stream_csv(db, pid, ExportFilter(status=None), cipher=cipher):
                out += chunk
            return time.perf_counter() - started, bytes(out)

        async def copy_export() -> float:
            """The export as it was before encryption: PostgreSQL's COPY, rows in clear."""
            started = time.perf_counter()
            out = bytearray()

            async def write(chunk: bytes) -> None:
                out.extend(chunk)

            await conn.copy_from_query(
                COPY_BEFORE, pid, None, None, None, None, output=write, format="csv", header=True
            )
            copied[:] = out
            return time.perf_counter() - started

        copied = bytearray()
        copy_times = [await copy_export() for _ in range(3)]
        clear_times, sealed_times = [], []
        for _ in range(3):
            seconds, clear_file = await export()
            clear_times.append(seconds)
        started = time.perf_counter()
        await seal_clear_rows(conn, cipher, SECRET)
        sealing = time.perf_counter() - started
        for _ in range(3):
            seconds, sealed_file = await export()
            sealed_times.append(seconds)
        await conn.close()
    finally:
        await db.disconnect()
    assert sealed_file == clear_file, "the sealed rows export differently"
    # (the header aside: the query above does not name its columns)
    if bytes(copied).partition(b"\n")[2] != clear_file.partition(b"\n")[2]:
        a, b = bytes(copied).split(b"\n"), clear_file.split(b"\n")
        diff = [(x, y) for x, y in zip(a, b, strict=False) if x != y][:3]
        raise AssertionError(f"the file differs from the one COPY wrote: {diff}")
    clear, sealed, copy = min(clear_times), min(sealed_times), min(copy_times)
    print(f"export of {rows:,} rows before encryption (PostgreSQL COPY), best of 3: "
          f"{copy:.2f} s ({rows / copy:,.0f} rows/s)")  # fmt: skip
    print(f"export of {rows:,} rows ({len(clear_file) / 1e6:.1f} MB), best of 3: "
          f"in clear {clear:.2f} s ({rows / clear:,.0f} rows/s), "
          f"sealed {sealed:.2f} s ({rows / sealed:,.0f} rows/s): "
          f"+{(sealed - clear) / rows * 1e6:.1f} µs a row; identical files, and the same rows as COPY wrote")  # fmt: skip
    print(f"sealing those {rows:,} rows in place (the step after migration 0006): {sealing:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=500)
    parser.add_argument("--export-rows", type=int, default=20_000)
    args = parser.parse_args()

    micro(2000)

    async def run(url: str) -> None:
        await sign_path(url, args.signatures)
        await export_path(url, args.export_rows)

    on_embedded_database("petitions-crypto-bench-", run)


def on_embedded_database(prefix: str, work) -> None:
    """Run `work(url)` against a migrated database on a temporary embedded PostgreSQL."""
    from petitions.db import ensure_database, start_embedded_server, with_database_name
    from petitions.migrations import migrate

    server = start_embedded_server(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        url = with_database_name(server.get_uri(), "bench")

        async def run() -> None:
            await ensure_database(server.get_uri(), "bench")
            await migrate(url)
            await work(url)

        asyncio.run(run())
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
