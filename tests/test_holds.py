"""Sign limits: past the hourly limit of a network or an email domain, signatures are
stored, mailed and confirmed as usual but held; far past it, refused with nothing stored;
a form token carries a bounded number of submissions (petitions/sign_limits.py)."""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
import pytest

from admin_support import admin_client
from conftest import count_is, make_petition, opened_signatures
from petitions.app import create_app
from petitions.delivery import deliver_due
from petitions.retention import enforce_retention
from petitions.tokens import FORM_TOKEN_USES

SLUG = "release-them"
OFFICE = "198.51.100.{}"  # one /24: a union office, or an attacker
ELSEWHERE = "203.0.113.{}"


def limited(settings, per_hour: int, ceiling: int = 0):
    """Settings with these sign limits and no mail caps (the mail caps are tested apart)."""
    caps = {k: 0 for k in ("mail_per_network_per_hour", "mail_per_mailbox_per_day")
            if hasattr(settings, k)}  # fmt: skip
    return replace(settings, sign_limit_per_hour=per_hour, sign_ceiling_per_hour=ceiling, **caps)


@asynccontextmanager
async def running(settings):
    application = create_app(settings, run_outbox_worker=False)
    application.state.page_cache.seconds = 0
    async with application.router.lifespan_context(application):
        yield application


def visitor(app, address: str) -> httpx.AsyncClient:
    """A browser at `address` (the ASGI client address: what the server sees behind
    TRUSTED_PROXIES)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def form_token(http) -> str:
    page = await http.get(f"/p/{SLUG}")
    return re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)


def fields(email: str, name: str = "Shirin Nouri") -> dict:
    return {"kind": "individual", "name": name, "email": email, "country": "IR",
            "display": "public"}  # fmt: skip


async def sign(http, email: str, token: str | None = None, lang: str = "") -> httpx.Response:
    data = {**fields(email), "form_token": token or await form_token(http)}
    return await http.post(f"/p/{SLUG}/sign", data=data, params={"lang": lang} if lang else {})


async def confirm_all(app, conn, at_once: int = 20) -> None:
    """Open every pending signature's confirmation link (the real HTTP path)."""
    rows = await conn.fetch("SELECT public_id FROM signatures WHERE status = 'pending'")
    links = [app.state.tokens.signature_link("verify", r["public_id"]) for r in rows]
    async with visitor(app, "192.0.2.1") as http:
        for start in range(0, len(links), at_once):
            chunk = links[start : start + at_once]
            responses = await asyncio.gather(*(http.get(f"/verify/{link}") for link in chunk))
            assert {r.status_code for r in responses} == {200}
            for page in responses:  # confirmed either way; a held one is told it waits
                assert "Your signature is confirmed" in page.text
                assert "organisation" not in page.text.split("<main", 1)[1].lower()


async def statuses(conn, where: str = "TRUE") -> list[tuple[str, str | None]]:
    return [
        (r["status"], r["hold_reason"])
        for r in await conn.fetch(
            f"SELECT status, hold_reason FROM signatures WHERE {where} ORDER BY id"
        )
    ]


async def test_past_the_network_limit_signatures_are_held_not_dropped(
    settings, conn, mail_settings, mail_server
):
    pid = await make_petition(conn)
    async with running(limited(settings, 3)) as app:
        for i in range(5):  # five people in one office, each from their own address
            async with visitor(app, OFFICE.format(10 + i)) as http:
                assert (await sign(http, f"worker{i}@office.example")).status_code == 303
        async with visitor(app, ELSEWHERE.format(7)) as http:
            assert (await sign(http, "someone@elsewhere.example")).status_code == 303

        # All stored and all mailed.
        assert await conn.fetchval("SELECT count(*) FROM signatures") == 6
        while await deliver_due(app.state.db, limited(mail_settings, 3)):
            pass
        assert len(mail_server.messages) == 6
        await confirm_all(app, conn)

        # In the order they signed: the office's five, then the other network's one.
        office_held = [("held", "network")] * 2
        assert await statuses(conn) == [("verified", None)] * 3 + office_held + [("verified", None)]
        async with visitor(app, "192.0.2.1") as public:
            assert await count_is(public, 4)

            async with admin_client(app, conn, "editor") as editor:
                url = f"/admin/petitions/{SLUG}/signatures"
                page = await editor.get(url, params={"status": "held"})
                held = await opened_signatures(conn, "status = 'held'")
                assert all(row["email"] in page.text for row in held)
                assert page.text.count("Past the hourly sign limit of its network") == 2
                ids = [str(row["id"]) for row in held]
                assert (
                    await editor.post(url, {"action": "approve", "ids": ids})
                ).status_code == 303
            assert await count_is(public, 6)
        assert await conn.fetchval(
            "SELECT count(*) FROM signatures WHERE petition_id = $1 AND status = 'verified'", pid
        ) == 6  # fmt: skip


