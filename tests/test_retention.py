"""Retention: each period removes exactly what it should and nothing else.

Rows are backdated (UPDATE created_at and the like), then one pass of
`enforce_retention` runs, as the worker runs it hourly and `petitions purge` on
demand.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from test_signing import INDIVIDUAL, sign

from admin_support import admin_client
from conftest import SECRET, add_signature, make_petition, wait_until
from petitions import cli, signature
from petitions.db import open_database
from petitions.delivery import deliver_due, run_outbox_worker
from petitions.outbox import hide_link_tokens
from petitions.retention import RETENTION_LOCK_KEY, enforce_retention

# The columns every erasure clears, read off the one shared definition.
ERASED_COLUMNS = re.findall(r"(\w+) = NULL", signature.ERASE_PERSONAL_DATA)


@pytest.fixture
async def db(db_url):
    database = open_database(db_url, max_size=4)
    await database.connect()
    yield database
    await database.disconnect()


async def backdate(conn, signature_id: int, days: float, column: str = "created_at") -> None:
    await conn.execute(
        f"UPDATE signatures SET {column} = now() - make_interval(days => $2) WHERE id = $1",
        signature_id,
        days,
    )


async def queue_mail(conn, signature_id: int | None, status: str = "waiting", days: float = 0):
    return await conn.fetchval(
        """
        INSERT INTO outbox (purpose, recipient, subject, body_text, status, signature_id,
                            created_at)
        VALUES ('verification', 'someone@example.org', 'Please confirm', 'Open /verify/abc.def',
                $2, $1, now() - make_interval(days => $3))
        RETURNING id
        """,
        signature_id,
        status,
        days,
    )


async def counted(conn, petition_id: int) -> tuple[int, int]:
    """(what the tallies say, what count(*) says) for the petition's counted signatures."""
    return (
        await conn.fetchval(
            "SELECT coalesce(sum(n), 0) FROM signature_tallies WHERE petition_id = $1",
            petition_id,
        ),
        await conn.fetchval(
            f"SELECT count(*) FROM signatures WHERE petition_id = $1 AND {signature.counted_sql()}",
            petition_id,
        ),
    )


async def fetch(conn, signature_id: int) -> dict | None:
    row = await conn.fetchrow("SELECT * FROM signatures WHERE id = $1", signature_id)
    return dict(row) if row else None


def assert_erased(row: dict) -> None:
    assert {"name", "email", "email_hash", "city", "organisation", "comment"} <= set(ERASED_COLUMNS)
    assert {c: row[c] for c in ERASED_COLUMNS} == dict.fromkeys(ERASED_COLUMNS)
    assert row["erased_at"] is not None and row["updates"] is False


async def test_unconfirmed_signatures_go_after_fourteen_days_with_their_emails(conn, db, settings):
    pid = await make_petition(conn)
    old = await add_signature(conn, pid, status="pending")
    young = await add_signature(conn, pid, status="pending")
    held = await add_signature(conn, pid, status="held")  # confirmed: a moderator decides
    verified = await add_signature(conn, pid, status="verified")
    await backdate(conn, old["id"], 14.1)
    await backdate(conn, young["id"], 13)
    for row in (held, verified):
        await backdate(conn, row["id"], 400)
    old_mail = await queue_mail(conn, old["id"])
    old_failed = await queue_mail(conn, old["id"], status="failed", days=10)
    young_mail = await queue_mail(conn, young["id"])
    other_mail = await queue_mail(conn, verified["id"])
    before = await counted(conn, pid)

    report = await enforce_retention(db, settings)

    assert report.unconfirmed_deleted == 1 and not report.skipped
    remaining = {r["id"] for r in await conn.fetch("SELECT id FROM signatures")}
    assert remaining == {young["id"], held["id"], verified["id"]}
    mail = {r["id"] for r in await conn.fetch("SELECT id FROM outbox")}
    assert old_mail not in mail and old_failed not in mail
    assert {young_mail, other_mail} <= mail
    assert await counted(conn, pid) == before == (1, 1)
    again = await enforce_retention(db, settings)
    assert again.total == 0


