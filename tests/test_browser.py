"""In a real browser: a foreign site embeds the sign form in an iframe and a live counter.

Headless Chromium (Debian's `chromium`, driven by Playwright with executable_path;
no browser download). The foreign page is served from another origin, and the
browser blocks third-party cookies, as Safari, Firefox and Chrome now do.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from browsers import chromium, needs_chromium
from conftest import make_petition, wait_until
from livekit import serving
from petitions.app import create_app

pytestmark = [needs_chromium, pytest.mark.slow]  # a real browser: seconds per test


def foreign_site(base: str) -> Starlette:
    """A union's website on another origin, embedding the petition three ways."""
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Union news</title><link rel="icon" href="data:,"></head>
<body><h1>Dockers' union news</h1>
<p>Signatures so far: <span id="counter" data-petition="release-them" data-base="{base}"></span></p>
<img id="badge" src="{base}/p/release-them/badge.svg" alt="signatures">
<iframe id="petition" src="{base}/p/release-them/embed" width="480" height="900"></iframe>
<script src="{base}/embed.js" async></script></body></html>"""

    async def home(request):
        return HTMLResponse(page)

    return Starlette(routes=[Route("/", home)])


@pytest.fixture
async def browser():
    # Block third-party cookies, as browsers now do: the embed must not need them.
    async with chromium("--test-third-party-cookie-phaseout") as browser:
        yield browser


async def test_foreign_site_embeds_counter_and_signs_in_an_iframe(browser, settings, conn):
    await make_petition(conn, goal=100)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, serving(foreign_site(base)) as site:
        # "localhost" and "127.0.0.1" are different sites: the iframe is cross-site.
        site = site.replace("127.0.0.1", "localhost")
        context = await browser.new_context()
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "response",
            lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.set_default_timeout(10000)
        await page.goto(site + "/")

        counter = page.locator("#counter .petition-count")
        await counter.wait_for()
        assert await counter.text_content() == "0"
        assert await page.locator("#badge").evaluate("img => img.naturalWidth") > 0

        frame = page.frame_locator("#petition")
        await frame.locator("#ind-name").fill("Iframe Signer")
        await frame.locator("#ind-email").fill("iframe@example.org")
        await frame.locator("#ind-country").select_option("GB")
        await frame.locator("#ind-occupation").fill("Docker")
        await frame.locator("#sign-individual button[type=submit]").click()
        await frame.get_by_text("Check your email").wait_for()

        row = await conn.fetchrow("SELECT name, status, occupation FROM signatures")
        assert (row["name"], row["status"], row["occupation"]) == (
            "Iframe Signer",
            "pending",
            "Docker",
        )
        assert await context.cookies() == []  # nothing relied on a cookie

        # Confirming the signature moves the counter on the foreign page live.
        await conn.execute("UPDATE signatures SET status = 'verified', verified_at = now()")
        await page.wait_for_function(
            "document.querySelector('#counter .petition-count').textContent === '1'", timeout=15000
        )
        assert problems == []
        await context.close()


async def test_petition_page_updates_live_and_works_without_javascript(browser, settings, conn):
    from conftest import add_signature

    await make_petition(conn, goal=100)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/p/release-them")
        assert (await page.locator(".side-progress [data-count]").text_content()).strip() == "0"
        row = await add_signature(conn, 1, status="pending", name="Live Arrival", country="FR")
        await conn.execute(
            "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1",
            row["id"],
        )
        await page.locator("[data-live-list] .sig-name", has_text="Live Arrival").wait_for()
        await page.wait_for_function(
            "document.querySelector('.side-progress [data-count]').textContent === '1'"
        )
        # One form at a time with JavaScript; the switch shows the other.
        assert await page.locator("#sign-organisation").is_hidden()
        await page.get_by_role("tab", name="For an organisation").click()
        assert await page.locator("#sign-organisation").is_visible()
        await page.close()

        no_js = await browser.new_context(java_script_enabled=False)
        page = await no_js.new_page()
        await page.goto(f"{base}/p/release-them")
        assert await page.locator("#sign-individual").is_visible()
        assert await page.locator("#sign-organisation").is_visible()

        # Without JavaScript a reload shows the newcomer (the page may be served
        # from the app's two-second page cache, so allow a few seconds).
        async def newcomer_shown():
            await page.reload()
            return await page.locator(".sig-name", has_text="Live Arrival").count() == 1

        await wait_until(newcomer_shown, seconds=10, interval=0.3)
        assert await page.locator(".sig-name", has_text="Live Arrival").count() == 1
        await no_js.close()


async def test_a_person_signs_confirms_from_the_email_and_is_counted(
    browser, settings, conn, mail_settings, mail_server
):
    """The whole loop as a person meets it: the form in a browser, a real SMTP server,
    the link from the email opened in the browser, the list and the count."""
    import re
    from dataclasses import replace

    from conftest import count_is

    await make_petition(conn, goal=100)
    app = create_app(mail_settings, run_outbox_worker=True)
    async with serving(app) as base:
        app.state.settings = replace(mail_settings, base_url=base)  # links in emails point here
        app.state.mailer.settings = app.state.settings
        page = await browser.new_page()
        page.set_default_timeout(15000)
        await page.goto(f"{base}/p/release-them")
        await page.locator("#ind-name").fill("Nasrin Sotoudeh")
        await page.locator("#ind-email").fill("nasrin@example.org")
        await page.locator("#ind-country").select_option("IR")
        await page.locator("#ind-occupation").fill("Lawyer")
        await page.get_by_label("Initials").first.check()
        await page.locator("#sign-individual button[type=submit]").click()
        await page.get_by_role("heading", name="Check your email").wait_for()

        # The in-process outbox worker delivers it.
        await wait_until(lambda: mail_server.messages, what="the confirmation email")
        [message] = mail_server.messages
        text = message.get_body(("plain",)).get_content()
        verify = re.search(r"(http://\S+/verify/\S+)", text).group(1)
        await page.goto(verify)
        await page.get_by_role("heading", name="Your signature is confirmed").wait_for()

        await page.goto(f"{base}/p/release-them/signatures")
        entry = page.locator(".signatory").first
        assert (await entry.locator(".sig-name").text_content()).strip() == "N.S."
        assert "Nasrin" not in await page.content()
        async with __import__("httpx").AsyncClient(base_url=base) as http:
            assert await count_is(http, 1)
        await page.close()