async def test_the_limit_holds_across_two_app_instances(settings, conn):
    await make_petition(conn)
    async with running(limited(settings, 3)) as one, running(limited(settings, 3)) as two:
        clients = [visitor(app, OFFICE.format(20 + i)) for i, app in enumerate([one, two] * 5)]
        tokens = [await form_token(http) for http in clients]
        responses = await asyncio.gather(
            *(sign(http, f"member{i}@office.example", token)
              for i, (http, token) in enumerate(zip(clients, tokens, strict=True)))
        )  # fmt: skip
        for http in clients:
            await http.aclose()
        assert {r.status_code for r in responses} == {303}
        reasons = [reason for _, reason in await statuses(conn)]
        assert reasons.count(None) == 3 and reasons.count("network") == 7


async def test_the_domain_limit_and_the_free_mail_exemption(settings, conn):
    await make_petition(conn)
    async with running(limited(settings, 2)) as app:
        # Each from a network of its own: only the email domain is shared.
        for i in range(4):
            async with visitor(app, f"10.{i}.0.1") as http:
                assert (await sign(http, f"m{i}@smallunion.example")).status_code == 303
                assert (await sign(http, f"m{i}@gmail.com")).status_code == 303
        rows = await opened_signatures(conn)
        union = [r["hold_reason"] for r in rows if r["email"].endswith("@smallunion.example")]
        gmail = [r["hold_reason"] for r in rows if r["email"].endswith("@gmail.com")]
        assert union == [None, None, "domain", "domain"]
        assert gmail == [None] * 4  # a free-mail domain; each network signed twice only

        # The owners edit the list; an editor may not.
        async with admin_client(app, conn, "editor", "editor@example.org") as editor:
            assert (await editor.get("/admin/free-mail")).status_code == 403
        async with admin_client(app, conn, "owner") as owner:
            page = await owner.get("/admin/free-mail")
            assert "gmail.com" in page.text and "proton.me" in page.text
            domains = re.search(r"<textarea[^>]*>([^<]*)</textarea>", page.text).group(1)
            refused = await owner.post("/admin/free-mail", {"domains": "gmail.com\nnot a domain"})
            assert refused.status_code == 400 and "not an email domain" in refused.text
            changed = domains.replace("gmail.com\n", "") + "\nSmallUnion.example\n"
            assert (await owner.post("/admin/free-mail", {"domains": changed})).status_code == 303
        audit = await conn.fetchrow(
            "SELECT details FROM audit_log WHERE action = 'free_mail.change'"
        )
        assert '"added": ["smallunion.example"]' in audit["details"]
        assert '"removed": ["gmail.com"]' in audit["details"]

        async with visitor(app, "10.9.0.1") as http:
            assert (await sign(http, "late@smallunion.example")).status_code == 303
            assert (await sign(http, "late@gmail.com")).status_code == 303
        rows = await opened_signatures(conn)
        latest = {r["email"]: r["hold_reason"] for r in rows[-2:]}
        assert latest == {"late@smallunion.example": None, "late@gmail.com": "domain"}


async def test_the_ceiling_answers_429_and_stores_nothing(settings, conn):
    await make_petition(conn)
    async with running(limited(settings, 2, ceiling=4)) as app:
        async with visitor(app, OFFICE.format(30)) as http:
            for i in range(4):
                assert (await sign(http, f"c{i}@office.example")).status_code == 303
            before = await conn.fetchval("SELECT count(*) FROM signatures")
            mails = await conn.fetchval("SELECT count(*) FROM outbox")
            refused = await sign(http, "fifth@office.example")
            assert refused.status_code == 429
            assert 0 < int(refused.headers["retry-after"]) <= 3600
            assert "Too many signatures at once" in refused.text
            assert "fifth@office.example" not in refused.text
            french = await sign(http, "sixth@office.example", lang="fr")
            assert french.status_code == 429 and '<html lang="fr"' in french.text
            assert "Trop de signatures à la fois" in french.text
            assert "Too many signatures at once" not in french.text
            assert await conn.fetchval("SELECT count(*) FROM signatures") == before
            assert await conn.fetchval("SELECT count(*) FROM outbox") == mails
        async with visitor(app, ELSEWHERE.format(30)) as http:  # another network: untouched
            assert (await sign(http, "other@elsewhere.example")).status_code == 303


