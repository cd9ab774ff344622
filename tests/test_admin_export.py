"""The CSV export: streamed from PostgreSQL in constant memory, safe for spreadsheets."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import tracemalloc
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest

from admin_support import admin_client
from conftest import CIPHER, SECRET, add_signature, make_petition, wait_until
from petitions import export
from petitions.cli import main
from petitions.demo import add_generated_signatures
from petitions.export import HEADER, ExportFilter, stream_csv
from petitions.sealing import seal_clear_rows

URL = "/admin/petitions/release-them/export.csv"


def rows_of(body: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"), newline="")))


async def test_export_round_trips_names_and_neutralises_formulas(app, conn):
    pid = await make_petition(conn)
    version_id = await conn.fetchval("SELECT id FROM statement_versions")
    persian = await add_signature(conn, pid, name="مریم رضایی", city="تهران", country="IR",
                                  ref="newsletter", updates=True, version_id=version_id)  # fmt: skip
    await add_signature(conn, pid, name="王小明", comment='He said "solidarity",\nand left.',
                        country="CN")  # fmt: skip
    await add_signature(conn, pid, kind="organisation", organisation="=HYPERLINK(\"http://x\")",
                        name="+1 Caller", occupation="-2+3", city="@SUM(A1)", country="GB",
                        comment="\tTabbed", ref="-ref")  # fmt: skip
    await add_signature(conn, pid, name="\rCarriage", country="GB", status="pending")
    await add_signature(conn, pid, name="Old Signer", country="FR",
                        verified_at=await conn.fetchval("SELECT now() - interval '30 days'"))  # fmt: skip
    async with admin_client(app, conn, "editor") as editor:
        response = await editor.get(URL)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        disposition = response.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="release-them-signatures-verified-')
        assert not response.content.startswith(codecs.BOM_UTF8)
        rows = rows_of(response.content)
        assert list(rows[0]) == HEADER
        by_name = {r["name"]: r for r in rows}
        assert set(by_name) == {"مریم رضایی", "王小明", "'+1 Caller", "Old Signer"}  # verified only
        assert by_name["مریم رضایی"]["city"] == "تهران"
        assert by_name["مریم رضایی"]["public_id"] == str(persian["public_id"])
        assert by_name["مریم رضایی"]["updates"] == "yes" and by_name["王小明"]["updates"] == "no"
        assert by_name["王小明"]["comment"] == 'He said "solidarity",\nand left.'
        org = by_name["'+1 Caller"]
        assert org["organisation"] == '\'=HYPERLINK("http://x")'
        assert (org["occupation"], org["city"], org["comment"], org["ref"]) == (
            "'-2+3", "'@SUM(A1)", "'\tTabbed", "'-ref",
        )  # fmt: skip
        assert org["kind"] == "organisation" and org["statement_version"] == ""
        assert by_name["مریم رضایی"]["statement_version"] == "1"
        assert org["verified_at"].endswith("Z") and org["created_at"].endswith("Z")
        # No cell of the file starts a formula.
        for row in rows:
            for value in row.values():
                assert not value or value[0] not in "=+-@\t\r", value

        everything = rows_of((await editor.get(URL, params={"status": "all"})).content)
        assert len(everything) == 5 and "'\rCarriage" in {r["name"] for r in everything}
        assert [r["name"] for r in rows_of((await editor.get(
            URL, params={"status": "pending"})).content)] == ["'\rCarriage"]  # fmt: skip
        assert {r["country"] for r in rows_of((await editor.get(
            URL, params={"country": "ir"})).content)} == {"IR"}  # fmt: skip
        assert [r["kind"] for r in rows_of((await editor.get(
            URL, params={"kind": "organisation"})).content)] == ["organisation"]  # fmt: skip
        since = rows_of((await editor.get(URL, params={"since": _days_ago(7)})).content)
        assert "Old Signer" not in {r["name"] for r in since} and len(since) == 3

        excel = await editor.get(URL, params={"bom": "1"})
        assert excel.content.startswith(codecs.BOM_UTF8)
        text = excel.content.decode("utf-8-sig")
        assert next(csv.reader(io.StringIO(text))) == HEADER

        for bad in ({"status": "lost"}, {"kind": "x"}, {"country": "ZZZ"}, {"since": "yesterday"},
                    {"since": "2025-02-30"}, {"since": "\x00"}):  # fmt: skip
            assert (await editor.get(URL, params=bad)).status_code == 400, bad
        assert (await editor.get("/admin/petitions/nope/export.csv")).status_code == 404
    exports = await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'signatures.export'"
    )
    assert exports == 7  # one per download, none for refused ones


def _days_ago(n: int) -> str:
    from datetime import UTC, datetime

    return (datetime.now(UTC) - timedelta(days=n)).date().isoformat()


class Collect:
    """An ASGI `send` that writes the body to a file and counts the chunks."""

    def __init__(self, out) -> None:
        self.out = out
        self.status = None
        self.headers: dict[bytes, bytes] = {}
        self.chunks = 0
        self.size = 0

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = dict(message["headers"])
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.chunks += 1
                self.size += len(body)
                self.out.write(body)


@pytest.mark.slow  # generates and exports 100,000 signatures
async def test_export_of_100000_rows_streams_in_bounded_memory(app, conn, db_url, tmp_path):
    await make_petition(conn)
    added = await add_generated_signatures(db_url, SECRET, "release-them", 100_000)
    assert added == 100_000
    # Bulk-loaded in clear, then sealed as at start: the export opens every row.
    sealed = await seal_clear_rows(conn, CIPHER, SECRET)
    assert sealed.signatures == 100_000
    pid = await conn.fetchval("SELECT id FROM petitions")
    await add_signature(conn, pid, name="Ἀριστοτέλης Ὀνάσης", country="GR")
    await add_signature(conn, pid, name="فاطمه کارگر", comment="همبستگی\nبا کارگران", country="IR")
    async with admin_client(app, conn, "editor") as editor:
        cookie = SimpleCookie()
        cookie["petitions_admin"] = editor.http.cookies["petitions_admin"]
        cookie_header = cookie.output(header="", attrs=[]).strip().encode()

    # Call the app directly: a test client would hold the whole body in memory.
    finished = asyncio.Event()
    sent_request = False

    async def receive():
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": URL, "raw_path": URL.encode(), "query_string": b"status=all",
        "root_path": "", "headers": [(b"host", b"testserver"), (b"cookie", cookie_header)],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    path = tmp_path / "export.csv"
    with path.open("wb") as out:
        send = Collect(out)
        tracemalloc.start()
        try:
            await app(scope, receive, send)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            finished.set()
    assert send.status == 200, send.status
    print(f"exported {send.size:,} bytes in {send.chunks} chunks; peak memory {peak:,} bytes")
    assert send.size > 15_000_000  # the file is large...
    assert peak < 6_000_000, f"peak {peak:,} bytes"  # ...its memory is not
    assert send.chunks > 20  # it arrived in pieces, as PostgreSQL produced it

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == HEADER
        rows = list(reader)
    assert len(rows) == 100_002
    assert all(len(row) == len(HEADER) for row in rows)
    names = {row[3] for row in rows[-2:]}
    assert names == {"Ἀριστοτέλης Ὀνάσης", "فاطمه کارگر"}
    assert rows[-1][HEADER.index("comment")] == "همبستگی\nبا کارگران"
    # The connection went back to the pool in a usable state.
    assert await app.state.db.fetch_val("SELECT 1") == 1


async def copies_running(conn) -> int:
    """Exports still reading (a COPY, or the export's cursor in its open transaction)."""
    return await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE (query LIKE 'COPY (SELECT%' AND state = 'active')"
        " OR (query LIKE '/* petitions export */%' AND state <> 'idle')"
    )