async def test_the_period_is_a_setting(conn, db, settings):
    pid = await make_petition(conn)
    pending = await add_signature(conn, pid, status="pending")
    await backdate(conn, pending["id"], 3)
    await enforce_retention(db, settings)
    assert await fetch(conn, pending["id"]) is not None
    await enforce_retention(db, replace(settings, retention_unverified_days=2))
    assert await fetch(conn, pending["id"]) is None


async def test_network_hashes_are_dropped_after_thirty_days(conn, db, settings):
    pid = await make_petition(conn)
    rows = {
        days: await add_signature(conn, pid, status=status, network_hash=bytes([days]) * 32)
        for days, status in ((31, "verified"), (29, "verified"), (45, "held"), (2, "pending"))
    }
    for days, row in rows.items():
        await backdate(conn, row["id"], days)
    before = await counted(conn, pid)

    report = await enforce_retention(db, settings)

    assert report.network_hashes_dropped == 2
    for days, row in rows.items():
        after = await fetch(conn, row["id"])
        assert (after["network_hash"] is None) == (days > 30), days
        # Nothing else about the signature changed.
        assert (after["name"], after["status"]) == (row["name"], row["status"])
    assert await counted(conn, pid) == before


async def test_rejected_signatures_are_erased_after_the_period_and_recent_ones_restorable(
    conn, db, settings
):
    pid = await make_petition(conn)
    old = await add_signature(
        conn, pid, kind="organisation", status="verified", country="IR", display="anonymous",
        city="Shush", comment="Solidarity", ref="union-site", network_hash=b"n" * 32,
    )  # fmt: skip
    recent = await add_signature(conn, pid, status="verified")
    kept = await add_signature(conn, pid, status="verified")
    assert await signature.moderate(conn, pid, None, "reject", [old["id"], recent["id"]]) == 2
    assert (await fetch(conn, old["id"]))["rejected_at"] is not None
    await backdate(conn, old["id"], 31, column="rejected_at")
    await backdate(conn, recent["id"], 29, column="rejected_at")
    await backdate(conn, old["id"], 60)  # an old signature: only the rejection's age counts
    old = await fetch(conn, old["id"])
    before = await counted(conn, pid)

    report = await enforce_retention(db, settings)

    assert report.rejected_erased == 1
    erased = await fetch(conn, old["id"])
    assert erased["status"] == signature.Status.ERASED
    assert_erased(erased)
    # What the counts and their history need stays.
    for column in ("kind", "country", "display", "created_at", "verified_at", "version_id", "ref"):
        assert erased[column] == old[column], column
    assert await counted(conn, pid) == before == (1, 1)
    # Erased is final; the recent rejection can still be undone.
    assert await signature.moderate(conn, pid, None, "restore", [old["id"]]) == 0
    assert await signature.moderate(conn, pid, None, "restore", [recent["id"]]) == 1
    restored = await fetch(conn, recent["id"])
    assert restored["status"] == "verified" and restored["name"] == recent["name"]
    assert restored["rejected_at"] is None
    assert (await fetch(conn, kept["id"]))["erased_at"] is None
    assert await counted(conn, pid) == (2, 2)


async def test_verified_signatures_are_untouched(conn, db, settings):
    pid = await make_petition(conn)
    rows = [await add_signature(conn, pid, status="verified") for _ in range(5)]
    for row in rows:
        await backdate(conn, row["id"], 1000)
        await backdate(conn, row["id"], 999, column="verified_at")
    before = [dict(await fetch(conn, row["id"])) for row in rows]
    counts = await counted(conn, pid)

    await enforce_retention(db, settings)

    assert [dict(await fetch(conn, row["id"])) for row in rows] == before
    assert await counted(conn, pid) == counts == (5, 5)


