"""Moderator tools: allow and block lists, the trending view and its alert, bulk
invalidation with a preview, reinstating."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pytest
from test_signing import INDIVIDUAL, links, sign

from admin_support import admin_client, make_admin
from conftest import SECRET, add_signature, count_is, make_petition, opened_outbox
from petitions.delivery import deliver_due
from petitions.fields import BadValue
from petitions.invalidation import hash_label
from petitions.keys import domain_hash, network_hash
from petitions.mail import Mailer
from petitions.screening import add_entry, is_allowed, list_verdict, remove_entry
from petitions.trending import send_alerts, trending


def net(cidr: str) -> bytes:
    return network_hash(SECRET, cidr)


# The lists ---------------------------------------------------------------------------


async def test_cidr_and_wildcard_entries_match_as_written(conn):
    admin = await make_admin(conn)
    for list_name, text in (
        ("block", "203.0.113.0/24"), ("block", "2001:DB8::/32"), ("block", "*.Flood.Example"),
        ("block", "spam.example"), ("allow", "198.51.100.7"), ("allow", "union.example"),
        ("allow", "203.0.113.0/25"),
    ):  # fmt: skip
        await add_entry(conn, admin, list_name, text, None)

    async def verdict(address, email="someone@elsewhere.example"):
        return await list_verdict(conn, address, email)

    assert await verdict("203.0.113.200") == "block"
    assert await verdict("203.0.113.5") == "block"  # on both lists: block wins
    assert await verdict("203.0.114.1") is None
    assert await verdict("2001:db8:ffff::1") == "block"
    assert await verdict("2001:db9::1") is None
    assert await verdict("198.51.100.7") == "allow" and await verdict("198.51.100.8") is None
    assert await verdict(None, "a@lists.flood.example") == "block"
    assert await verdict(None, "a@x.y.FLOOD.example") == "block"
    assert await verdict(None, "a@flood.example") is None  # the wildcard: subdomains only
    assert await verdict(None, "a@notflood.example") is None
    assert await verdict(None, "a@spam.example") == "block"
    assert await verdict(None, "a@sub.spam.example") is None  # exact: that domain alone
    assert await verdict("198.51.100.7", "a@spam.example") == "block"
    assert await verdict("not an address", "a@union.example") == "allow"
    assert await is_allowed(conn, "192.0.2.1", "Office@Union.Example")
    assert not await is_allowed(conn, "203.0.113.9", "office@union.example")

    before = await conn.fetchval("SELECT count(*) FROM screening_rules")
    for bad in ("", "203.0.113.0/33", "exa mple.org", "*", "*.org.", "a@b\x00.org", "x" * 400,
                "foo.*.example", "2001:db8::/129"):  # fmt: skip
        with pytest.raises(BadValue):
            await add_entry(conn, admin, "block", bad, None)
    with pytest.raises(BadValue):
        await add_entry(conn, admin, "block", "203.0.113.9/24", None)  # the same network again
    with pytest.raises(BadValue):
        await add_entry(conn, admin, "maybe", "example.com", None)
    assert await conn.fetchval("SELECT count(*) FROM screening_rules") == before

    entry = await conn.fetchval("SELECT id FROM screening_rules WHERE domain = 'spam.example'")
    assert await remove_entry(conn, admin, entry) == "spam.example"
    assert await verdict(None, "a@spam.example") is None
    actions = await conn.fetch("SELECT action, details FROM audit_log ORDER BY id")
    assert [a["action"] for a in actions].count("screening.block.add") == 4
    assert actions[-1]["action"] == "screening.block.remove"


async def test_owners_edit_the_lists_in_the_admin(app, conn):
    async with admin_client(app, conn, "owner") as owner:
        page = await owner.get("/admin/screening")
        assert page.status_code == 200 and "Allow and block lists" in page.text
        added = await owner.post(
            "/admin/screening", {"action": "add", "list": "block", "entry": "*.bots.example"}
        )
        assert added.status_code == 303
        assert "*.bots.example" in (await owner.get("/admin/screening")).text
        bad = await owner.post("/admin/screening", {"action": "add", "list": "block",
                                                     "entry": "not a network/8"})  # fmt: skip
        assert bad.status_code == 400 and "is not" in bad.text
        forged = await owner.http.post(
            "/admin/screening", data={"action": "add", "list": "block", "entry": "x.example"}
        )
        assert forged.status_code == 403
        assert await conn.fetchval("SELECT count(*) FROM screening_rules") == 1
    async with admin_client(app, conn, "editor") as editor:
        assert (await editor.get("/admin/screening")).status_code == 403


async def test_a_blocked_domain_signs_like_anyone_and_is_held_when_confirmed(
    app, conn, mail_settings, mail_server
):
    await make_petition(conn)
    admin = await make_admin(conn)
    await add_entry(conn, admin, "block", "*.flood.example", "a bot farm")
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ordinary = await sign(client, INDIVIDUAL)
        blocked = await sign(client, {**INDIVIDUAL, "email": "bot1@mx.flood.example"})
        assert (blocked.status_code, blocked.headers["location"]) == (
            ordinary.status_code, ordinary.headers["location"],
        )  # fmt: skip
        thanks = [(await client.get(r.headers["location"])).text for r in (ordinary, blocked)]
        assert thanks[0] == thanks[1]
        assert await deliver_due(app.state.db, mail_settings) == 2  # both mailed, as usual
        for message in mail_server.messages:
            confirmed = await client.get(links(message)["verify"])
            assert "Your signature is confirmed" in confirmed.text
        assert await count_is(client, 1)
    statuses = await conn.fetch("SELECT status, hold_reason FROM signatures ORDER BY id")
    assert [(r["status"], r["hold_reason"]) for r in statuses] == [
        ("verified", None), ("held", "blocked"),
    ]  # fmt: skip


# Trending and its alert -------------------------------------------------------------------


async def add_signatures(conn, pid, n, *, minutes_ago, **columns):
    """`n` signatures signed `minutes_ago` (a number or a function of the index)."""
    now = await conn.fetchval("SELECT now()")
    for i in range(n):
        minutes = minutes_ago(i) if callable(minutes_ago) else minutes_ago
        await add_signature(conn, pid, created_at=now - timedelta(minutes=minutes), **columns)


async def flood_and_steady(conn):
    """A network flooding now; a network as busy as usual; a domain a little busier."""
    pid = await make_petition(conn)
    await add_signatures(conn, pid, 30, minutes_ago=lambda i: 1 + i, network_hash=net("flood"))
    await add_signatures(conn, pid, 12, minutes_ago=lambda i: 2 + i, network_hash=net("office"))
    # The office's usual rate: one signature an hour for the week before.
    await add_signatures(conn, pid, 168, minutes_ago=lambda i: 90 + 60 * i,
                         network_hash=net("office"))  # fmt: skip
    await add_signatures(conn, pid, 20, minutes_ago=lambda i: 3 + i,
                         domain_hash=domain_hash(SECRET, "mail.example"))  # fmt: skip
    return pid


async def test_trending_ranks_a_flooding_network_first(app, conn):
    await flood_and_steady(conn)
    sources = await trending(app.state.db)
    assert [(s.kind, s.hash, s.last_hour) for s in sources] == [
        ("network", net("flood"), 30),
        ("domain", domain_hash(SECRET, "mail.example"), 20),
        ("network", net("office"), 12),
    ]
    assert sources[0].usual == 0 and sources[2].usual == pytest.approx(1.0)
    async with admin_client(app, conn, "editor") as editor:
        page = await editor.get("/admin/trending")
    assert page.status_code == 200
    text = page.text
    assert text.index(hash_label(net("flood"))) < text.index(hash_label(net("office")))
    assert f"network={net('flood').hex()}" in text  # the bulk action's link
    assert "mail.example" not in text


async def test_the_alert_goes_to_the_admins_once_an_hour(app, conn, mail_settings, mail_server):
    await flood_and_steady(conn)
    await make_admin(conn, "owner@example.org", "owner")
    await make_admin(conn, "editor@example.org", "editor")
    gone = await make_admin(conn, "gone@example.org", "editor")
    await conn.execute("UPDATE admins SET disabled = true WHERE id = $1", gone)
    mailer = Mailer(mail_settings)
    # The flood rises 30 above its usual rate; the domain 20, the office 11.
    alerted = await send_alerts(app.state.db, mailer, threshold=15)
    assert [(s.kind, s.hash) for s in alerted] == [
        ("network", net("flood")), ("domain", domain_hash(SECRET, "mail.example")),
    ]  # fmt: skip
    assert await send_alerts(app.state.db, mailer, threshold=15) == []  # not again this hour
    assert await send_alerts(app.state.db, mailer, threshold=0) == []  # 0: alerts off
    mails = await opened_outbox(conn)
    assert sorted(m["recipient"] for m in mails) == ["editor@example.org", "owner@example.org"]
    assert {m["purpose"] for m in mails} == {"notice"}
    assert hash_label(net("flood")) in mails[0]["body_text"]
    assert "http://testserver/admin/trending" in mails[0]["body_text"]

    # An hour later the flood still runs: one more alert.
    await conn.execute("UPDATE trending_alerts SET alerted_at = alerted_at - interval '61 min'")
    assert len(await send_alerts(app.state.db, mailer, threshold=15)) == 2
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 4
    assert await deliver_due(app.state.db, mail_settings) == 4
    assert "Signing alert" in mail_server.messages[0]["Subject"]


# Bulk invalidation ---------------------------------------------------------------------------


async def public_names(client) -> set[str]:
    entries = (await client.get("/p/release-them/signatures.json")).json()["signatures"]
    return {e["name"] for e in entries}


async def test_bulk_invalidation_previews_touches_exactly_those_and_reinstates(app, conn, client):
    pid = await make_petition(conn)
    flood, other = net("203.0.113.0/24"), net("198.51.100.0/24")
    now = await conn.fetchval("SELECT now()")
    at = {"created_at": now - timedelta(minutes=30)}
    for i in range(5):
        await add_signature(conn, pid, name=f"Flood {i}", network_hash=flood, **at)
    await add_signature(conn, pid, name="Flood pending", network_hash=flood, status="pending", **at)
    await add_signature(conn, pid, name="Flood held", network_hash=flood, status="held",
                        verified_at=now, **at)  # fmt: skip
    await add_signature(conn, pid, name="Flood rejected", network_hash=flood, status="rejected",
                        **at)  # fmt: skip
    await add_signature(conn, pid, name="Earlier", network_hash=flood,
                        created_at=now - timedelta(hours=3))  # fmt: skip
    for i in range(3):
        await add_signature(conn, pid, name=f"Neighbour {i}", network_hash=other, **at)
    assert await count_is(client, 9)
    before = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM signatures")}

    since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    criteria = {"network": "203.0.113.77", "since": since, "petition": "release-them"}
    async with admin_client(app, conn, "editor") as editor:
        page = await editor.get("/admin/invalidations", params=criteria)
        assert page.status_code == 200
        assert re.search(r"<strong>7</strong> signature\(s\) would be invalidated", page.text)
        assert "rejected 1" in page.text and "203.0.113.0/24" in page.text
        form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        assert form["expected"] == "7" and form["until"]
        done = await editor.post("/admin/invalidations", {**form, "action": "invalidate"})
        assert done.status_code == 303
        assert "Invalidated 7 signature(s)." in (await editor.get("/admin/invalidations")).text

        # Counts, lists and live events follow at once.
        assert await count_is(client, 4)
        assert await public_names(client) == {"Earlier", "Neighbour 0", "Neighbour 1",
                                              "Neighbour 2"}  # fmt: skip
        rows = await conn.fetch("SELECT id, status, invalidated_from FROM signatures ORDER BY id")
        moved = {r["id"] for r in rows if r["status"] == "invalidated"}
        assert len(moved) == 7
        assert all(before[r["id"]] in ("verified", "pending", "held") for r in rows
                   if r["id"] in moved)  # fmt: skip
        assert {r["id"]: r["status"] for r in rows if r["id"] not in moved} == {
            i: s for i, s in before.items() if i not in moved
        }
        assert (
            await conn.fetchval("SELECT count(*) FROM petition_events WHERE event = 'uncounted'")
            == 5
        )  # the five that counted; pending and held never did

        [invalidation] = await conn.fetch("SELECT * FROM signature_invalidations")
        assert invalidation["touched"] == 7
        [logged] = await conn.fetch(
            "SELECT * FROM audit_log WHERE action = 'signatures.invalidate'"
        )
        details = json.loads(logged["details"])
        assert logged["admin_id"] == editor.admin_id and logged["petition_id"] == pid
        assert details["count"] == 7 and details["criteria"]["network_name"] == "203.0.113.0/24"

        # A forged post changes nothing.
        forged = await editor.http.post(
            "/admin/invalidations", data={"action": "reinstate", "id": str(invalidation["id"])}
        )
        assert forged.status_code == 403

        back = await editor.post(
            "/admin/invalidations", {"action": "reinstate", "id": str(invalidation["id"])}
        )
        assert back.status_code == 303
        assert await count_is(client, 9)
        after = {
            r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM signatures")
        }
        assert after == before
        again = await editor.post(
            "/admin/invalidations", {"action": "reinstate", "id": str(invalidation["id"])}
        )
        assert again.status_code == 303
        assert "already reinstated" in (await editor.get("/admin/invalidations")).text
        [logged] = await conn.fetch("SELECT * FROM audit_log WHERE action = 'signatures.reinstate'")
        assert json.loads(logged["details"])["count"] == 7
    assert "Flood 0" in {*await public_names(client)}


async def test_invalidation_by_domain_hash_and_wide_networks_in_batches(app, conn, client):
    from petitions.invalidation import invalidate, parse_criteria, preview, reinstate

    pid = await make_petition(conn)
    bots = domain_hash(SECRET, "bots.example")
    now = await conn.fetchval("SELECT now()")
    for i in range(7):
        await add_signature(conn, pid, domain_hash=bots, network_hash=net(f"10.0.{i}.0/24"))
    await add_signature(conn, pid, domain_hash=domain_hash(SECRET, "people.example"),
                        network_hash=net("10.0.1.0/24"))  # fmt: skip
    admin = await make_admin(conn)

    def criteria(**values):
        return parse_criteria(values, SECRET, None, None, now + timedelta(minutes=1))

    assert (await preview(app.state.db, criteria(domain=bots.hex()))).touched == 7
    assert (await preview(app.state.db, criteria(domain="Bots.Example"))).touched == 7
    # A /22 is four of the /24s signatures keep.
    assert (await preview(app.state.db, criteria(network="10.0.0.0/22"))).touched == 5
    wide = criteria(network="10.0.0.0/22", domain="bots.example")
    _, moved = await invalidate(app.state.db, admin, wide, batch_size=2)
    assert moved == 4 and await count_is(client, 4)
    [invalidation_id] = await conn.fetch("SELECT id FROM signature_invalidations")
    assert await reinstate(app.state.db, admin, invalidation_id["id"], batch_size=3) == 4
    assert await count_is(client, 8)
    for bad in ({}, {"domain": "*.bots.example"}, {"network": "10.0.0.0/8"},
                {"network": "nowhere"}, {"domain": "bots.example", "since": "yesterday"},
                {"domain": "bots.example", "since": "2030-01-01T00:00"}):  # fmt: skip
        with pytest.raises(BadValue):
            criteria(**bad)
    async with admin_client(app, conn, "editor") as editor:
        page = await editor.get("/admin/invalidations", params={"network": "10.0.0.0/8"})
        assert page.status_code == 400 and "too large" in page.text
