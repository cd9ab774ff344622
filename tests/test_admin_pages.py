"""The dashboard with its charts, the outbox, and the owners' page of admins."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from admin_support import PASSWORD, admin_client, anonymous, log_in
from conftest import add_signature, make_petition
from petitions.charts import daily_columns, horizontal_bars, nice_ceiling


async def test_dashboard_shows_petitions_and_charts_drawn_on_the_server(app, conn):
    pid = await make_petition(conn, goal=1000)
    await conn.execute("UPDATE petitions SET published_at = now() - interval '10 days'")
    await make_petition(conn, "a-draft", status="draft", title="Draft statement")
    now = datetime.now(UTC)
    for days, country, ref in ((0, "IR", "newsletter"), (0, "IR", "newsletter"), (2, "FR", None),
                               (5, "BR", "union-mail")):  # fmt: skip
        await add_signature(
            conn, pid, country=country, ref=ref, verified_at=now - timedelta(days=days)
        )
    await add_signature(conn, pid, status="pending", country="DE")
    await add_signature(conn, pid, kind="organisation", status="held", verified_at=now)
    async with admin_client(app, conn, "editor") as editor:
        home = await editor.get("/admin")
        assert "Release the detained workers" in home.text and "Draft statement" in home.text
        assert "?status=held" in home.text

        page = await editor.get("/admin/petitions/release-them/dashboard")
        assert page.status_code == 200
        html = page.text
        assert html.count("<svg") == 3
        assert "style=" not in html  # the CSP forbids inline styles
        assert "<script>" not in html
        assert "Iran: 2" in html and "France: 1" in html
        assert "newsletter" in html and "union-mail" in html
        days = re.search(r'<svg[^>]*aria-label="Verified signatures per day".*?</svg>', html, re.S)
        assert days and days.group(0).count('class="bar"') == 11  # ten days since publication
        assert "Waiting for email confirmation: 1" in html and "Held for moderation: 1" in html
        # Nothing is fetched from elsewhere: every address is this site's.
        addresses = re.findall(r'(?:src|href|action)="(https?://[^"]+)"', html)
        assert addresses and all(a.startswith("http://testserver/") for a in addresses)


def test_chart_helpers():
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 450, 501)] == [1, 1, 5, 10, 20, 500, 1000]
    svg = horizontal_bars([("<Ruritania>", 5)], "By country")
    assert "&lt;Ruritania&gt;" in svg and "<Ruritania>" not in svg
    empty = daily_columns([], "Nothing yet")
    assert empty.startswith("<svg") and empty.endswith("</svg>")


async def test_owners_manage_admins(app, conn):
    async with admin_client(app, conn) as owner:
        added = await owner.post(
            "/admin/users", {"email": " New.Editor@Example.org", "role": "editor", "password": "long enough pass"}
        )  # fmt: skip
        assert added.status_code == 303
        row = await conn.fetchrow("SELECT * FROM admins WHERE email = 'new.editor@example.org'")
        assert row["role"] == "editor" and row["password_hash"].startswith("$argon2")
        for values, message in (
            ({"email": "new.editor@example.org", "role": "editor", "password": "long enough pass"},
             "already an admin"),
            ({"email": "not an email", "role": "editor", "password": "long enough pass"},
             "Not a valid email"),
            ({"email": "x@example.org", "role": "king", "password": "long enough pass"}, "role"),
            ({"email": "x@example.org", "role": "editor", "password": "short"}, "at least 10"),
            ({"email": "x\x00@example.org", "role": "editor", "password": "long enough pass"},
             "Not a valid email"),
        ):  # fmt: skip
            response = await owner.post("/admin/users", values)
            assert response.status_code == 400 and message in response.text, message
        async with anonymous(app) as http:
            assert (
                await log_in(http, "new.editor@example.org", "long enough pass")
            ).status_code == 303

        new_id = row["id"]
        refused = await owner.post(f"/admin/users/{owner.admin_id}", {"action": "disable"})
        assert refused.status_code == 400 and "cannot disable yourself" in refused.text
        assert (
            await owner.post(f"/admin/users/{new_id}", {"action": "make_owner"})
        ).status_code == 303
        assert await conn.fetchval("SELECT role FROM admins WHERE id = $1", new_id) == "owner"
        assert (
            await owner.post(f"/admin/users/{new_id}", {"action": "disable"})
        ).status_code == 303
        assert await conn.fetchval("SELECT disabled FROM admins WHERE id = $1", new_id) is True
        assert (await owner.post(f"/admin/users/{new_id}", {"action": "enable"})).status_code == 303
        assert (await owner.post(f"/admin/users/{new_id}", {"action": "fly"})).status_code == 400
        assert (await owner.post("/admin/users/424242", {"action": "disable"})).status_code == 400
        assert (await owner.post("/admin/users/x", {"action": "disable"})).status_code == 404

    # The last active owner cannot be demoted or disabled by another owner's mistake.
    await conn.execute("UPDATE admins SET role = 'editor' WHERE email = 'owner@example.org'")
    async with anonymous(app) as http:
        await log_in(http, "new.editor@example.org", "long enough pass")
        page = await http.get("/admin/users")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        lone = await conn.fetchval("SELECT id FROM admins WHERE email = 'owner@example.org'")
        ok = await http.post(
            f"/admin/users/{lone}", data={"action": "make_owner", "csrf_token": token}
        )
        assert ok.status_code == 303
        back = await http.post(
            f"/admin/users/{lone}", data={"action": "make_editor", "csrf_token": token}
        )
        assert back.status_code == 303
        await conn.execute("UPDATE admins SET disabled = true WHERE id = $1", lone)
        # Now new.editor is the only active owner: nobody can take that away.
    assert (
        await conn.fetchval("SELECT count(*) FROM admins WHERE role = 'owner' AND NOT disabled")
        == 1
    )
    actions = {r["action"] for r in await conn.fetch("SELECT action FROM audit_log")}
    assert {"admin.create", "admin.change"} <= actions
    assert PASSWORD  # the helpers' password stays out of the log
    assert not await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE details::text LIKE '%long enough%'"
    )


async def test_bad_input_anywhere_never_makes_a_500(app, conn):
    """Every admin route, every field it reads, with values that break careless code."""
    pid = await make_petition(conn)
    await add_signature(conn, pid)
    fields = ("status", "kind", "country", "q", "after", "since", "bom", "lang", "purpose",
              "action", "one", "ids", "slug", "title", "summary", "target", "body", "demands",
              "note", "goal", "closes_at", "default_language", "language", "subject",
              "confirmation", "email", "password", "role", "current", "new", "repeat", "next",
              "accepts_individuals")  # fmt: skip
    nasty = ["\x00", "9" * 40, "-1", "%", "'; DROP TABLE petitions; --", "\u202e", "x" * 1000,
             "approve:99999999999999999999", "2025-02-30"]  # fmt: skip
    paths = ["/admin", "/admin/petitions/new", "/admin/petitions/release-them",
             "/admin/petitions/release-them/dashboard", "/admin/petitions/release-them/signatures",
             "/admin/petitions/release-them/export.csv", "/admin/petitions/release-them/updates",
             "/admin/outbox", "/admin/users", "/admin/password"]  # fmt: skip
    async with admin_client(app, conn) as owner:
        for value in nasty:
            params = dict.fromkeys(fields, value)
            for path in paths:
                got = await owner.get(path, params=params)
                assert got.status_code < 500, (path, value[:12], got.status_code)
                posted = await owner.post(path, params)
                assert posted.status_code < 500, (path, value[:12], posted.status_code)
        huge = dict.fromkeys(fields, "y" * 40_000)
        for path in paths:
            assert (await owner.post(path, huge)).status_code < 500, path
        assert (await owner.get("/admin/petitions/release-them")).status_code == 200
    assert await conn.fetchval("SELECT count(*) FROM petitions") >= 1
