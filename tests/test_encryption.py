"""Signer data encrypted at rest: a dump names nobody, the admin still reads everything,
keys rotate online, a wrong key fails clearly, and rows from before are sealed."""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import asyncpg
import pgserver
import pytest
from test_signing import INDIVIDUAL, ORGANISATION, links, sign

from admin_support import admin_client
from conftest import CIPHER, SECRET, add_signature, make_petition, opened_outbox
from petitions.app import create_app
from petitions.cli import main
from petitions.crypto import DataKeyError, make_cipher, signature_context
from petitions.db import asyncpg_dsn, with_database_name
from petitions.delivery import deliver_due
from petitions.migrations import migrate
from petitions.paths import MIGRATIONS_DIR
from petitions.sealing import prepare_database, rotate
from petitions.signing import process_sign_reminders

KEY_A = "first-data-key-" + "a" * 32
KEY_B = "second-data-key-" + "b" * 32
KEY_WRONG = "wrong-data-key-" + "w" * 32

# What the signers below type: none of it may be readable in a dump.
SIGNERS = [
    {**INDIVIDUAL, "display": "initials", "email": "leyla.ahmadi@example.org"},
    {**INDIVIDUAL, "display": "anonymous", "name": "Hidden Person", "email": "hidden@mail.example",
     "city": "Ahvaz", "occupation": "Sugar cane cutter", "comment": "For Esmail, always"},
    {**ORGANISATION, "display": "initials", "organisation": "Haft Tapeh Sugar Cane Syndicate",
     "name": "Reza Shahabi", "email": "contact@haft-tapeh.example", "city": "Shush",
     "website": "haft-tapeh.example", "comment": "We stand together"},
    {**ORGANISATION, "display": "anonymous", "organisation": "Tehran Bus Drivers Union",
     "name": "Davood Razavi", "email": "davood@vahed.example", "city": "Tehran",
     "occupation": "General secretary", "country": "IR", "website": "vahed.example"},
]  # fmt: skip
SECRETS = [
    "leyla.ahmadi@example.org", "Leyla Ahmadi", "Malmö", "Solidarity from Malmö!",
    "hidden@mail.example", "Hidden Person", "Ahvaz", "Sugar cane cutter", "For Esmail",
    "Haft Tapeh Sugar Cane Syndicate", "Reza Shahabi", "contact@haft-tapeh.example", "Shush",
    "haft-tapeh.example", "We stand together", "Tehran Bus Drivers Union", "Davood Razavi",
    "davood@vahed.example", "General secretary", "vahed.example", "International secretary",
]  # fmt: skip


def pg_dump_binary() -> Path:
    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"


async def pg_dump(db_url: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        [str(pg_dump_binary()), "--no-owner", "--dbname", asyncpg_dsn(db_url)],
        capture_output=True,
        check=True,
    )
    return result.stdout.decode("utf-8")


def readable_in(dump: str, text: str) -> bool:
    """`text` in the dump as text, or as the hex of its UTF-8 (a bytea in clear)."""
    return text.lower() in dump.lower() or text.encode().hex() in dump.lower()


async def sign_and_confirm_everyone(client, app, conn, mail_settings, mail_server) -> None:
    for signer in SIGNERS:
        assert (await sign(client, signer)).status_code == 303
    await deliver_due(app.state.db, mail_settings)
    for message in mail_server.messages:
        assert (await client.get(links(message)["verify"])).status_code == 200


async def test_a_database_dump_names_nobody(client, app, conn, db_url, mail_settings, mail_server):
    await make_petition(conn)
    await sign_and_confirm_everyone(client, app, conn, mail_settings, mail_server)
    # A waiting email with live links: the reminder to a signer who signed again.
    assert (await sign(client, SIGNERS[1])).status_code == 303
    await process_sign_reminders(app.state.db, app.state.mailer)
    statuses = {r["status"] for r in await conn.fetch("SELECT status FROM outbox")}
    assert statuses == {"sent", "waiting"}
    assert await conn.fetchval("SELECT count(*) FROM signatures WHERE status = 'verified'") == 4

    dump = await pg_dump(db_url)
    assert "Release the detained workers" in dump  # the dump is a real one
    assert "L.A." in dump and "H.T.S.C." in dump  # initials are public by design
    for text in SECRETS:
        assert not readable_in(dump, text), text

    # The admin reads everything: moderation and the export open the sealed data.
    async with admin_client(app, conn, "editor") as editor:
        page = (await editor.get("/admin/petitions/release-them/signatures")).text
        export = (await editor.get("/admin/petitions/release-them/export.csv")).text
    for text in SECRETS:
        assert text in page or text.replace("ö", "&ouml;") in page, text
        assert text in export, text
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(export))}
    assert rows["hidden@mail.example"]["occupation"] == "Sugar cane cutter"
    assert rows["contact@haft-tapeh.example"]["website"] == "https://haft-tapeh.example"
    [waiting] = await opened_outbox(conn, "status = 'waiting' AND purpose = 'reminder'")
    assert waiting["recipient"] == "hidden@mail.example" and "/withdraw/" in waiting["body_text"]