async def test_signatures_are_anonymised_after_close_only_when_set(conn, db, settings):
    closed_long_ago = await make_petition(conn, slug="closed-long-ago")
    closed_lately = await make_petition(conn, slug="closed-lately")
    past_its_date = await make_petition(conn, slug="past-its-date")
    still_open = await make_petition(conn, slug="still-open")
    rows = {}
    for pid in (closed_long_ago, closed_lately, past_its_date, still_open):
        rows[pid] = [
            await add_signature(conn, pid, status="verified", display="public", city="Ahvaz"),
            await add_signature(conn, pid, kind="organisation", status="verified"),
            await add_signature(conn, pid, status="held"),
            await add_signature(conn, pid, status="rejected"),
        ]
    for pid in (closed_long_ago, closed_lately):
        await conn.execute("UPDATE petitions SET status = 'closed' WHERE id = $1", pid)
    # The trigger of 0007 dates the closing; backdate it.
    assert await conn.fetchval("SELECT closed_at FROM petitions WHERE id = $1", closed_lately)
    await conn.execute(
        "UPDATE petitions SET closed_at = now() - interval '40 days' WHERE id = $1",
        closed_long_ago,
    )
    await conn.execute(
        "UPDATE petitions SET closed_at = now() - interval '10 days' WHERE id = $1", closed_lately
    )
    await conn.execute(
        "UPDATE petitions SET closes_at = now() - interval '31 days' WHERE id = $1", past_its_date
    )
    await conn.execute(
        "UPDATE petitions SET closes_at = now() + interval '31 days' WHERE id = $1", still_open
    )
    counts = {pid: await counted(conn, pid) for pid in rows}

    # Unset (the default): never.
    assert settings.anonymise_after_close_days is None
    assert (await enforce_retention(db, settings)).anonymised == 0
    assert await conn.fetchval("SELECT count(*) FROM signatures WHERE erased_at IS NOT NULL") == 0

    report = await enforce_retention(
        db, replace(settings, anonymise_after_close_days=30), batch_size=3
    )

    assert report.anonymised == 8
    for pid, signatures in rows.items():
        due = pid in (closed_long_ago, past_its_date)
        for row in signatures:
            after = await fetch(conn, row["id"])
            if not due:
                assert after["erased_at"] is None and after["name"] == row["name"]
                continue
            assert_erased(after)
            assert after["display"] == "anonymous"
            expected = "erased" if row["status"] == "rejected" else row["status"]
            assert after["status"] == expected
        # Still counted, by kind and country as before.
        assert await counted(conn, pid) == counts[pid] == (2, 2)
    # A petition opened again is no longer closed.
    await conn.execute("UPDATE petitions SET status = 'open' WHERE id = $1", closed_lately)
    assert (
        await conn.fetchval("SELECT closed_at FROM petitions WHERE id = $1", closed_lately) is None
    )


async def test_anonymised_signers_leave_the_public_list(client, conn, db, settings):
    pid = await make_petition(conn)
    await add_signature(conn, pid, status="verified", name="Reza Shahabi")
    assert "Reza Shahabi" in (await client.get("/p/release-them/signatures")).text
    await conn.execute(
        "UPDATE petitions SET closes_at = now() - interval '2 days' WHERE id = $1", pid
    )
    await enforce_retention(db, replace(settings, anonymise_after_close_days=1))
    listing = await client.get("/p/release-them/signatures.json")
    assert listing.status_code == 200 and listing.json()["signatures"] == []
    assert "Reza Shahabi" not in (await client.get("/p/release-them/signatures")).text
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 1


