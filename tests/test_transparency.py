"""The transparency log on a real PostgreSQL: every change of the count is a leaf, signed
heads cover them, proofs verify, receipts prove inclusion, nothing names a signer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re

import asyncpg
import httpx
import pytest

from admin_support import admin_client, make_admin
from conftest import add_signature, count_is, make_petition, opened_outbox
from petitions import merkle, signature, transparency
from petitions.app import create_app
from petitions.delivery import deliver_due
from petitions.log_format import Leaf
from petitions.log_keys import TreeHead, log_key_for
from petitions.signing import verify_signature, withdraw_signature

SLUG = "release-them"
HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}Z$")


async def settle(app) -> TreeHead:
    """Sequence everything committed and sign a head over it (what the worker does
    every second or so); return the latest head."""
    db, settings = app.state.db, app.state.settings
    await transparency.sequence(db)
    await transparency.sign_due_heads(db, log_key_for(settings), settings.base_url, 0)
    log = await _get_json(app, f"/p/{SLUG}/log.json")
    return TreeHead.from_json(log)


async def _get_json(app, path: str):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def all_entries(client, slug: str = SLUG) -> list[Leaf]:
    leaves, url = [], f"/p/{slug}/log/entries.json?start=0&end=10000"
    while url:
        page = (await client.get(url)).json()
        leaves += [Leaf.from_json(e) for e in page["entries"]]
        url = page["next"]
    return leaves


def recomputed(leaves: list[Leaf]) -> tuple[bytes, int]:
    """The root and the count an outsider computes from the leaves alone."""
    count = 0
    for leaf in leaves:
        count += -1 if leaf.kind == "remove" else 1
    return merkle.root_of([merkle.leaf_hash(leaf.data()) for leaf in leaves]), count


async def pending(conn, petition_id: int, n: int, **fields) -> list[dict]:
    """`n` signatures waiting for their signers to confirm, of the current statement."""
    fields.setdefault(
        "version_id",
        await conn.fetchval(
            "SELECT max(id) FROM statement_versions WHERE petition_id = $1", petition_id
        ),
    )
    return [await add_signature(conn, petition_id, status="pending", **fields) for _ in range(n)]


async def test_every_change_of_the_count_is_a_leaf(app, client, conn):
    pid = await make_petition(conn)
    first, second, third, fourth = await pending(conn, pid, 4)
    db = app.state.db
    for s in (first, second, third, fourth):
        state = await verify_signature(db, s["public_id"])
        assert state.status == "verified" and state.receipt is not None
    await withdraw_signature(db, second["public_id"])
    admin = await make_admin(conn)
    async with db.connection() as c:
        raw = c.raw_connection
        assert await signature.moderate(raw, pid, admin, "reject", [third["id"]]) == 1
        assert await signature.moderate(raw, pid, admin, "restore", [third["id"]]) == 1
        invalidation = await raw.fetchval(
            "INSERT INTO signature_invalidations (petition_id, criteria) VALUES ($1, '{}')"
            " RETURNING id",
            pid,
        )
        assert await signature.invalidate(raw, invalidation, [fourth["id"]]) == 1
        assert await signature.reinstate(raw, invalidation, 10) == 1
    # A stray statement is logged too: the triggers see every change.
    await conn.execute("DELETE FROM signatures WHERE id = $1", first["id"])

    head = await settle(app)
    leaves = await all_entries(client)
    assert [(leaf.kind, leaf.target, leaf.reason) for leaf in leaves] == [
        ("add", None, None),  # first
        ("add", None, None),  # second
        ("add", None, None),  # third
        ("add", None, None),  # fourth
        ("remove", 1, "withdrawn"),
        ("remove", 2, "rejected"),
        ("restore", 2, None),
        ("remove", 3, "invalidated"),
        ("restore", 3, None),
        ("remove", 0, "deleted"),
    ]
    root, count = recomputed(leaves)
    assert (head.size, head.root, head.count) == (len(leaves), root, count)
    assert head.signature_valid()
    assert count == 2 and await count_is(client, 2)
    # Each add holds the statement version and the commitment of the receipt it made.
    version = await conn.fetchval(
        "SELECT version FROM statement_versions WHERE petition_id = $1", pid
    )
    assert {leaf.version for leaf in leaves if leaf.kind == "add"} == {version}
    commitments = await conn.fetch(
        "SELECT receipt_commitment FROM signatures WHERE petition_id = $1 ORDER BY id", pid
    )
    assert {leaf.commitment for leaf in leaves if leaf.kind == "add"} >= {
        r["receipt_commitment"] for r in commitments
    }


async def test_changes_that_do_not_touch_the_count_are_not_logged(app, client, conn):
    pid = await make_petition(conn, moderate_organisations=True)
    held = (await pending(conn, pid, 1, kind="organisation"))[0]
    state = await verify_signature(app.state.db, held["public_id"])
    assert state.status == "held" and state.receipt is not None
    never = (await pending(conn, pid, 1))[0]
    await withdraw_signature(app.state.db, never["public_id"])  # pending -> withdrawn
    head = await settle(app)
    assert head.size == 0 and head.count == 0 and head.root == merkle.EMPTY_ROOT
    # Approved later, it counts from then on: its add holds the receipt made at confirmation.
    admin = await make_admin(conn)
    async with app.state.db.connection() as c:
        assert await signature.moderate(c.raw_connection, pid, admin, "approve", [held["id"]])
    head = await settle(app)
    leaves = await all_entries(client)
    assert [leaf.kind for leaf in leaves] == ["add"] and head.count == 1
    assert leaves[0].commitment == state.receipt.commitment


async def test_signatures_counted_before_the_log_start_it(app, client, conn):
    """Inserted already verified (a bulk load, the demo): an add each, with a commitment
    nobody holds the secret of."""
    pid = await make_petition(conn)
    for _ in range(3):
        await add_signature(conn, pid)
    head = await settle(app)
    leaves = await all_entries(client)
    assert [leaf.kind for leaf in leaves] == ["add"] * 3 and head.count == 3
    assert len({leaf.commitment for leaf in leaves}) == 3


async def test_heads_are_signed_by_the_published_key_and_proofs_verify(app, client, conn):
    pid = await make_petition(conn)
    heads = []
    for batch in (1, 2, 5, 9, 300):  # past one stored subtree of 256 leaves
        for s in await pending(conn, pid, batch):
            await verify_signature(app.state.db, s["public_id"])
        heads.append(await settle(app))
    key = log_key_for(app.state.settings)
    listed = (await client.get(f"/p/{SLUG}/log/heads.json")).json()["heads"]
    assert [h["size"] for h in listed] == [1, 3, 8, 17, 317]
    for head in map(TreeHead.from_json, listed):
        assert head.signature_valid() and head.key_id == key.key_id
        assert head.origin == f"http://testserver/p/{SLUG}" and HOUR.match(head.time)
    assert base64.b64decode((await client.get(f"/p/{SLUG}/log.json")).json()["public_key"]) == (
        key.public_raw
    )
    latest = heads[-1]
    leaves = await all_entries(client)
    hashes = [merkle.leaf_hash(leaf.data()) for leaf in leaves]
    for index in (0, 1, 7, 255, 256, 300, 316):
        proof = (await client.get(f"/p/{SLUG}/log/proof.json?leaf={index}")).json()
        assert proof["leaf_hash"] == hashes[index].hex()
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        assert merkle.verify_inclusion(hashes[index], index, latest.size, path, latest.root)
        assert not merkle.verify_inclusion(hashes[index - 1], index, latest.size, path, latest.root)
    # Consistency between every pair of signed heads.
    for older in heads[:-1]:
        for newer in heads[heads.index(older) :]:
            if older.size == 0:
                continue
            answer = (
                await client.get(
                    f"/p/{SLUG}/log/consistency.json?first={older.size}&second={newer.size}"
                )
            ).json()
            proof = [bytes.fromhex(h) for h in answer["consistency"]]
            assert merkle.verify_consistency(
                older.size, newer.size, older.root, newer.root, proof
            ), (older.size, newer.size)


async def test_a_receipt_proves_inclusion_and_then_no_longer_counted(mail_settings, conn):
    app = create_app(mail_settings, run_outbox_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            pid = await make_petition(conn)
            signer = (await pending(conn, pid, 1, name="Shirin Ebadi-Test", language="fa"))[0]
            others = await pending(conn, pid, 3)
            state = await verify_signature(app.state.db, signer["public_id"], app.state.mailer)
            for other in others:
                await verify_signature(app.state.db, other["public_id"], app.state.mailer)
            receipt = state.receipt.text
            # The receipt email holds the receipt and a link carrying it after '#'.
            [mail] = [
                m
                for m in await opened_outbox(conn, "purpose = 'receipt'")
                if m["signature_id"] == signer["id"]
            ]
            assert receipt in mail["body_text"]
            assert f"/p/{SLUG}/receipt?lang=fa#receipt={receipt}" in mail["body_text"]
            await settle(app)

            page = await client.post(f"/p/{SLUG}/receipt?lang=en", data={"receipt": receipt})
            assert page.status_code == 200
            assert "and is counted" in page.text
            assert page.headers["cache-control"] == "no-store"
            # Lower case, spaces for dashes: still the same receipt.
            relaxed = receipt.lower().replace("-", " ")
            page = await client.get(f"/p/{SLUG}/receipt", params={"receipt": relaxed, "lang": "en"})
            assert "is counted" in page.text

            await withdraw_signature(app.state.db, signer["public_id"])
            await settle(app)
            page = await client.post(f"/p/{SLUG}/receipt?lang=en", data={"receipt": receipt})
            assert "no longer counted" in page.text

            unknown = "A" * 32
            page = await client.post(f"/p/{SLUG}/receipt?lang=en", data={"receipt": unknown})
            assert page.status_code == 200 and "not in the log" in page.text
            page = await client.post(f"/p/{SLUG}/receipt?lang=en", data={"receipt": "x\x00" * 300})
            assert page.status_code == 400

            # Once sent, the email is stripped: the receipt is nowhere in the database.
            while await deliver_due(app.state.db, mail_settings):
                pass
            assert not await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE purpose = 'receipt' AND stripped_at IS NULL"
            )
            dump = await _database_text(conn)
            secret = base64.b32decode(receipt.replace("-", ""))
            assert receipt not in dump and secret.hex() not in dump
            commitment = hashlib.sha256(b"petitions-receipt-v1\x00" + secret).digest()
            assert commitment.hex() in dump  # only its commitment, in the log


async def _database_text(conn) -> str:
    """Every row of every table, as text: what a stolen dump would show."""
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
    )
    parts = []
    for t in tables:
        rows = await conn.fetch(f'SELECT t::text AS row FROM "{t["tablename"]}" t')
        parts += [r["row"] for r in rows]
    # bytea shows as \x... hex in row text
    return "\n".join(parts).lower()


async def test_nothing_in_the_log_names_a_signer(app, client, conn):
    pid = await make_petition(conn)
    signers = await pending(conn, pid, 6, city="Shush", occupation="Cane cutter")
    for s in signers:
        await verify_signature(app.state.db, s["public_id"])
    await withdraw_signature(app.state.db, signers[0]["public_id"])
    head = await settle(app)
    rows = await conn.fetch("SELECT email_hash, network_hash FROM signatures")
    secrets = {s["name"] for s in signers} | {s["email"] for s in signers}
    secrets |= {s["public_id"].hex for s in signers} | {str(s["public_id"]) for s in signers}
    secrets |= {r["email_hash"].hex() for r in rows if r["email_hash"]}
    secrets |= {r["network_hash"].hex() for r in rows if r["network_hash"]}
    secrets |= {"Shush", "Cane cutter"}
    pages = [
        f"/p/{SLUG}/log.json",
        f"/p/{SLUG}/log/heads.json",
        f"/p/{SLUG}/log/entries.json",
        f"/p/{SLUG}/log/proof.json?leaf=2",
        f"/p/{SLUG}/log/consistency.json?first=3",
    ]
    for path in pages:
        text = (await client.get(path)).text
        for secret in secrets:
            assert secret not in text, (path, "a signer's data")
        # No time finer than the hour: no minutes or seconds anywhere.
        assert not re.search(r"\d{2}:\d{2}", text), path
    for leaf in await all_entries(client):
        assert HOUR.match(leaf.hour)
    assert head.size == 7


async def test_the_log_is_append_only(app, conn):
    pid = await make_petition(conn)
    for s in await pending(conn, pid, 2):
        await verify_signature(app.state.db, s["public_id"])
    await settle(app)
    for statement in (
        "UPDATE log_leaves SET reason = 'rejected' WHERE leaf_index = 0",
        "DELETE FROM log_leaves WHERE leaf_index = 1",
        "UPDATE log_heads SET count = 5",
        "DELETE FROM log_heads",
    ):
        with pytest.raises(asyncpg.CheckViolationError, match="append-only"):
            await conn.execute(statement)


async def test_bad_requests_get_a_clear_400(app, client, conn):
    pid = await make_petition(conn)
    for s in await pending(conn, pid, 3):
        await verify_signature(app.state.db, s["public_id"])
    await settle(app)
    bad = [
        "log/entries.json?start=abc",
        "log/entries.json?start=4",
        "log/entries.json?start=2&end=1",
        "log/entries.json?start=99999999999999999999999",
        "log/entries.json?start=%00",
        "log/proof.json",
        "log/proof.json?leaf=3",
        "log/proof.json?leaf=0&size=4",
        "log/proof.json?leaf=-1",
        "log/consistency.json?first=0",
        "log/consistency.json?first=2&second=1",
        "log/consistency.json?first=1&second=4",
        "log/heads.json?after=x",
    ]
    for path in bad:
        response = await client.get(f"/p/{SLUG}/{path}")
        assert response.status_code == 400, path
        assert response.json()["error"], path
    assert (await client.get("/p/nobody-here/log.json")).status_code == 404
    await make_petition(conn, slug="a-draft", status="draft")
    assert (await client.get("/p/a-draft/log.json")).status_code == 404
    assert (await client.get("/p/a-draft/receipt")).status_code == 404
    # Ranges clamp to the signed size; an empty page past nothing is fine.
    page = (await client.get(f"/p/{SLUG}/log/entries.json?start=3")).json()
    assert page["entries"] == [] and page["next"] is None


async def test_answers_are_cacheable(app, client, conn):
    pid = await make_petition(conn)
    for s in await pending(conn, pid, 2):
        await verify_signature(app.state.db, s["public_id"])
    await settle(app)
    response = await client.get(f"/p/{SLUG}/log.json")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "public" in response.headers["cache-control"]
    again = await client.get(
        f"/p/{SLUG}/log.json", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


@pytest.mark.slow
async def test_the_log_verifies_after_thousands_of_concurrent_changes(app, client, conn):
    """2,000 confirmations and 400 withdrawals at once, the sequencer running beside
    them: every head signed meanwhile matches the leaves and the count."""
    pid = await make_petition(conn)
    signers = [
        await add_signature(conn, pid, status="pending", email=f"s{i}@example.org")
        for i in range(2000)
    ]
    db = app.state.db
    stop = asyncio.Event()
    settings = app.state.settings
    sequencer = asyncio.create_task(transparency.run_sequencer(db, settings, stop, 0.05))
    gate = asyncio.Semaphore(40)

    async def confirm(s):
        async with gate:
            await verify_signature(db, s["public_id"])

    async def withdraw(s):
        async with gate:
            await withdraw_signature(db, s["public_id"])

    await asyncio.gather(*(confirm(s) for s in signers[:1000]))
    await asyncio.gather(
        *(confirm(s) for s in signers[1000:]), *(withdraw(s) for s in signers[::5])
    )
    stop.set()
    await sequencer
    head = await settle(app)
    leaves = await all_entries(client)
    root, count = recomputed(leaves)
    assert (head.size, head.root, head.count) == (len(leaves), root, count)
    assert count == 1600 and await count_is(client, 1600)
    # Each head signed while it all happened matches the leaves up to its size.
    heads = [
        TreeHead.from_json(h)
        for h in (await client.get(f"/p/{SLUG}/log/heads.json")).json()["heads"]
    ]
    assert len(heads) >= 2
    hashes = [merkle.leaf_hash(leaf.data()) for leaf in leaves]
    for h in heads:
        assert h.signature_valid()
        assert merkle.root_of(hashes[: h.size]) == h.root
        assert sum(-1 if leaf.kind == "remove" else 1 for leaf in leaves[: h.size]) == h.count


async def verified_in_bulk(conn, petition_id: int, n: int) -> None:
    """`n` verified signatures in one statement (a bulk load): one add each."""
    await conn.execute(
        """INSERT INTO signatures (petition_id, kind, status, display, name, email_hash,
                                   verified_at)
           SELECT $1, 'individual', 'verified', 'anonymous', 'x',
                  sha256(convert_to(gen_random_uuid()::text, 'UTF8')), now()
             FROM generate_series(1, $2)""",
        petition_id, n,
    )  # fmt: skip


async def test_stored_subtrees_give_the_same_roots_across_batch_boundaries(app, client, conn):
    """Batches that end inside, exactly at and across the stored 256-leaf subtrees and the
    levels above them: every head's root equals the root computed from all leaves."""
    pid = await make_petition(conn)
    sizes = []
    for batch in (1, 254, 1, 1, 300, 211, 256, 512, 1, 1500):
        await verified_in_bulk(conn, pid, batch)
        await transparency.sequence(app.state.db, batch=700)  # batches within batches too
        sizes.append((await settle(app)).size)
    assert sizes[-1] == 3037
    leaves = await all_entries(client)
    hashes = [merkle.leaf_hash(leaf.data()) for leaf in leaves]
    heads = (await client.get(f"/p/{SLUG}/log/heads.json")).json()["heads"]
    assert [h["size"] for h in heads] == sizes
    for head in map(TreeHead.from_json, heads):
        assert merkle.root_of(hashes[: head.size]) == head.root
    stored = await conn.fetchval("SELECT count(*) FROM log_nodes WHERE petition_id = $1", pid)
    assert stored == 3037 // 256 + 3037 // 512 + 3037 // 1024 + 3037 // 2048


async def test_an_owner_reading_the_waiting_receipt_email_does_not_see_the_receipt(app, conn):
    pid = await make_petition(conn)
    signer = (await pending(conn, pid, 1))[0]
    state = await verify_signature(app.state.db, signer["public_id"], app.state.mailer)
    [mail] = await conn.fetch("SELECT id FROM outbox WHERE purpose = 'receipt'")
    async with admin_client(app, conn) as owner:
        listing = await owner.get("/admin/outbox", params={"purpose": "receipt"})
        assert listing.status_code == 200 and "Your receipt" in listing.text
        message = await owner.get(f"/admin/outbox/{mail['id']}")
        assert message.status_code == 200 and "#receipt=" in message.text
        assert state.receipt.text not in message.text
        assert state.receipt.text.replace("-", "") not in message.text.replace("-", "")