async def test_moderators_search_by_keyed_hashes(app, conn):
    pid = await make_petition(conn)
    await add_signature(conn, pid, name="Leyla Ahmadi", email="leyla@example.org", country="SE")
    await add_signature(conn, pid, name="Şirin Özdemir", email="sirin@sendika.example")
    await add_signature(conn, pid, kind="organisation", organisation="Haft Tapeh Syndicate",
                        name="Ali Nejati", display="anonymous")  # fmt: skip
    async with admin_client(app, conn, "editor") as editor:

        async def found(q: str) -> list[str]:
            page = await editor.get("/admin/petitions/release-them/signatures", params={"q": q})
            assert page.status_code == 200
            names = ("Leyla Ahmadi", "Şirin Özdemir", "Haft Tapeh Syndicate")
            return [n for n in names if n in page.text]

        assert await found("ley") == ["Leyla Ahmadi"]  # the start of a word
        assert await found("AHMADI leyla") == ["Leyla Ahmadi"]  # every word, any order
        assert await found("sirin ozdemir") == ["Şirin Özdemir"]  # accents folded
        assert await found("LEYLA@EXAMPLE.ORG") == ["Leyla Ahmadi"]  # the whole email
        assert await found("sendika.example") == ["Şirin Özdemir"]  # the email's domain
        assert await found("tapeh") == ["Haft Tapeh Syndicate"]  # an anonymous organisation
        assert await found("eyla") == []  # the middle of a word is not a term
        assert await found("le") == []  # nor are one or two letters of a longer word
        assert await found("example") == []  # nor part of a domain


async def test_rotating_the_data_key_online(client, app, conn, db_url, settings, tmp_path,
                                            mail_settings, mail_server, monkeypatch):  # fmt: skip
    await make_petition(conn)
    await sign_and_confirm_everyone(client, app, conn, mail_settings, mail_server)
    assert (await sign(client, SIGNERS[0])).status_code == 303  # a waiting reminder
    await process_sign_reminders(app.state.db, app.state.mailer)
    before = await conn.fetchval("SELECT count(*) FROM signatures WHERE sealed IS NOT NULL")
    assert before == 4

    # Step 1: from the default key (derived from SECRET_KEY) to KEY_A, by the command.
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATA_KEY", KEY_A)
    assert await asyncio.to_thread(main, ["rotate-key", "--batch", "2"]) == 0
    key_a = make_cipher(SECRET, KEY_A)
    assert await key_ids(conn) == {key_a.current.hex_id}

    # Step 2: KEY_A to KEY_B, while signers keep signing (processes deployed with
    # DATA_KEY=KEY_B and DATA_KEY_PREVIOUS=KEY_A).
    both = replace(settings, data_key=KEY_B, data_key_previous=(KEY_A,))
    key_b = make_cipher(SECRET, KEY_B, [KEY_A])
    rotating = create_app(both, run_outbox_worker=False)
    rotating.state.page_cache.seconds = 0
    async with rotating.router.lifespan_context(rotating):
        from admin_support import anonymous

        async with anonymous(rotating) as other:
            signing = asyncio.gather(*(
                sign(other, {**INDIVIDUAL, "email": f"during-{i}@example.org"}) for i in range(10)
            ))  # fmt: skip
            rotation_conn = await asyncpg.connect(asyncpg_dsn(db_url))
            try:
                report, responses = await asyncio.gather(
                    rotate(rotation_conn, key_b, batch=1), signing
                )
            finally:
                await rotation_conn.close()
            assert {r.status_code for r in responses} == {303}
            assert report.remaining == (0, 0) and report.signatures >= 4

        assert await key_ids(conn) == {key_b.current.hex_id}
        async with admin_client(rotating, conn, "editor") as editor:
            page = (await editor.get("/admin/petitions/release-them/signatures")).text
            export = (await editor.get("/admin/petitions/release-them/export.csv",
                                       params={"status": "all"})).text  # fmt: skip
        for text in SECRETS:
            assert text in export, text
        assert "during-9@example.org" in page and "Hidden Person" in page

    # Nothing is readable with the old key alone (nor with the default one).
    for old in (make_cipher(SECRET, KEY_A), make_cipher(SECRET)):
        for row in await conn.fetch("SELECT public_id, sealed FROM signatures"):
            with pytest.raises(DataKeyError, match="which this process does not have"):
                old.open(row["sealed"], signature_context(row["public_id"]))
    # ...while the new key alone reads everything, the outbox too.
    only_b = make_cipher(SECRET, KEY_B)
    for row in await conn.fetch("SELECT public_id, sealed FROM signatures"):
        assert only_b.open_json(row["sealed"], signature_context(row["public_id"]))["email"]
    for row in await conn.fetch("SELECT sealed FROM outbox WHERE sealed IS NOT NULL"):
        assert only_b.is_current(row["sealed"])