async def test_a_client_that_goes_away_or_stalls_stops_the_copy(app, conn, db_url, monkeypatch):
    await make_petition(conn)
    await add_generated_signatures(db_url, SECRET, "release-them", 10_000)
    pid = await conn.fetchval("SELECT id FROM petitions")

    chunks = stream_csv(app.state.db, pid, ExportFilter(status=None), cipher=app.state.cipher)
    first = await anext(chunks)
    assert first.startswith(b"public_id,status,")
    await chunks.aclose()  # what Starlette does when the client disconnects
    # The pool still works, and no COPY is left running.
    assert await app.state.db.fetch_val("SELECT 1") == 1
    assert await copies_running(conn) == 0

    # A reader that stops reading is given up, and its connection freed.
    monkeypatch.setattr(export, "STALLED_READER_SECONDS", 0.2)
    chunks = stream_csv(app.state.db, pid, ExportFilter(status=None), cipher=app.state.cipher)
    await anext(chunks)  # ...and no more: the COPY waits on this reader until it gives up
    assert await copies_running(conn) == 1  # (the helper sees an export while it waits)

    async def copy_given_up():
        return await copies_running(conn) == 0

    await wait_until(copy_given_up)
    assert await copies_running(conn) == 0
    with pytest.raises(TimeoutError):
        async for _ in chunks:
            pass
    assert await app.state.db.fetch_val("SELECT 1") == 1


async def test_the_export_command_writes_the_same_file(app, conn, settings, tmp_path, monkeypatch):
    pid = await make_petition(conn)
    await add_signature(conn, pid, name="مریم رضایی", country="IR")
    await add_signature(conn, pid, name="=cmd|' /C calc'!A0", country="GB")
    await add_signature(conn, pid, name="Pending Person", status="pending")
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    target = tmp_path / "signatures.csv"
    assert await asyncio.to_thread(main, ["export", "release-them", "-o", str(target)]) == 0
    rows = list(csv.DictReader(target.open(newline="", encoding="utf-8")))
    assert {r["name"] for r in rows} == {"مریم رضایی", "'=cmd|' /C calc'!A0"}
    assert (
        await asyncio.to_thread(
            main, ["export", "release-them", "-o", str(target), "--status", "all", "--bom"]
        )
        == 0
    )
    assert target.read_bytes().startswith(codecs.BOM_UTF8)
    assert len(list(csv.DictReader(target.open(newline="", encoding="utf-8-sig")))) == 3
    async with admin_client(app, conn, "editor") as editor:
        web = (await editor.get(URL, params={"status": "all", "bom": "1"})).content
    assert web == target.read_bytes()
    assert await asyncio.to_thread(main, ["export", "no-such-petition", "-o", str(target)]) == 1
    assert await asyncio.to_thread(main, ["export", "release-them", "--since", "soon"]) == 2
