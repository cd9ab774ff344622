"""The Host header is the client's word: unknown hosts are refused, and no header ever
puts another host into a page, a redirect, an email or the page cache (hosts.py)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import httpx
import pytest

from conftest import make_petition, opened_outbox
from petitions.app import create_app
from petitions.hosts import allowed_host_patterns, host_allowed, request_host
from petitions.settings import SettingsError, load_settings
from public_pages import make_public_pages

EVIL = "evil.example"
BASE = "https://petitions.example"
# Share buttons lead elsewhere on purpose (with our address inside, tests/test_sharing.py),
# and so does an organisation's website in the lists (public_pages.py).
ELSEWHERE = ("https://wa.me/", "https://t.me/", "https://twitter.com/",
             "https://www.facebook.com/", "https://cgt.example.org/")  # fmt: skip
ABSOLUTE = re.compile(r"""(?:href|src|action|content)=["'](https?://[^"']+)""")
POISON = {
    "X-Forwarded-Host": EVIL,
    "X-Forwarded-Proto": "http",
    "Forwarded": f"host={EVIL};proto=http",
    "X-Original-URL": f"https://{EVIL}/",
    "X-Host": EVIL,
}


def client_for(app, host: str, **headers) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"http://{host}",
        headers={"Host": host, **headers},
    )


def test_allowed_hosts_default_to_base_urls_host():
    assert allowed_host_patterns("https://petitions.example", None) == ("petitions.example",)
    # A laptop's loopback BASE_URL: reached as localhost or 127.0.0.1 alike.
    assert set(allowed_host_patterns("http://127.0.0.1:8000", None)) == {
        "127.0.0.1", "localhost", "::1",
    }  # fmt: skip
    patterns = ("petitions.example", "*.union.example")
    for host, allowed in (
        ("petitions.example", True),
        ("PETITIONS.example:443", True),
        ("www.union.example", True),
        ("a.b.union.example", True),
        ("union.example", False),  # the wildcard is for names under it
        ("evilunion.example", False),
        ("petitions.example.evil.example", False),
        (EVIL, False),
        ("", False),
        ("petitions.example/x", False),
        ("user@petitions.example", False),
    ):
        assert host_allowed(request_host(host), patterns) is allowed, host
    assert host_allowed(request_host("[::1]:8000"), ("::1",))
    assert host_allowed(request_host(EVIL), ("*",))


def test_allowed_hosts_setting_is_checked():
    environ = {"SECRET_KEY": "k" * 40, "DATABASE_URL": "postgresql://db/p"}
    settings = load_settings({**environ, "ALLOWED_HOSTS": "a.example, *.b.example"}, None)
    assert settings.allowed_hosts == ("a.example", "*.b.example")
    for wrong in ("https://a.example", "a.example:443", "*b.example", "a.*.example"):
        with pytest.raises(SettingsError, match="ALLOWED_HOSTS"):
            load_settings({**environ, "ALLOWED_HOSTS": wrong}, None)


async def test_an_unknown_host_gets_400_everywhere_but_healthz(app, conn):
    await make_petition(conn)
    async with client_for(app, EVIL) as http:
        for path in ("/", "/p/release-them", "/p/release-them/embed", "/admin/login",
                     "/p/release-them/count.json", "/static/site.css", "/nowhere"):  # fmt: skip
            response = await http.get(path)
            assert response.status_code == 400, path
            assert EVIL not in response.text
        posted = await http.post("/p/release-them/sign", data={"name": "x"})
        assert posted.status_code == 400
        # Load balancers call /healthz by address; it builds no URL.
        assert (await http.get("/healthz")).status_code == 200
    assert await conn.fetchval("SELECT count(*) FROM signatures") == 0