async def key_ids(conn) -> set[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT encode(substring(sealed FROM 2 FOR 4), 'hex') AS id FROM signatures"
        " WHERE sealed IS NOT NULL UNION"
        " SELECT DISTINCT encode(substring(sealed FROM 2 FOR 4), 'hex') FROM outbox"
        " WHERE sealed IS NOT NULL"
    )
    return {r["id"] for r in rows}


async def test_a_wrong_data_key_fails_clearly(app, conn, db_url, settings, tmp_path, monkeypatch,
                                              capsys):  # fmt: skip
    pid = await make_petition(conn)
    row = await add_signature(conn, pid, name="Leyla Ahmadi")
    other = await add_signature(conn, pid)
    # A blob moved onto another signature does not open.
    with pytest.raises(DataKeyError, match="failed authentication"):
        CIPHER.open(row["sealed"], signature_context(other["public_id"]))
    # The data under KEY_A; a process given another key cannot read it.
    key_a = make_cipher(SECRET, KEY_A)
    assert (await rotate(conn, key_a)).signatures == 2
    sealed = await conn.fetchval("SELECT sealed FROM signatures WHERE id = $1", row["id"])
    wrong = make_cipher(SECRET, KEY_WRONG)
    with pytest.raises(DataKeyError) as error:
        wrong.open(sealed, signature_context(row["public_id"]))
    assert key_a.current.hex_id in str(error.value) and "DATA_KEY" in str(error.value)

    # The commands refuse to start, saying why (and seal nothing under the wrong key).
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATA_KEY", KEY_WRONG)
    assert await asyncio.to_thread(main, ["migrate"]) == 1
    message = capsys.readouterr().err
    assert "cannot read the signer data" in message and key_a.current.hex_id in message
    # So does the app.
    wrong_app = create_app(replace(settings, data_key=KEY_WRONG), run_outbox_worker=False)
    with pytest.raises(DataKeyError):
        async with wrong_app.router.lifespan_context(wrong_app):
            pass
    # A key too short is refused as a setting.
    monkeypatch.setenv("DATA_KEY", "short")
    assert await asyncio.to_thread(main, ["migrate"]) == 2
    assert "DATA_KEY must be at least 32 characters" in capsys.readouterr().err


# Rows stored in clear before migration 0006 --------------------------------------------


