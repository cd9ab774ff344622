"""Admin login, sessions, CSRF, and who may open which admin page (login throttling:
test_admin_lockout.py; the second factor: test_totp.py)."""

from __future__ import annotations

import re
from dataclasses import replace

from admin_support import PASSWORD, admin_client, anonymous, csrf_from, log_in, make_admin
from conftest import make_petition
from petitions.app import admin_routes, create_app


async def test_login_logout_and_the_session_cookie(app, conn):
    await make_admin(conn, "campaigner@example.org", "editor")
    async with anonymous(app) as http:
        page = await http.get("/admin")
        assert page.status_code == 303
        assert page.headers["location"] == "http://testserver/admin/login?next=%2Fadmin"

        wrong = await log_in(http, "campaigner@example.org", "not the password")
        assert wrong.status_code == 400 and "Wrong email or password" in wrong.text
        assert (await http.get("/admin")).status_code == 303

        done = await log_in(http, " Campaigner@Example.org ")
        assert done.status_code == 303 and done.headers["location"] == "http://testserver/admin"
        cookies = [c.lower() for c in done.headers.get_list("set-cookie")]
        cookie = next(c for c in cookies if c.startswith("petitions_admin="))
        device = next(c for c in cookies if c.startswith("petitions_device="))  # devices.py
        assert "httponly" in device and "path=/admin" in device and "max-age=31536000" in device
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/admin" in cookie
        assert "secure" not in cookie  # BASE_URL is http:// in the tests
        home = await http.get("/admin")
        assert home.status_code == 200 and "campaigner@example.org" in home.text
        assert home.headers["cache-control"] == "no-store"
        assert await conn.fetchval("SELECT last_login_at IS NOT NULL FROM admins") is True

        # Public pages neither read nor set the admin cookie.
        await make_petition(conn)
        public = await http.get("/p/release-them")
        assert "set-cookie" not in public.headers and "Cookie" not in public.headers.get("vary", "")

        ask = await http.get("/admin/logout")
        assert ask.status_code == 200 and "Log out?" in ask.text
        assert (await http.get("/admin")).status_code == 200  # a GET never logs out
        out = await http.post("/admin/logout", data={"csrf_token": csrf_from(ask.text)})
        assert out.status_code == 303 and out.headers["location"].endswith("/admin/login")
        assert (await http.get("/admin")).status_code == 303
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["admin.login", "admin.logout"]


async def test_session_cookie_is_secure_behind_https(settings):
    https_settings = replace(
        settings, base_url="https://petitions.example", allowed_hosts=("testserver",)
    )
    https_app = create_app(https_settings, False)
    async with https_app.router.lifespan_context(https_app), anonymous(https_app) as http:
        page = await http.get("/admin/login")
        cookie = page.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


async def test_login_goes_back_to_the_page_asked_for_but_never_elsewhere(app, conn):
    await make_admin(conn)
    for target, expected in (
        ("/admin/users", "/admin/users"),
        ("https://evil.example/admin", "http://testserver/admin"),
        ("//evil.example/admin", "http://testserver/admin"),
        ("/p/release-them", "http://testserver/admin"),
    ):
        async with anonymous(app) as http:
            page = await http.get("/admin/login", params={"next": target})
            response = await http.post(
                "/admin/login",
                data={"email": "owner@example.org", "password": PASSWORD, "next": target,
                      "csrf_token": csrf_from(page.text)},
            )  # fmt: skip
            assert response.headers["location"] == expected, target


async def test_bad_login_input_is_a_clear_400(app, conn):
    await make_admin(conn)
    async with anonymous(app) as http:
        token = csrf_from((await http.get("/admin/login")).text)
        for email, password in (
            ("owner@example.org\x00", PASSWORD),
            ("", PASSWORD),
            ("owner@example.org", ""),
            ("x" * 5000 + "@example.org", PASSWORD),
            ("owner@example.org", "p" * 100_000),
        ):
            response = await http.post(
                "/admin/login", data={"email": email, "password": password, "csrf_token": token}
            )
            assert response.status_code == 400, (email[:20], len(password))


