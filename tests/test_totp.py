"""The admins' optional second factor (totp.py, views/admin_account.py): enrolment,
logging in with a code, codes refused when wrong or used before, slowed-down
guessing, required for owners when REQUIRE_TOTP_FOR_OWNERS is set, and recovery."""

from __future__ import annotations

import re
from dataclasses import replace
from html import unescape

import pyotp
import pytest

from admin_support import (
    PASSWORD,
    AdminClient,
    admin_client,
    anonymous,
    csrf_from,
    log_in,
    make_admin,
)
from petitions import totp
from petitions.admins import AdminError, reset_second_factor
from petitions.app import create_app
from petitions.crypto import cipher_for
from petitions.login_throttle import MAX_FAILURES_PER_ACCOUNT_AND_NETWORK


async def enrol(owner) -> str:
    """Set up a second factor through the account page; return the secret."""
    page = await owner.get("/admin/account/totp")
    assert page.status_code == 200 and "Set up a second factor" in page.text
    assert (await owner.post("/admin/account/totp", {"action": "start"})).status_code == 303
    page = await owner.get("/admin/account/totp")
    secret = re.search(r'<code class="totp-secret">([A-Z2-7 ]+)</code>', page.text).group(1)
    secret = secret.replace(" ", "")
    uri = unescape(re.search(r'<code class="totp-uri">([^<]+)</code>', page.text).group(1))
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert "<svg" in page.text and "http" not in page.text.split("<svg", 1)[1].split("</svg>")[0]

    wrong = await owner.post("/admin/account/totp", {"action": "confirm", "code": "000000"})
    if pyotp.TOTP(secret).verify("000000", valid_window=1):  # one chance in 333,333
        pytest.skip("the random secret's code happened to be 000000")
    assert wrong.status_code == 400 and "not right" in wrong.text
    confirmed = await owner.post(
        "/admin/account/totp", {"action": "confirm", "code": pyotp.TOTP(secret).now()}
    )
    assert confirmed.status_code == 303
    return secret


async def next_code(conn, admin_id: int, secret: str) -> str:
    """A code for the step after the last one used: right, and not used yet."""
    last = await conn.fetchval("SELECT totp_last_step FROM admins WHERE id = $1", admin_id)
    return pyotp.TOTP(secret).generate_otp(last + 1)


async def send_code(http, code: str):
    page = await http.get("/admin/login")
    return await http.post("/admin/login", data={"code": code, "csrf_token": csrf_from(page.text)})


async def test_enrol_then_log_in_with_a_code(app, conn, settings):
    async with admin_client(app, conn) as owner:
        secret = await enrol(owner)
        row = await conn.fetchrow("SELECT * FROM admins WHERE id = $1", owner.admin_id)
        # Sealed at rest with the data key, bound to the admin.
        assert row["totp_pending"] is None and row["totp_enabled_at"] is not None
        assert secret.encode() not in bytes(row["totp_secret"])
        assert (
            cipher_for(settings).open(
                row["totp_secret"], b"petitions/admin-totp/%d" % owner.admin_id
            )
            == secret.encode()
        )
        page = await owner.get("/admin/account/totp")
        assert "is on since" in page.text and secret not in page.text

    async with anonymous(app) as http:
        asked = await log_in(http, "owner@example.org")
        assert asked.status_code == 200 and 'name="code"' in asked.text
        assert (await http.get("/admin")).status_code == 303  # not logged in yet
        # The code already used at enrolment is refused, and so is a wrong one.
        last = await conn.fetchval("SELECT totp_last_step FROM admins")
        used = pyotp.TOTP(secret).generate_otp(last)
        assert (await send_code(http, used)).status_code == 400
        refused = await send_code(http, "12345x")
        assert refused.status_code == 400 and "not right" in refused.text
        code = await next_code(conn, owner.admin_id, secret)
        assert (await send_code(http, f"{code[:3]} {code[3:]}")).status_code == 303
        assert (await http.get("/admin")).status_code == 200
    async with anonymous(app) as again:
        assert (await log_in(again, "owner@example.org")).status_code == 200
        assert (await send_code(again, code)).status_code == 400  # used once already
        # Starting over forgets the password step.
        page = await again.get("/admin/login")
        assert "Your code" in page.text
        await again.post("/admin/login", data={"restart": "1", "csrf_token": csrf_from(page.text)})
        assert 'name="password"' in (await again.get("/admin/login")).text
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["admin.login", "admin.totp.enrol", "admin.login"]


async def test_guessing_codes_is_slowed_down(app, conn):
    async with admin_client(app, conn) as owner:
        secret = await enrol(owner)
    async with anonymous(app) as http:
        assert (await log_in(http, "owner@example.org")).status_code == 200
        wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
        for _ in range(MAX_FAILURES_PER_ACCOUNT_AND_NETWORK - 1):
            assert (await send_code(http, wrong)).status_code == 400
        # Logging in with the password again does not give the code guesses back.
        assert (await log_in(http, "owner@example.org")).status_code == 200
        assert (await send_code(http, wrong)).status_code == 400
        slowed = await send_code(http, await next_code(conn, owner.admin_id, secret))
        assert slowed.status_code == 429 and int(slowed.headers["retry-after"]) > 0


