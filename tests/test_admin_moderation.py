"""Moderation: the list with its filters, approving held signatures, rejecting, restoring."""

from __future__ import annotations

from admin_support import admin_client
from conftest import add_signature, count_is, make_petition

URL = "/admin/petitions/release-them/signatures"


async def public_names(client) -> set[str]:
    entries = (await client.get("/p/release-them/signatures.json")).json()["signatures"]
    return {e.get("organisation") or e.get("name") for e in entries}


async def test_filters_find_by_status_kind_country_and_name_organisation_or_email(app, conn):
    pid = await make_petition(conn)
    await add_signature(conn, pid, name="Leyla Ahmadi", email="leyla@example.org", country="SE")
    await add_signature(conn, pid, name="Reza Tehrani", email="reza@union.example", country="IR",
                        status="pending")  # fmt: skip
    await add_signature(conn, pid, kind="organisation", organisation="Dockers Union",
                        name="Ana Souza", country="BR", status="held",
                        verified_at=await conn.fetchval("SELECT now()"))  # fmt: skip
    async with admin_client(app, conn, "editor") as editor:

        async def names(**params) -> list[str]:
            page = await editor.get(URL, params=params)
            assert page.status_code == 200
            return [n for n in ("Leyla Ahmadi", "Reza Tehrani", "Dockers Union") if n in page.text]

        assert await names() == ["Leyla Ahmadi", "Reza Tehrani", "Dockers Union"]
        assert await names(status="held") == ["Dockers Union"]
        assert await names(status="pending") == ["Reza Tehrani"]
        assert await names(kind="individual") == ["Leyla Ahmadi", "Reza Tehrani"]
        assert await names(country="se") == ["Leyla Ahmadi"]
        assert await names(q="dockers") == ["Dockers Union"]
        assert await names(q="union.example") == ["Reza Tehrani"]  # by email
        assert await names(q="ahmadi") == ["Leyla Ahmadi"]
        assert await names(q="100%_") == []
        page = await editor.get(URL)
        assert "leyla@example.org" in page.text  # admins see emails
        assert 'Held <span class="n">1</span>' in page.text
        for bad in ({"status": "lost"}, {"kind": "robot"}, {"country": "XX"}, {"q": "a\x00b"},
                    {"q": "x" * 201}, {"after": "-1"}, {"after": "9" * 40}):  # fmt: skip
            assert (await editor.get(URL, params=bad)).status_code == 400, bad


async def test_pages_of_fifty(app, conn):
    pid = await make_petition(conn)
    for i in range(55):
        await add_signature(conn, pid, name=f"Signer number {i:03d}")
    async with admin_client(app, conn, "editor") as editor:
        first = await editor.get(URL)
        assert "Signer number 054" in first.text and "Signer number 004" not in first.text
        next_url = first.text.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
        second = await editor.get(next_url)
        assert "Signer number 004" in second.text and "Signer number 054" not in second.text
        assert 'rel="next"' not in second.text


async def test_approve_reject_restore_change_counts_lists_and_the_audit_log(app, conn, client):
    pid = await make_petition(conn, moderate_organisations=True)
    now = await conn.fetchval("SELECT now() - interval '1 hour'")
    held = await add_signature(conn, pid, kind="organisation", organisation="Dockers Union",
                               status="held", verified_at=now)  # fmt: skip
    held2 = await add_signature(conn, pid, kind="organisation", organisation="Teachers Union",
                                status="held", verified_at=now)  # fmt: skip
    verified = await add_signature(conn, pid, name="Leyla Ahmadi")
    pending = await add_signature(conn, pid, name="Not Confirmed", status="pending")
    assert await count_is(client, 1)
    async with admin_client(app, conn, "editor") as editor:
        # Approve both held organisations at once.
        done = await editor.post(
            URL, {"action": "approve", "ids": [str(held["id"]), str(held2["id"]), str(verified["id"])],
                  "status": "held"},
        )  # fmt: skip
        assert done.status_code == 303 and done.headers["location"].endswith(URL + "?status=held")
        notice = (await editor.get(done.headers["location"])).text
        assert "2 signatures approved. 1 could not be approved" in notice
        assert await count_is(client, 3)
        assert await count_is(client, 2, key="organisations")
        assert await public_names(client) == {"Dockers Union", "Teachers Union", "Leyla Ahmadi"}
        approved_at = await conn.fetchval(
            "SELECT verified_at FROM signatures WHERE id = $1", held["id"]
        )
        assert approved_at > now  # counted from its approval

        # Reject one, from its own button.
        assert (await editor.post(URL, {"one": f"reject:{verified['id']}"})).status_code == 303
        assert await count_is(client, 2)
        assert "Leyla Ahmadi" not in await public_names(client)
        assert (await editor.post(URL, {"one": f"reject:{pending['id']}"})).status_code == 303

        # Restoring puts a confirmed signature back to verified, an unconfirmed one to pending.
        restore = await editor.post(
            URL, {"action": "restore", "ids": [str(verified["id"]), str(pending["id"])]}
        )
        assert restore.status_code == 303
        statuses = dict(await conn.fetch("SELECT id, status FROM signatures"))
        assert statuses[verified["id"]] == "verified" and statuses[pending["id"]] == "pending"
        assert await count_is(client, 3)
        assert "Leyla Ahmadi" in await public_names(client)

        # Nothing chosen, bad ids, unknown actions, another petition's signatures.
        assert (await editor.post(URL, {"action": "approve"})).status_code == 303
        assert (
            await editor.post(URL, {"action": "approve", "ids": "1; DROP TABLE"})
        ).status_code == 400
        assert (await editor.post(URL, {"action": "delete", "ids": "1"})).status_code == 400
        assert (await editor.post(URL, {"one": "approve:"})).status_code == 400
        other = await make_petition(conn, "other-one")
        stranger = await add_signature(conn, other, status="held", verified_at=now)
        await editor.post(URL, {"action": "approve", "ids": str(stranger["id"])})
        assert (
            await conn.fetchval("SELECT status FROM signatures WHERE id = $1", stranger["id"])
            == "held"
        )

    log = await conn.fetch(
        "SELECT admin_id, action, signature_id, details FROM audit_log"
        " WHERE action LIKE 'signature.%' ORDER BY id"
    )
    assert [(r["action"], r["signature_id"]) for r in log] == [
        ("signature.approve", held["id"]), ("signature.approve", held2["id"]),
        ("signature.reject", verified["id"]), ("signature.reject", pending["id"]),
        ("signature.restore", verified["id"]), ("signature.restore", pending["id"]),
    ]  # fmt: skip
    assert all(r["admin_id"] == editor.admin_id for r in log)
    assert '"to": "pending"' in log[-1]["details"] and '"from": "rejected"' in log[-1]["details"]
    # The tallies agree with a recount from scratch.
    tallied = await conn.fetchval(
        "SELECT sum(n) FROM signature_tallies WHERE petition_id = $1", pid
    )
    assert tallied == await conn.fetchval(
        "SELECT count(*) FROM signatures WHERE petition_id = $1 AND status = 'verified'", pid
    )
