"""A Persian signer on a 360 px phone, end to end: tap by label, land on a Persian thanks
page, get a Persian email through a real SMTP server, confirm, and appear in a Persian
list that is open in another tab, without reloading it.

The Persian texts are read from the shipped catalogue (so the test follows the
translation), and each is checked to differ from the English source (so an empty
or missing catalogue fails here rather than passing in English).
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from conftest import wait_until
from livekit import serving
from petitions import i18n
from petitions.app import create_app
from petitions.petitions import create_petition
from public_pages import BROWSER_ARGS, CHROMIUM, PERSIAN

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine"),
    pytest.mark.slow,  # a real browser
]

PHONE = {"width": 360, "height": 740}
SIGNER = "مریم کارگر"


def persian(message: str) -> str:
    with i18n.language("fa"):
        text = i18n.gettext(message)
    assert text != message, f"no Persian translation of {message!r}"
    return text


async def test_a_persian_signer_on_a_phone(settings, conn, mail_settings, mail_server):
    from playwright.async_api import async_playwright

    await create_petition(
        conn, "haft-tapeh", {"fa": PERSIAN}, status="open", goal=20000, default_language="fa"
    )
    app = create_app(mail_settings, run_outbox_worker=True)
    async with serving(app) as base, async_playwright() as p:
        app.state.settings = replace(mail_settings, base_url=base)  # links in emails point here
        app.state.mailer.settings = app.state.settings
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = await browser.new_context(
            viewport=PHONE, is_mobile=True, has_touch=True, locale="fa-IR"
        )
        problems: list[str] = []

        # A friend's tab with the list open, waiting for live entries.
        listing = await context.new_page()
        listing.on("pageerror", lambda e: problems.append(str(e)))
        await listing.goto(f"{base}/p/haft-tapeh/signatures")
        assert await listing.locator("html").get_attribute("lang") == "fa"

        page = await context.new_page()
        page.set_default_timeout(15000)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(f"{base}/p/haft-tapeh")
        html = page.locator("html")
        assert (await html.get_attribute("lang"), await html.get_attribute("dir")) == ("fa", "rtl")
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )

        form = page.locator("#sign-individual")
        await form.get_by_label(persian("Full name")).tap()
        await page.keyboard.type(SIGNER)
        await form.get_by_label(persian("Email"), exact=True).fill("maryam@example.org")
        await form.get_by_label(persian("Country"), exact=True).select_option("DE")
        await form.get_by_label(persian("Occupation or role")).fill("کارگر نیشکر")
        await form.get_by_role("button", name=persian("Sign"), exact=True).tap()

        await page.get_by_role("heading", name=persian("Check your email")).wait_for()
        assert await html.get_attribute("lang") == "fa"
        assert await conn.fetchval("SELECT language FROM signatures") == "fa"

        await wait_until(lambda: mail_server.messages, what="the confirmation email")
        mail = mail_server.messages[0]
        assert mail["Content-Language"] == "fa"
        body = mail.get_body(("plain",)).get_content()
        assert persian("Please confirm your signature by opening this link:") in body
        verify = re.search(r"(http://\S+/verify/\S+)", body).group(1)

        await page.goto(verify)
        await page.get_by_role("heading", name=persian("Your signature is confirmed")).wait_for()
        assert await html.get_attribute("dir") == "rtl"

        # The open list shows the new signer without a reload.
        await listing.get_by_text(SIGNER).wait_for(timeout=15000)
        assert await listing.locator("html").get_attribute("lang") == "fa"
        assert problems == []
        await browser.close()