async def test_forms_without_the_csrf_token_are_refused(app, conn):
    async with admin_client(app, conn) as owner:
        new = {"slug": "forged", "title": "Forged", "default_language": "en",
               "accepts_individuals": "1", "action": "create"}  # fmt: skip
        missing = await owner.http.post("/admin/petitions/new", data=new)
        assert missing.status_code == 403 and "security token" in missing.text
        wrong = await owner.http.post("/admin/petitions/new", data={**new, "csrf_token": "x" * 43})
        assert wrong.status_code == 403
        # A token of another session does not work either.
        async with anonymous(app) as other:
            theirs = csrf_from((await other.get("/admin/login")).text)
        stolen = await owner.http.post("/admin/petitions/new", data={**new, "csrf_token": theirs})
        assert stolen.status_code == 403
        # Posted from another site's page, even with the token.
        cross = await owner.post(
            "/admin/petitions/new", new, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        assert await conn.fetchval("SELECT count(*) FROM petitions") == 0
        ok = await owner.post("/admin/petitions/new", new)
        assert ok.status_code == 303
        assert await conn.fetchval("SELECT count(*) FROM petitions") == 1
    async with anonymous(app) as http:
        await http.get("/admin/login")
        refused = await http.post(
            "/admin/login", data={"email": "owner@example.org", "password": PASSWORD}
        )
        assert refused.status_code == 403


def _example_path(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


async def test_every_admin_route_checks_who_asks(app, conn):
    """Anonymous: sent to the login page. Editor: not the owner pages. Owner: everything."""
    await make_petition(conn)
    await conn.execute(
        "INSERT INTO outbox (purpose, recipient, subject, body_text) "
        "VALUES ('notice', 'a@example.org', 'Hello', 'Hi')"
    )
    outbox_id = str(await conn.fetchval("SELECT id FROM outbox"))
    assert len(admin_routes) >= 14
    async with admin_client(app, conn, "editor") as editor, admin_client(app, conn) as owner:
        ids = {"slug": "release-them", "id": str(editor.admin_id)}
        checked = 0
        async with anonymous(app) as nobody:
            for route in admin_routes:
                role = getattr(route.endpoint, "required_role", None)
                path = _example_path(route.path, ids)
                if route.path == "/admin/outbox/{id}":
                    path = f"/admin/outbox/{outbox_id}"
                if route.name == "admin_login":
                    assert (await nobody.get(path)).status_code == 200
                    assert (await owner.get(path)).status_code == 303  # already logged in
                    continue
                assert role in ("editor", "owner"), route.path
                if "GET" in route.methods:
                    response = await nobody.get(path)
                    assert response.status_code == 303, path
                    assert response.headers["location"].startswith(
                        "http://testserver/admin/login?next="
                    )
                    assert (await editor.get(path)).status_code == (
                        403 if role == "owner" else 200
                    ), path
                    assert (await owner.get(path)).status_code == 200, path
                if "POST" in route.methods:
                    response = await nobody.post(path, data={"csrf_token": "x"})
                    assert response.status_code == 303, path
                    if role == "owner":
                        assert (await editor.post(path, {})).status_code == 403, path
                    # Without the token, even an owner is refused.
                    assert (await owner.http.post(path, data={})).status_code == 403, path
                checked += 1
        assert checked == len(admin_routes) - 1


async def test_disabled_admins_and_changed_passwords_end_sessions(app, conn):
    async with admin_client(app, conn, "editor") as editor, admin_client(app, conn) as owner:
        async with anonymous(app) as second:
            assert (await log_in(second, "editor@example.org")).status_code == 303
            changed = await editor.post(
                "/admin/password",
                {"current": PASSWORD, "new": "a much better passphrase", "repeat": "a much better passphrase"},
            )  # fmt: skip
            assert changed.status_code == 303
            assert (await editor.get("/admin")).status_code == 200  # this session goes on
            assert (await second.get("/admin")).status_code == 303  # the other one ended
            assert (await log_in(second, "editor@example.org")).status_code == 400
            assert (
                await log_in(second, "editor@example.org", "a much better passphrase")
            ).status_code == 303

        wrong = await editor.post(
            "/admin/password", {"current": "nope", "new": "x" * 12, "repeat": "x" * 12}
        )
        assert wrong.status_code == 400 and "current password is not right" in wrong.text

        disabled = await owner.post(f"/admin/users/{editor.admin_id}", {"action": "disable"})
        assert disabled.status_code == 303
        assert (await editor.get("/admin")).status_code == 303
        async with anonymous(app) as again:
            refused = await log_in(again, "editor@example.org", "a much better passphrase")
            assert refused.status_code == 403 and "disabled" in refused.text


async def test_sessions_end_when_idle_and_a_week_after_logging_in(app, conn, monkeypatch):
    import time

    real_time = time.time
    offset = 0.0
    monkeypatch.setattr(time, "time", lambda: real_time() + offset)
    async with admin_client(app, conn, "editor") as editor:
        # Active every eleven hours: the cookie is renewed each time, for up to a week.
        for _ in range(15):
            offset += 11 * 3600
            assert (await editor.get("/admin")).status_code == 200, offset / 3600
        offset += 11 * 3600  # 176 hours after logging in
        assert (await editor.get("/admin")).status_code == 303
    async with admin_client(app, conn, "owner") as owner:
        offset += 13 * 3600  # idle for longer than 12 hours
        assert (await owner.get("/admin")).status_code == 303