async def test_a_form_token_carries_a_bounded_number_of_submissions(settings, conn):
    await make_petition(conn)
    async with running(limited(settings, 0)) as one, running(limited(settings, 0)) as two:
        http_one, http_two = visitor(one, "192.0.2.10"), visitor(two, "192.0.2.11")
        token = await form_token(http_one)
        # Twice the bound at once, through two processes: exactly the bound get through.
        responses = await asyncio.gather(
            *(sign(http_one if i % 2 else http_two, f"t{i}@example.org", token)
              for i in range(2 * FORM_TOKEN_USES))
        )  # fmt: skip
        assert (
            sorted(r.status_code for r in responses)
            == [303] * FORM_TOKEN_USES + [400] * FORM_TOKEN_USES
        )
        assert await conn.fetchval("SELECT count(*) FROM signatures") == FORM_TOKEN_USES
        refused = await sign(http_one, "typed@example.org", token)
        assert refused.status_code == 400
        assert "This form was already sent several times" in refused.text
        assert 'value="typed@example.org"' in refused.text and "Shirin Nouri" in refused.text
        fresh = re.search(r'name="form_token" value="([^"]+)"', refused.text).group(1)
        assert fresh != token
        assert (await sign(http_one, "typed@example.org", fresh)).status_code == 303
        await http_one.aclose()
        await http_two.aclose()

        # A cached page hands each visitor a token of its own.
        one.state.page_cache.seconds = 60
        async with visitor(one, "192.0.2.12") as http:
            assert len({await form_token(http) for _ in range(3)}) == 3

        # Retention forgets the counts once the tokens have expired.
        await conn.execute("UPDATE form_token_uses SET first_used_at = now() - interval '13 hours'")
        report = await enforce_retention(one.state.db, settings)
        assert report.form_token_counts_deleted >= 1
        assert await conn.fetchval("SELECT count(*) FROM form_token_uses") == 0


@pytest.mark.slow
async def test_a_flood_of_two_thousand_from_one_network_is_held_and_approvable(settings, conn):
    flood, at_once = 2000, 20
    await make_petition(conn)
    async with running(limited(settings, 50)) as app:
        async with visitor(app, OFFICE.format(99)) as attacker:
            for start in range(0, flood, at_once):
                # A fresh form token for every few submissions, as a script would fetch.
                tokens = [app.state.tokens.form_token(SLUG) for _ in range(at_once // 4)]
                responses = await asyncio.gather(
                    *(sign(attacker, f"bot{i}@flood.example", tokens[(i - start) // 4])
                      for i in range(start, start + at_once))
                )  # fmt: skip
                assert {r.status_code for r in responses} == {303}
        async with visitor(app, ELSEWHERE.format(99)) as http:
            for i in range(3):
                assert (await sign(http, f"real{i}@gmail.com")).status_code == 303
        # Stored and mailed, every one.
        assert await conn.fetchval("SELECT count(*) FROM signatures") == flood + 3
        assert await conn.fetchval(
            "SELECT count(DISTINCT signature_id) FROM outbox WHERE purpose = 'verification'"
        ) == flood + 3  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'suppressed'") == 0
        await confirm_all(app, conn)
        counts = dict(await conn.fetch("SELECT status, count(*) FROM signatures GROUP BY status"))
        assert counts == {"verified": 50 + 3, "held": flood - 50}
        assert await conn.fetchval(
            "SELECT count(*) FROM signatures WHERE status = 'held' AND hold_reason <> 'network'"
        ) == 0  # fmt: skip
        other = await opened_signatures(conn, "status = 'verified'")
        assert sum(1 for r in other if r["email"].endswith("@gmail.com")) == 3  # never held
        async with visitor(app, "192.0.2.1") as public:
            assert await count_is(public, 53)
            held = await conn.fetch(
                "SELECT id FROM signatures WHERE status = 'held' ORDER BY id LIMIT 40"
            )
            async with admin_client(app, conn, "editor") as editor:
                response = await editor.post(
                    f"/admin/petitions/{SLUG}/signatures",
                    {"action": "approve", "ids": [str(r["id"]) for r in held]},
                )
                assert response.status_code == 303
            assert await count_is(public, 93)


def test_the_ceiling_setting(tmp_path):
    from petitions.settings import SettingsError, load_settings

    def load(**environ):
        return load_settings({"DATA_DIR": str(tmp_path), "SECRET_KEY": "k" * 40, **environ},
                             env_file=None)  # fmt: skip

    assert load().sign_ceiling_per_hour == 20 * 50
    assert load(SIGN_LIMIT_PER_HOUR="7").sign_ceiling_per_hour == 140
    assert load(SIGN_LIMIT_PER_HOUR="0").sign_ceiling_per_hour == 0
    assert load(SIGN_CEILING_PER_HOUR="0").sign_ceiling_per_hour == 0
    assert load(SIGN_CEILING_PER_HOUR="5000").sign_ceiling_per_hour == 5000
    with pytest.raises(SettingsError, match="at least SIGN_LIMIT_PER_HOUR"):
        load(SIGN_CEILING_PER_HOUR="49")
    with pytest.raises(SettingsError, match="SIGN_CEILING_PER_HOUR must be a whole number"):
        load(SIGN_CEILING_PER_HOUR="many")
