"""Group commit (batching.py, sign_batch.py): concurrent sign requests and confirmations
of one process are written together, and each caller still gets its own answer, only
once its row is committed."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import replace

import asyncpg
import pytest

from conftest import add_signature, make_petition, wait_until
from petitions import batching, sign_batch, signature
from petitions.petitions import get_petition
from petitions.sign_batch import lost_connection
from petitions.sign_limits import FormTokenSpent
from petitions.signing import parse_sign_form, submit_signature, verify_signature
from petitions.tokens import FORM_TOKEN_USES

FORM = {
    "kind": "individual", "name": "Leyla Ahmadi", "email": "leyla@example.org",
    "country": "SE", "display": "public",
}  # fmt: skip
ORGANISATION = {
    "kind": "organisation", "organisation": "Sugar Workers' Federation",
    "organisation_type": "federation", "country": "BR", "name": "Ana Souza",
    "email": "ana@sugarworkers.example.org", "display": "public",
}  # fmt: skip


async def signer(app, slug="release-them", **changes):
    petition = await get_petition(app.state.db, slug)
    return petition, parse_sign_form({**FORM, **changes}, petition)


def sign(app, petition, person, client="198.51.100.7", token=None):
    return submit_signature(
        app.state.db, app.state.mailer, petition, person, client, form_token_id=token
    )


def waiting_to_sign(app) -> int:
    found = batching._gatherers.get(app.state.db, {}).get("sign")
    return found.waiting if found else 0


async def test_fifty_concurrent_duplicates_in_one_batch_make_one_row(app, conn):
    await make_petition(conn)
    petition, person = await signer(app)
    variants = [replace(person, email=e) for e in ("LEYLA@example.org", "leyla@EXAMPLE.org")]
    results = await asyncio.gather(*(sign(app, petition, variants[i % 2]) for i in range(50)))
    assert sorted(r.outcome for r in results) == ["existing"] * 49 + ["stored"]
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 1
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE purpose = 'verification'") == 1
    assert await conn.fetchval("SELECT count(*) FROM sign_reminders") == 1


async def test_conflicting_and_failing_rows_do_not_fail_the_others(app, conn):
    petition_id = await make_petition(conn)
    await make_petition(conn, slug="closed-one", status="closed")
    await add_signature(conn, petition_id, email="old@example.org")
    await add_signature(
        conn, petition_id, kind="organisation", organisation="Dock Workers", country="GB",
        email="first@dock.example",
    )  # fmt: skip
    petition, person = await signer(app)
    closed = await get_petition(app.state.db, "closed-one")
    token = os.urandom(16)
    asked = [
        sign(app, petition, replace(person, email=f"new{i}@example.org")) for i in range(5)
    ] + [
        sign(app, petition, replace(person, email="old@example.org")),  # signed before
        sign(app, petition, parse_sign_form(  # a second person for a signed organisation
            {**ORGANISATION, "organisation": "Dock Workers", "country": "GB",
             "email": "second@dock.example"}, petition)),
        sign(app, closed, replace(person, email="late@example.org")),
        # refused by a CHECK of the table: the others are stored all the same
        sign(app, petition, replace(person, email="bad@example.org", country="xx")),
    ] + [  # one form token, used once too often
        sign(app, petition, replace(person, email=f"t{i}@example.org"), token=token)
        for i in range(FORM_TOKEN_USES + 1)
    ]  # fmt: skip
    results = await asyncio.gather(*asked, return_exceptions=True)
    outcomes = [r if isinstance(r, Exception) else r.outcome for r in results]
    assert outcomes[:8] == ["stored"] * 5 + ["existing", "stored", "closed"]
    assert isinstance(outcomes[8], asyncpg.CheckViolationError)
    assert outcomes[9:-1] == ["stored"] * FORM_TOKEN_USES
    assert isinstance(outcomes[-1], FormTokenSpent)
    stored = 5 + 1 + FORM_TOKEN_USES
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 2 + stored
    assert await conn.fetchval("SELECT count(*) FROM outbox") == stored
    assert await conn.fetchval("SELECT uses FROM form_token_uses WHERE token_id = $1", token) == (
        FORM_TOKEN_USES
    )


async def test_the_network_limit_counts_the_batch_itself(settings, conn):
    from petitions.app import create_app

    application = create_app(
        replace(settings, sign_limit_per_hour=3, sign_ceiling_per_hour=6), run_outbox_worker=False
    )
    async with application.router.lifespan_context(application):
        await make_petition(conn)
        petition, person = await signer(application)
        results = await asyncio.gather(
            *(sign(application, petition, replace(person, email=f"p{i}@example.org"))
              for i in range(8)),
            return_exceptions=True,
        )  # fmt: skip
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 2 and all(r.retry_after > 0 for r in refused)
    holds = [r["hold_reason"] for r in await conn.fetch("SELECT * FROM signatures ORDER BY id")]
    assert sorted(holds, key=str) == [None] * 3 + ["network"] * 3


async def pause_inserts(conn):
    """A test-only trigger: every insert into signatures waits for advisory lock 4242."""
    await conn.execute("""
        CREATE FUNCTION test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$;
        CREATE TRIGGER test_pause BEFORE INSERT ON signatures
            FOR EACH STATEMENT EXECUTE FUNCTION test_pause();
    """)  # fmt: skip
    await conn.execute("SELECT pg_advisory_lock(4242)")


async def kill_waiting_backends(conn) -> int:
    """Terminate the connections waiting for lock 4242 (a batch mid-statement)."""
    waiting = """SELECT pid FROM pg_locks
                  WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted"""
    await wait_until(lambda: conn.fetchval(f"SELECT count(*) FROM ({waiting}) w"))
    return await conn.fetchval(f"SELECT count(pg_terminate_backend(pid)) FROM ({waiting}) w")


async def test_a_batch_whose_connection_dies_fails_every_caller(app, conn):
    await make_petition(conn)
    petition, person = await signer(app)
    await pause_inserts(conn)
    asked = [
        asyncio.ensure_future(sign(app, petition, replace(person, email=f"k{i}@example.org")))
        for i in range(10)
    ]
    await wait_until(lambda: waiting_to_sign(app) == 10)
    assert await kill_waiting_backends(conn) == 1  # one batch, one connection
    results = await asyncio.gather(*asked, return_exceptions=True)
    assert all(isinstance(r, Exception) and lost_connection(r) for r in results)
    await conn.execute("SELECT pg_advisory_unlock(4242)")
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


@pytest.mark.slow
async def test_no_303_without_its_row_when_a_batch_connection_dies(app, client, conn):
    await make_petition(conn)
    tokens = []
    for _ in range(12):  # a token carries a few submissions: one each
        page = await client.get("/p/release-them")
        tokens += re.findall(r'name="form_token" value="([^"]+)"', page.text)
    await pause_inserts(conn)
    emails = [f"h{i}@example.org" for i in range(12)]
    asked = [
        asyncio.ensure_future(client.post(
            "/p/release-them/sign", data={**FORM, "email": email, "form_token": token},
        ))
        for email, token in zip(emails, tokens, strict=False)
    ]  # fmt: skip
    await wait_until(lambda: waiting_to_sign(app) == len(emails))
    await kill_waiting_backends(conn)  # the first batch (or batches) in flight
    await conn.execute("SELECT pg_advisory_unlock(4242)")  # the rest commit
    responses = await asyncio.gather(*asked)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {303, 503} and 503 in codes
    assert all("Back in a moment" in r.text for r in responses if r.status_code == 503)
    stored = await conn.fetchval("SELECT count(*) FROM signatures")
    assert stored == codes.count(303)
    # a token's use is counted only with its signature
    assert await conn.fetchval("SELECT coalesce(sum(uses), 0) FROM form_token_uses") == stored


async def test_concurrent_confirmations_each_get_their_receipt(app, conn):
    petition_id = await make_petition(conn)
    rows = [await add_signature(conn, petition_id, status="pending") for _ in range(20)]
    ids = [row["public_id"] for row in rows]
    states = await asyncio.gather(
        *(verify_signature(app.state.db, i, app.state.mailer) for i in ids + ids[:5]),
        return_exceptions=True,
    )
    firsts, seconds = states[:20], states[20:]
    assert all(s.changed and s.status == "verified" and s.receipt for s in firsts)
    assert all(not s.changed and s.status == "verified" and s.receipt is None for s in seconds)
    receipts = {s.receipt.commitment for s in firsts}
    stored = await conn.fetch("SELECT receipt_commitment FROM signatures")
    assert {r["receipt_commitment"] for r in stored} == receipts
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE purpose = 'receipt'") == 20


async def test_two_signatures_of_one_organisation_confirmed_in_one_batch(app, conn):
    petition_id = await make_petition(conn)
    first, second = [
        await add_signature(
            conn,
            petition_id,
            kind="organisation",
            status="pending",
            organisation="Dock Workers",
            country="GB",
        )  # fmt: skip
        for _ in range(2)
    ]
    states = await asyncio.gather(
        *(verify_signature(app.state.db, s["public_id"], app.state.mailer) for s in (first, second))
    )
    assert sorted(s.status for s in states) == ["held", "verified"]
    assert all(s.changed and s.receipt for s in states)


async def test_the_batch_duplicate_check_reads_the_unique_indexes(conn):
    """A viral petition's table grows faster than autovacuum analyses it: the batch's
    "already signed?" check must still go straight to the one-per-email indexes, not
    combine the petition's whole index with the email's (145 ms a batch of 40 at
    75,000 signatures before this; 0.6 ms after)."""
    await make_petition(conn)
    rows = [(1, "individual", b"e" * 32, None), (1, "organisation", b"f" * 32, b"o" * 32)]
    arguments = [list(column) for column in zip(*rows, strict=True)]
    await conn.execute("SET enable_seqscan = off")
    plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sign_batch._SIGNED_AND_OPEN, *arguments)
    used = re.findall(r'"Index Name": "(\w+)"', plan)
    assert "signatures_one_individual_per_email" in used
    assert "signatures_one_organisation_per_email" in used
    assert "signatures_petition_status_idx" not in used
    found = await conn.fetch(sign_batch._SIGNED_AND_OPEN, *arguments)
    assert [(r["signed"], r["open"]) for r in found] == [(False, True), (False, True)]


async def _pending_after_analyze(conn, petition_id: int, count: int) -> list:
    """`count` pending signatures added after the table was last analysed, when all
    it held was verified: the statistics say almost nothing is pending (as in the
    first minutes of a viral petition, before autovacuum analyses again)."""
    row = await add_signature(conn, petition_id, status="verified")
    await conn.execute("ANALYZE signatures")
    columns = [
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'signatures'"
            " AND column_name NOT IN ('id', 'public_id', 'email_hash', 'status', 'verified_at')"
        )
    ]
    names = ", ".join(columns)
    await conn.execute(
        f"""INSERT INTO signatures (public_id, email_hash, status, {names})
            SELECT gen_random_uuid(), sha256(s.email_hash || int4send(i)), 'pending', {names}
              FROM signatures s, generate_series(1, $2) AS i WHERE s.id = $1""",
        row["id"], count,
    )  # fmt: skip
    return [
        r["public_id"]
        for r in await conn.fetch("SELECT public_id FROM signatures WHERE status = 'pending'")
    ]


async def test_the_batch_confirmation_finds_its_rows_by_public_id(conn):
    """Confirming a batch reads its own rows by their public ids, whatever the
    statistics say of the petition's pending signatures (87 ms a batch of 40 with
    24,000 pending before this, on a plan that read them all; 9 ms after)."""
    await make_petition(conn)
    pending = await _pending_after_analyze(conn, 1, 3000)
    statuses = sorted(set(signature._sources("verify")) | set(signature._sources("hold")))
    arguments = (pending[:40], statuses, False, [b"c" * 32] * 40)
    plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + signature._CONFIRM_MANY, *arguments)
    used = re.findall(r'"Index Name": "(\w+)"', plan)
    assert "signatures_pkey" in used  # each row by its id, found by its public id
    assert not {"signatures_petition_status_idx", "signatures_pending_created_idx"} & set(used)
    async with conn.transaction():
        changed = await conn.fetch(signature._CONFIRM_MANY, *arguments)
        assert sorted(r["public_id"] for r in changed) == sorted(pending[:40])
        assert {r["status"] for r in changed} == {"verified"}