@pytest.fixture
async def legacy_db_url(pg_server_url, tmp_path):
    """A database migrated only up to 0005: signatures and emails kept in clear."""
    from conftest import _admin_execute

    name = "petitions_legacy_" + __import__("uuid").uuid4().hex[:10]
    await _admin_execute(pg_server_url, f'CREATE DATABASE "{name}"')
    folder = tmp_path / "old_migrations"
    folder.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql"))[:5]:
        shutil.copy(path, folder / path.name)
    url = with_database_name(pg_server_url, name)
    await migrate(url, folder)
    yield url
    await _admin_execute(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_rows_in_clear_are_sealed_after_the_migration(legacy_db_url, settings):
    from petitions.keys import email_hash

    conn = await asyncpg.connect(asyncpg_dsn(legacy_db_url))
    try:
        pid = await conn.fetchval(
            "INSERT INTO petitions (slug, status, published_at) VALUES ('old', 'open', now()) "
            "RETURNING id"
        )
        old = [
            ("individual", "initials", "Leyla Ahmadi", "leyla@example.org", None, "verified"),
            ("individual", "public", "Public Person", "public@example.org", None, "verified"),
            ("organisation", "anonymous", "Reza Shahabi", "reza@haft.example",
             "Haft Tapeh Syndicate", "verified"),
            ("organisation", "public", "Ana Souza", "ana@dock.example", "Dockers Union", "pending"),
            # Counted before, as another organisation: its name has Cyrillic "а"s.
            ("organisation", "public", "Ali", "ali@haft.example", "H\u0430ft T\u0430peh Syndicate",
             "verified"),
        ]  # fmt: skip
        for kind, display, name, email, organisation, status in old:
            await conn.execute(
                """INSERT INTO signatures (petition_id, kind, display, name, email, email_hash,
                       city, occupation, comment, organisation, organisation_type, country,
                       status, verified_at)
                   VALUES ($1, $2, $3, $4, $5, $6, 'Shush', 'Driver', 'Solidarity', $7,
                           CASE WHEN $2 = 'organisation' THEN 'trade_union' END, 'IR', $8,
                           CASE WHEN $8 = 'verified' THEN now() END)""",
                pid, kind, display, name, email, email_hash(SECRET, email), organisation, status,
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO outbox (purpose, recipient, subject, body_text, body_html, headers) "
            "VALUES ('verification', 'leyla@example.org', 'Confirm', 'Open /verify/abc', "
            '\'<a href="/verify/abc">\', \'{"X-Test": "1"}\')'
        )
    finally:
        await conn.close()

    url_settings = replace(settings, database_url=legacy_db_url)
    await prepare_database(legacy_db_url, url_settings)
    conn = await asyncpg.connect(asyncpg_dsn(legacy_db_url))
    try:
        rows = await conn.fetch("SELECT * FROM signatures ORDER BY id")
        assert all(r["sealed"] is not None and r["email"] is None for r in rows)
        initials, public, anonymous, pending, look_alike = rows
        assert initials["name"] is None and initials["initials"] == "L.A."
        assert initials["occupation"] == "Driver" and initials["city"] is None
        assert public["name"] == "Public Person" and public["city"] == "Shush"
        assert anonymous["organisation"] is None and anonymous["occupation"] is None
        assert anonymous["organisation_type"] is None and anonymous["organisation_hash"]
        assert pending["organisation"] == "Dockers Union"  # public: shown once verified
        # Look-alike letters now fold to one organisation: the second stays counted, as
        # before, without the hash (a moderator may reject one of the two).
        assert look_alike["status"] == "verified" and look_alike["organisation_hash"] is None
        opened = CIPHER.open_json(anonymous["sealed"], signature_context(anonymous["public_id"]))
        assert opened["organisation"] == "Haft Tapeh Syndicate" and opened["city"] == "Shush"
        [email] = await opened_outbox(conn)
        assert email["recipient"] is None or email["sealed"] is not None
        assert (email["recipient"], email["body_text"], email["headers"]) == (
            "leyla@example.org", "Open /verify/abc", {"X-Test": "1"},
        )  # fmt: skip
        raw = await conn.fetchrow("SELECT recipient, body_text, body_html FROM outbox")
        assert tuple(raw) == (None, None, None)
        sealed_before = [r["sealed"] for r in rows]
    finally:
        await conn.close()

    # Idempotent: a second start changes nothing.
    await prepare_database(legacy_db_url, url_settings)
    conn = await asyncpg.connect(asyncpg_dsn(legacy_db_url))
    try:
        after = [r["sealed"] for r in await conn.fetch("SELECT sealed FROM signatures ORDER BY id")]
        assert after == sealed_before
        # ...and the organisation is now found by its keyed hash: the same one, typed
        # another way, cannot count twice.
        from petitions.personal import stored_columns

        again = stored_columns(CIPHER, SECRET, __import__("uuid").uuid4(), "organisation",
                               "public", "IR", {"organisation": "HAFT  tapeh syndicate",
                                                "email": "x@other.example", "name": "X"})  # fmt: skip
        assert again["organisation_hash"] == rows[2]["organisation_hash"]
    finally:
        await conn.close()