@pytest.mark.parametrize("allowed", [None, ("*",)])
async def test_a_poisoned_host_never_reaches_another_visitors_page(app, conn, allowed):
    """Even with ALLOWED_HOSTS=* (every Host let through), the attacker's host and forwarded
    headers change nothing in what the page cache keeps for the next visitor."""
    await make_petition(conn)
    app.state.settings = replace(app.state.settings, allowed_hosts=allowed)
    app.state.page_cache.seconds = 60  # the cache on, as in production
    attacker_host = EVIL if allowed else "testserver"
    paths = ("/p/release-them", "/p/release-them/embed", "/p/release-them/embed?form=0",
             "/p/release-them?lang=fa")  # fmt: skip
    async with client_for(app, attacker_host, **POISON) as attacker:
        for _ in range(3):  # repeated, as the attacker would
            for path in paths:
                page = await attacker.get(path)
                assert page.status_code == 200
                assert EVIL not in page.text, path
    async with client_for(app, "testserver") as visitor:
        for path in paths:
            page = await visitor.get(path)
            assert page.status_code == 200 and EVIL not in page.text, path
            assert 'src="http://testserver/static/' in page.text  # BASE_URL's, as ever


async def test_the_cache_key_holds_nothing_from_a_header_but_the_language(app, conn):
    await make_petition(conn)
    app.state.settings = replace(app.state.settings, allowed_hosts=("*",))
    app.state.page_cache.seconds = 60
    async with client_for(app, EVIL, **POISON) as attacker:
        await attacker.get("/p/release-them")
    keys = list(app.state.page_cache._pages)
    assert keys and not any(EVIL in key or "http" in key for key in keys)


async def test_every_absolute_address_is_base_urls_whatever_the_host(settings, conn):
    """Reached by a second allowed name, the site still names itself by BASE_URL: in
    every public page, redirect, JSON link and email."""
    app = create_app(
        replace(settings, base_url=BASE, allowed_hosts=("testserver", "alt.example")), False
    )
    async with app.router.lifespan_context(app), client_for(app, "alt.example", **POISON) as http:
        paths = await make_public_pages(conn, app.state.tokens)
        seen = 0
        for name, path in {**paths, "print": "/p/release-them/print"}.items():
            page = await http.get(path)
            assert page.status_code < 500, name
            for url in ABSOLUTE.findall(page.text):
                if not url.startswith(ELSEWHERE):
                    assert url.startswith(BASE + "/"), (name, url)
                    seen += 1
            assert "alt.example" not in page.text and EVIL not in page.text, name
        assert seen > 20

        listing = (await http.get("/p/release-them/signatures.json?limit=2")).json()
        assert listing["next"].startswith(BASE + "/p/release-them/signatures.json?")

        admin = await http.get("/admin")
        assert admin.status_code == 303
        assert admin.headers["location"].startswith(BASE + "/admin/login")

        page = await http.get("/p/release-them")
        token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
        signed = await http.post(
            "/p/release-them/sign",
            data={"kind": "individual", "name": "Leyla Ahmadi", "email": "leyla@example.org",
                  "country": "SE", "display": "public", "form_token": token},
            headers={"Origin": BASE},
        )  # fmt: skip
        assert signed.status_code == 303, signed.text[:500]
        assert signed.headers["location"].startswith(BASE + "/p/release-them/thanks")
        # A page of ours posted from the other name is refused: forms come from BASE_URL.
        refused = await http.post(
            "/p/release-them/sign", data={"form_token": token},
            headers={"Origin": "http://alt.example"},
        )  # fmt: skip
        assert refused.status_code in (400, 403)

    mails = await opened_outbox(conn)
    assert mails
    for mail in mails:
        text = (mail["body_text"] or "") + (mail["body_html"] or "") + json.dumps(mail["headers"])
        urls = [u.rstrip(".,;)") for u in re.findall(r"https?://[^\s\"'<>]+", text)]
        assert urls and [u for u in urls if not (u + "/").startswith(BASE + "/")] == []
        assert "alt.example" not in text and EVIL not in text