async def test_withdrawal_erases_with_the_same_definition(client, conn, app):
    pid = await make_petition(conn)
    row = await add_signature(conn, pid, status="verified", network_hash=b"n" * 32)
    link = "/withdraw/" + app.state.tokens.signature_link("withdraw", row["public_id"])
    await client.post(link, data={})
    after = await fetch(conn, row["id"])
    assert after["status"] == "withdrawn"
    assert_erased(after)


async def test_a_sent_email_keeps_no_recipient_or_body(
    client, conn, app, settings, mail_settings, mail_server, caplog
):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    assert await deliver_due(app.state.db, mail_settings) == 1
    [message] = mail_server.messages
    assert "/verify/" in message.get_body(("plain",)).get_content()
    row = dict(await conn.fetchrow("SELECT * FROM outbox"))
    assert row["status"] == "sent" and row["sent_at"] is not None
    assert row["message_id"] == message["Message-ID"]
    assert row["purpose"] == "verification" and row["stripped_at"] is not None
    for column in ("recipient", "body_text", "body_html", "sealed", "last_error"):
        if column in row:
            assert row[column] is None, column
    assert row["headers"] in ({}, "{}")

    # Without SMTP_HOST, the email goes to the log, then is stripped the same way.
    await sign(client, {**INDIVIDUAL, "email": "another@example.org"})
    with caplog.at_level(logging.INFO, logger="petitions.delivery"):
        assert await deliver_due(app.state.db, settings) == 1
    assert "another@example.org" in caplog.text
    logged = await conn.fetchrow("SELECT * FROM outbox WHERE status = 'sent' ORDER BY id DESC")
    assert logged["recipient"] is None and logged["body_text"] is None
    assert logged["stripped_at"] is not None and logged["message_id"]

    # A stripped email cannot be queued again.
    async with admin_client(app, conn) as owner:
        listing = await owner.get("/admin/outbox")
        assert "another@example.org" not in listing.text and "removed" in listing.text
        page = await owner.get(f"/admin/outbox/{logged['id']}")
        assert page.status_code == 200 and "another@example.org" not in page.text
        await owner.post("/admin/outbox", {"action": "retry", "ids": str(logged["id"])})
    assert await conn.fetchval("SELECT status FROM outbox WHERE id = $1", logged["id"]) == "sent"


async def test_failed_emails_are_stripped_after_the_period(conn, db, settings, app):
    pid = await make_petition(conn)
    row = await add_signature(conn, pid, status="verified")
    old = await queue_mail(conn, row["id"], status="failed", days=15)
    recent = await queue_mail(conn, row["id"], status="failed", days=13)
    waiting = await queue_mail(conn, row["id"], status="waiting", days=15)
    await conn.execute("UPDATE outbox SET last_error = '550 <someone@example.org> unknown'")

    report = await enforce_retention(db, settings)

    assert report.failed_emails_stripped == 1
    mail = {r["id"]: r for r in await conn.fetch("SELECT * FROM outbox")}
    assert mail[old]["recipient"] is None and mail[old]["body_text"] is None
    assert mail[old]["last_error"] is None and mail[old]["status"] == "failed"
    for kept in (recent, waiting):
        assert mail[kept]["recipient"] == "someone@example.org"
    async with admin_client(app, conn) as owner:
        page = await owner.get("/admin/outbox")
        assert "Retry all 1 failed" in page.text  # the stripped one cannot be retried
        await owner.post("/admin/outbox", {"action": "retry_failed"})
    statuses = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM outbox")}
    assert statuses[old] == "failed" and statuses[recent] == "waiting"


