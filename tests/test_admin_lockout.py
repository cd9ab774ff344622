"""Failed logins slow the one who fails, never lock the owner out (login_throttle.py,
devices.py); logging out ends a session on the server; HSTS under https."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from admin_support import PASSWORD, admin_client, csrf_from, log_in, make_admin
from petitions import auth, devices
from petitions.app import create_app
from petitions.login_throttle import (
    MAX_FAILURES_PER_ACCOUNT,
    MAX_FAILURES_PER_ACCOUNT_AND_NETWORK,
    MAX_FAILURES_PER_NETWORK,
    PERIOD,
)

ATTACKER = "203.0.113.9"
OFFICE_COLLEAGUE = "203.0.113.50"  # the attacker's /24: an office network, a café
ELSEWHERE = "198.51.100.7"


def browser(app, address: str, base_url: str = "http://testserver") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 4000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
def quick_passwords(monkeypatch):
    """Argon2 is not what these tests are about: a quick stand-in keeps them fast."""
    checked = []

    def matches(stored: str, password: str) -> bool:
        checked.append(stored)
        return password == PASSWORD

    monkeypatch.setattr(auth, "password_matches", matches)
    return checked


async def test_an_attacker_network_does_not_lock_the_owner_out(app, conn, quick_passwords):
    await make_admin(conn, "owner@example.org")
    # The owner once logged in from the office: that browser has a device cookie.
    async with browser(app, OFFICE_COLLEAGUE) as owners_browser:
        assert (await log_in(owners_browser, "owner@example.org")).status_code == 303
        assert owners_browser.cookies.get(devices.DEVICE_COOKIE)
        ask = await owners_browser.get("/admin/logout")
        await owners_browser.post("/admin/logout", data={"csrf_token": csrf_from(ask.text)})

        async with browser(app, ATTACKER) as attacker:
            for _ in range(MAX_FAILURES_PER_ACCOUNT_AND_NETWORK):
                assert (await log_in(attacker, "owner@example.org", "guess")).status_code == 400
            slowed = await log_in(attacker, "owner@example.org")  # even the right password
            assert slowed.status_code == 429
            assert 0 < int(slowed.headers["retry-after"]) <= PERIOD.total_seconds()
            assert "slowed down" in slowed.text and "not locked" in slowed.text
            assert (await attacker.get("/admin")).status_code == 303
            # Spraying other emails from the network fills the network's allowance too.
            for i in range(MAX_FAILURES_PER_NETWORK - MAX_FAILURES_PER_ACCOUNT_AND_NETWORK):
                assert (await log_in(attacker, f"nobody{i}@example.org", "x")).status_code == 400
            assert (await log_in(attacker, "someone@example.org", "x")).status_code == 429

        # The owner, on another network: not slowed at all.
        async with browser(app, ELSEWHERE) as elsewhere:
            assert (await log_in(elsewhere, "owner@example.org")).status_code == 303
        # The owner's own browser on the attacker's network keeps its allowance.
        assert (await log_in(owners_browser, "owner@example.org")).status_code == 303
        assert (await owners_browser.get("/admin")).status_code == 200
    # A fresh browser on that network shares the network's fate until it calms down.
    async with browser(app, OFFICE_COLLEAGUE) as fresh:
        assert (await log_in(fresh, "owner@example.org")).status_code == 429

    # No email or network is stored in clear; after the period, the attacker's
    # network may try again.
    buckets = [r["bucket"] for r in await conn.fetch("SELECT bucket FROM throttle_counters")]
    assert buckets and not any("example.org" in b or "203.0.113" in b for b in buckets)
    await conn.execute(
        "UPDATE throttle_counters SET window_start = window_start - $1::interval", PERIOD
    )
    async with browser(app, ATTACKER) as attacker:
        assert (await log_in(attacker, "owner@example.org")).status_code == 303


async def test_guessing_from_many_networks_slows_new_browsers_not_known_ones(
    app, conn, quick_passwords
):
    await make_admin(conn, "owner@example.org")
    async with browser(app, ELSEWHERE) as owners_browser:
        assert (await log_in(owners_browser, "owner@example.org")).status_code == 303
        ask = await owners_browser.get("/admin/logout")
        await owners_browser.post("/admin/logout", data={"csrf_token": csrf_from(ask.text)})

        networks = -(-MAX_FAILURES_PER_ACCOUNT // MAX_FAILURES_PER_ACCOUNT_AND_NETWORK)
        for n in range(networks):
            async with browser(app, f"192.0.{n}.1") as bot:
                for _ in range(MAX_FAILURES_PER_ACCOUNT_AND_NETWORK):
                    assert (await log_in(bot, "owner@example.org", "guess")).status_code == 400
        async with browser(app, "192.0.200.1") as another_bot:
            slowed = await log_in(another_bot, "owner@example.org")
            assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) > 0
        # The owner's known browser is not slowed by any of it.
        assert (await log_in(owners_browser, "owner@example.org")).status_code == 303


async def test_a_device_cookie_has_its_own_limit_and_helps_only_its_own_admin(
    app, conn, quick_passwords, settings
):
    owner_id = await make_admin(conn, "owner@example.org")
    editor_id = await make_admin(conn, "editor@example.org", "editor")
    async with browser(app, ATTACKER) as stolen:
        # A genuine cookie of the editor does nothing for guesses at the owner.
        stolen.cookies.set(
            devices.DEVICE_COOKIE, devices.issue(settings.secret_key, editor_id), path="/admin"
        )
        for _ in range(MAX_FAILURES_PER_ACCOUNT_AND_NETWORK):
            assert (await log_in(stolen, "owner@example.org", "guess")).status_code == 400
        assert (await log_in(stolen, "owner@example.org")).status_code == 429
    async with browser(app, ATTACKER) as forged:
        forged.cookies.set(
            devices.DEVICE_COOKIE, devices.issue("another key" * 4, owner_id), path="/admin"
        )
        assert (await log_in(forged, "owner@example.org")).status_code == 429
    # The owner's genuine cookie: its own allowance, spent by its own failures only.
    async with browser(app, ATTACKER) as owners_browser:
        owners_browser.cookies.set(
            devices.DEVICE_COOKIE, devices.issue(settings.secret_key, owner_id), path="/admin"
        )
        for _ in range(MAX_FAILURES_PER_ACCOUNT_AND_NETWORK):
            assert (await log_in(owners_browser, "owner@example.org", "typo")).status_code == 400
        assert (await log_in(owners_browser, "owner@example.org")).status_code == 429
    assert devices.device_of(settings.secret_key, "x" * 1000, owner_id) is None
    assert devices.device_of(settings.secret_key, "not.a.cookie", owner_id) is None


async def test_unknown_emails_cost_the_same_password_check(app, conn, quick_passwords):
    await make_admin(conn, "owner@example.org")
    async with browser(app, ELSEWHERE) as http:
        unknown = await log_in(http, "nobody@example.org", "guess")
        known = await log_in(http, "owner@example.org", "guess")
    assert unknown.status_code == known.status_code == 400
    assert "Wrong email or password" in unknown.text and "Wrong email or password" in known.text
    # Both were checked against an Argon2 hash (a dummy one for the unknown email).
    assert len(quick_passwords) == 2 and all(h.startswith("$argon2") for h in quick_passwords)


async def test_a_copied_session_cookie_stops_working_after_logout(app, conn):
    async with admin_client(app, conn) as owner:
        async with browser(app, ELSEWHERE) as thief:
            for cookie in owner.http.cookies.jar:
                thief.cookies.set(cookie.name, cookie.value, path=cookie.path)
            assert (await thief.get("/admin")).status_code == 200  # the copy works...
            assert await conn.fetchval("SELECT count(*) FROM admin_sessions") == 1
            out = await owner.post("/admin/logout")
            assert out.status_code == 303
            assert (await thief.get("/admin")).status_code == 303  # ...until the owner logs out
            assert (await owner.get("/admin")).status_code == 303
    assert await conn.fetchval("SELECT count(*) FROM admin_sessions") == 0


async def test_hsts_under_https_only(app, settings, conn):
    async with browser(app, ELSEWHERE) as http:
        for path in ("/", "/admin/login"):
            assert "strict-transport-security" not in (await http.get(path)).headers
    base_url = "https://petitions.example"
    https_app = create_app(replace(settings, base_url=base_url), False)
    async with https_app.router.lifespan_context(https_app):
        async with browser(https_app, ELSEWHERE, base_url) as https:
            for path in ("/", "/admin/login", "/no-such-page"):
                response = await https.get(path)
                assert response.headers["strict-transport-security"] == "max-age=31536000"