async def test_owners_must_enrol_when_required(settings, conn):
    strict = create_app(replace(settings, require_totp_for_owners=True), False)
    async with strict.router.lifespan_context(strict):
        async with admin_client(strict, conn, "editor") as editor:
            assert (await editor.get("/admin")).status_code == 200  # editors are free to choose
        owner_id = await make_admin(conn, "owner@example.org")
        async with anonymous(strict) as http:
            assert (await log_in(http, "owner@example.org")).status_code == 303
            token = csrf_from((await http.get("/admin/account/totp")).text)
            owner = AdminClient(http, token, owner_id, "owner@example.org")
            for path in ("/admin", "/admin/users", "/admin/petitions/new"):
                sent = await owner.get(path)
                assert sent.status_code == 303 and sent.headers["location"].endswith(
                    "/admin/account/totp"
                ), path
            assert (await owner.post("/admin/petitions/new", {})).status_code == 303
            page = await owner.get("/admin/account/totp")
            assert "must set up a second factor" in page.text
            secret = await enrol(owner)
            assert (await owner.get("/admin")).status_code == 200
            # Owners may not remove it while it is required.
            code = await next_code(conn, owner.admin_id, secret)
            kept = await owner.post("/admin/account/totp", {"action": "remove", "code": code})
            assert kept.status_code == 403
            assert await conn.fetchval("SELECT totp_secret IS NOT NULL FROM admins WHERE id = $1",
                                       owner.admin_id)  # fmt: skip


async def test_remove_and_reset_the_second_factor(app, conn):
    async with admin_client(app, conn, "editor") as editor:
        secret = await enrol(editor)
        refused = await editor.post("/admin/account/totp", {"action": "remove", "code": "x"})
        assert refused.status_code == 400
        code = await next_code(conn, editor.admin_id, secret)
        removed = await editor.post("/admin/account/totp", {"action": "remove", "code": code})
        assert removed.status_code == 303
        assert (await editor.post("/admin/account/totp", {"action": "what"})).status_code == 400
        await enrol(editor)
        assert (await editor.get("/admin")).status_code == 200
        # A lost phone: `petitions reset-totp` removes it and ends the sessions.
        await reset_second_factor(conn, "Editor@example.org")
        assert (await editor.get("/admin")).status_code == 303
    async with anonymous(app) as http:
        assert (await log_in(http, "editor@example.org", PASSWORD)).status_code == 303
    with pytest.raises(AdminError):
        await reset_second_factor(conn, "nobody@example.org")
    assert "admin.totp.reset" in [
        r["action"] for r in await conn.fetch("SELECT action FROM audit_log")
    ]


def test_codes_and_steps():
    secret = pyotp.random_base32()
    now = 1_800_000_000.0
    step = int(now // 30)
    code = pyotp.TOTP(secret).generate_otp(step)
    assert totp.matching_step(secret, code, now) == step
    assert totp.matching_step(secret, pyotp.TOTP(secret).generate_otp(step - 1), now) == step - 1
    assert totp.matching_step(secret, pyotp.TOTP(secret).generate_otp(step + 3), now) is None
    assert totp.normalise_code(" 123 456 ") == "123456"
    for bad in ("12345", "1234567", "١٢٣٤٥٦", "abcdef", None, "1" * 100):
        assert totp.normalise_code(bad) is None


async def test_rotating_the_data_key_reseals_the_secrets(conn, settings):
    from petitions.crypto import make_cipher
    from petitions.sealing import rotate

    admin_id = await make_admin(conn, "owner@example.org")
    old = cipher_for(settings)
    await totp.start_enrolment(conn, old, admin_id)
    secret = await totp.pending_secret(conn, old, admin_id)
    assert await totp.confirm_enrolment(conn, old, admin_id, pyotp.TOTP(secret).now())
    new = make_cipher(settings.secret_key, "a new data key of more than 32 characters")
    await rotate(conn, new)
    sealed = await conn.fetchval("SELECT totp_secret FROM admins")
    assert new.is_current(sealed)
    code = pyotp.TOTP(secret).generate_otp(
        await conn.fetchval("SELECT totp_last_step FROM admins") + 1
    )
    assert await totp.check_code(conn, new, admin_id, code)


def test_the_setting():
    from petitions.settings import SettingsError, load_settings

    def read(value):
        environ = {"SECRET_KEY": "k" * 40, "REQUIRE_TOTP_FOR_OWNERS": value}
        return load_settings(environ, env_file=None).require_totp_for_owners

    assert read("1") and read("yes") and not read("0") and not read("")
    with pytest.raises(SettingsError, match="REQUIRE_TOTP_FOR_OWNERS"):
        read("sometimes")