async def test_the_outbox_admin_never_shows_a_live_token(client, conn, app):
    await make_petition(conn)
    await sign(client, INDIVIDUAL)
    outbox_id = await conn.fetchval("SELECT id FROM outbox WHERE status = 'waiting'")
    async with admin_client(app, conn) as owner:
        page = await owner.get(f"/admin/outbox/{outbox_id}")
    assert page.status_code == 200
    assert "leyla.ahmadi@example.org" in page.text  # a waiting email: the owner may see where
    assert "/verify/…" in page.text and "/withdraw/…" in page.text
    # (The links keep their ?lang=, which is no secret.)
    tokens = re.findall(r"/(verify|withdraw|unsubscribe)/([^\s\"'<>?]+)", page.text)
    assert tokens and all(token == "…" for _, token in tokens)
    # Trying the links as shown confirms nothing.
    for purpose, token in tokens:
        response = await client.get(f"/{purpose}/{token}")
        assert response.status_code in (400, 404), response.status_code
    assert await conn.fetchval("SELECT status FROM signatures") == "pending"


def test_hiding_link_tokens():
    text = (
        "Confirm: https://example.org/verify/eyJhIjoiYiJ9.Zk3x_2.abc-DEF\n"
        "Withdraw: <https://example.org/withdraw/AbC.dEf-_1>; /unsubscribe/x.y.z\n"
        "The petition: https://example.org/p/release-them"
    )
    assert hide_link_tokens(text) == (
        "Confirm: https://example.org/verify/…\n"
        "Withdraw: <https://example.org/withdraw/…>; /unsubscribe/…\n"
        "The petition: https://example.org/p/release-them"
    )


async def test_two_passes_at_once_neither_double_process_nor_fail(conn, db, settings):
    pid = await make_petition(conn)
    await conn.execute(
        """
        INSERT INTO signatures (petition_id, kind, status, name, email_hash, country, created_at,
                                network_hash)
        SELECT $1, 'individual', 'pending', 'Signer ' || i, sha256(i::text::bytea), 'GB',
               now() - interval '20 days', sha256(('n' || i)::bytea)
          FROM generate_series(1, 2500) AS i
        """,
        pid,
    )
    await conn.execute(
        "INSERT INTO outbox (purpose, recipient, subject, body_text, signature_id) "
        "SELECT 'verification', 'x@example.org', 'Confirm', 'text', id FROM signatures"
    )
    reports = await asyncio.gather(
        enforce_retention(db, settings, batch_size=100),
        enforce_retention(db, settings, batch_size=100),
    )
    assert sum(r.unconfirmed_deleted for r in reports) == 2500
    assert any(r.skipped for r in reports)  # the second found the first at work
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0

    # Waiting for the lock instead of skipping: the second pass finds nothing left.
    first, second = await asyncio.gather(
        enforce_retention(db, settings), enforce_retention(db, settings, wait=True)
    )
    assert not second.skipped and second.total == 0


async def test_the_moves_skip_rows_another_pass_holds(conn, db_url, settings):
    """Without the lock (two callers of the moves themselves), no row is taken twice."""
    pid = await make_petition(conn)
    await conn.execute(
        """
        INSERT INTO signatures (petition_id, kind, status, name, email_hash, country, created_at)
        SELECT $1, 'individual', 'pending', 'Signer ' || i, sha256(i::text::bytea), 'GB',
               now() - interval '20 days'
          FROM generate_series(1, 3000) AS i
        """,
        pid,
    )
    databases = [open_database(db_url, max_size=1) for _ in range(3)]
    for database in databases:
        await database.connect()

    cutoff = datetime.now(UTC) - timedelta(days=14)

    async def purge_all(database) -> int:
        total = 0
        async with database.connection() as connection:
            while n := await signature.purge_unconfirmed(connection.raw_connection, cutoff, 50):
                total += n
        return total

    try:
        done = await asyncio.gather(*(purge_all(d) for d in databases))
    finally:
        for database in databases:
            await database.disconnect()
    assert sum(done) == 3000
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


async def test_a_pass_holds_the_lock_so_others_skip(conn, db, settings):
    await conn.execute("SELECT pg_advisory_lock($1)", RETENTION_LOCK_KEY)
    try:
        assert (await enforce_retention(db, settings)).skipped
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_KEY)
    assert not (await enforce_retention(db, settings)).skipped


RETENTION_INDEXES = {
    "purge": "signatures_pending_created_idx",
    "network": "signatures_network_hash_created_idx",
    "erase": "signatures_rejected_idx",
    "anonymise": "signatures_not_erased_idx",
    "strip": "outbox_unstripped_idx",
}


async def test_every_pass_reads_through_an_index(conn):
    """A pass over millions of rows must not scan the table: each statement can use its
    partial index (the planner prefers a scan on a test's tiny tables, so scans are off)."""
    from petitions import retention

    then = datetime.now(UTC) - timedelta(days=30)
    statements = {
        "purge": (signature._PURGE_UNCONFIRMED, [then, 1000]),
        "network": (retention._DROP_NETWORK_HASHES, [then, 1000]),
        "erase": (signature._ERASE_REJECTED, [then, 1000]),
        "anonymise": (signature._ANONYMISE, [1, 1000]),
        "strip": (retention._STRIP_EMAILS, ["failed", then, 1000]),
    }
    await conn.execute("SET enable_seqscan = off")
    for name, (sql, args) in statements.items():
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
        assert RETENTION_INDEXES[name] in plan, f"{name}:\n{plan}"


async def test_the_worker_applies_the_periods_at_start(conn, db, settings):
    pid = await make_petition(conn)
    old = await add_signature(conn, pid, status="pending")
    await backdate(conn, old["id"], 30)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_outbox_worker(db, settings, stop, poll_seconds=0.05))
    try:
        await wait_until(
            lambda: conn.fetchval("SELECT count(*) = 0 FROM signatures"),
            what="the worker's retention pass",
        )
    finally:
        stop.set()
        await worker


async def test_petitions_purge_prints_the_report(settings, conn, monkeypatch, tmp_path, capsys):
    pid = await make_petition(conn)
    rows = [await add_signature(conn, pid, status="pending") for _ in range(3)]
    await backdate(conn, rows[0]["id"], 5)
    await backdate(conn, rows[1]["id"], 4)
    monkeypatch.chdir(tmp_path)  # no .env
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path),
        "RETENTION_UNVERIFIED_DAYS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    # The command runs its own event loop, as from a shell.
    assert await asyncio.to_thread(cli.main, ["purge"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("retention: unconfirmed deleted 2, network hashes dropped 0,")
    assert "failed emails stripped 0" in out
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 1


def test_the_retention_settings():
    from petitions.settings import SettingsError, load_settings

    base = {"SECRET_KEY": SECRET, "DATA_DIR": "/tmp/petitions-settings-test"}
    defaults = load_settings(base, env_file=None)
    assert (
        defaults.retention_unverified_days,
        defaults.retention_network_days,
        defaults.retention_rejected_days,
        defaults.anonymise_after_close_days,
    ) == (14, 30, 30, None)
    chosen = load_settings(
        {
            **base,
            "RETENTION_UNVERIFIED_DAYS": "7",
            "RETENTION_NETWORK_DAYS": "1",
            "RETENTION_REJECTED_DAYS": "90",
            "ANONYMISE_AFTER_CLOSE_DAYS": "365",
        },
        env_file=None,
    )
    assert (
        chosen.retention_unverified_days,
        chosen.retention_network_days,
        chosen.retention_rejected_days,
        chosen.anonymise_after_close_days,
    ) == (7, 1, 90, 365)
    assert load_settings({**base, "ANONYMISE_AFTER_CLOSE_DAYS": "never"}, env_file=None)
    for name in (
        "RETENTION_UNVERIFIED_DAYS",
        "RETENTION_NETWORK_DAYS",
        "RETENTION_REJECTED_DAYS",
        "ANONYMISE_AFTER_CLOSE_DAYS",
    ):
        for bad in ("0", "-1", "two weeks", "3651"):
            with pytest.raises(SettingsError, match=name):
                load_settings({**base, name: bad}, env_file=None)
