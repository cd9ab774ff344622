"""The iframe embed on another origin, on a phone: it fits its content through postMessage
(the admin's snippet listens, checking origin and frame), keeps a height that holds the
form when nothing listens, and embed.js counters write the digits of their language.

Two loopback servers: the petition site on 127.0.0.1 and a union's site on localhost,
which browsers treat as different origins.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from browsers import CHROMIUM
from conftest import add_signature, make_petition, wait_until
from livekit import serving
from petitions.app import create_app
from petitions.embedding import COUNTER_HEIGHT, FORM_HEIGHT, frame_id, iframe_snippet

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine"),
    pytest.mark.slow,  # a real browser: seconds per test
]

SLUG = "release-them"
PHONE = {"width": 360, "height": 740}
SIGN_FRAME = "#" + frame_id(SLUG, "ref=website")
COUNTER_FRAME = "#" + frame_id(SLUG, "form=0")


# Every message the union's page receives, in order; registered after the snippets'
# listeners, so a message seen here has already been through them.
RECORDER = """<script>window.seen = [];
addEventListener("message", function (e) { window.seen.push(e.data); });</script>"""


def union_site(body: str, lang: str = "en") -> Starlette:
    page = f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Union news</title>
<link rel="icon" href="data:,"><style>body{{margin:0;padding:0 8px}}</style></head>
<body><h1>Dockers' union news</h1>{body}</body></html>"""

    async def home(request):
        return HTMLResponse(page)

    return Starlette(routes=[Route("/", home)])


# In the embed page: how tall its content is, and whether it scrolls inside the iframe.
MEASURE = """() => {
  const root = document.documentElement, box = document.querySelector('.embed-box');
  return {content: Math.ceil(box.getBoundingClientRect().bottom + window.scrollY),
          scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
          scrollHeight: root.scrollHeight, clientHeight: root.clientHeight};
}"""


async def frame_fits(page, selector: str) -> dict:
    """Wait until the iframe is as tall as its content (within a pixel) and return the
    measures; the frame found by the iframe element, so a new page in it is followed."""
    iframe = page.locator(selector)

    async def fitted():
        # In view: Chromium does not lay out a cross-origin frame that is off screen.
        await iframe.scroll_into_view_if_needed()
        frame = await (await iframe.element_handle()).content_frame()
        try:
            measures = await frame.evaluate(MEASURE)
        except Exception:  # the frame is between two pages
            return None
        measures["frame"] = await iframe.evaluate("f => f.getBoundingClientRect().height")
        fits = 0 <= measures["frame"] - measures["content"] <= 40  # the page's bottom margin
        if fits and measures["scrollHeight"] <= measures["clientHeight"]:
            return measures
        last.append(measures)
        return None

    last: list[dict] = []
    try:
        return await wait_until(fitted, seconds=15, what=f"{selector} to fit its content")
    except AssertionError as error:
        raise AssertionError(f"{error}; measured {last[-1:]}") from None


async def test_the_iframe_fits_its_content_on_a_phone_and_ignores_other_senders(
    browser, settings, conn
):
    await make_petition(conn, goal=100)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        snippets = (
            iframe_snippet(base, SLUG, "ref=website", FORM_HEIGHT, "Sign the petition")
            + iframe_snippet(base, SLUG, "form=0", COUNTER_HEIGHT, "Signatures")
            + RECORDER
        )
        async with serving(union_site(snippets)) as site:
            site = site.replace("127.0.0.1", "localhost")
            page = await browser.new_page(viewport=PHONE)
            page.set_default_timeout(10000)
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(site + "/")

            fitted = await frame_fits(page, SIGN_FRAME)
            assert fitted["frame"] < FORM_HEIGHT  # it shrank to the form from the default
            assert fitted["scrollWidth"] <= fitted["clientWidth"]  # no sideways scrolling
            await frame_fits(page, COUNTER_FRAME)

            # The organisation form is taller: the frame grows with it.
            frame = page.frame_locator(SIGN_FRAME)
            await frame.get_by_role("tab", name="For an organisation").click()
            grown = await frame_fits(page, SIGN_FRAME)
            assert grown["frame"] != fitted["frame"]

            # Messages from another origin, or from another frame of the right origin,
            # do not move it.
            height = await page.locator(SIGN_FRAME).evaluate("f => f.style.height")
            await page.evaluate(
                "window.postMessage({type: 'petitions:resize', slug: 'release-them',"
                " height: 55}, '*')"
            )
            counter = await (await page.locator(COUNTER_FRAME).element_handle()).content_frame()
            await counter.evaluate(
                "parent.postMessage({type: 'petitions:resize', slug: 'release-them',"
                " height: 66}, '*')"
            )
            await page.wait_for_function(
                "[55, 66].every(h => window.seen.some(m => m && m.height === h))"
            )
            assert await page.locator(SIGN_FRAME).evaluate("f => f.style.height") == height

            # After signing, the thank-you is short: the frame shrinks to it.
            await frame.get_by_role("tab", name="As an individual").click()
            await frame.locator("#ind-name").fill("Phone Signer")
            await frame.locator("#ind-email").fill("phone@example.org")
            await frame.locator("#ind-country").select_option("GB")
            await frame.locator("#sign-individual button[type=submit]").click()
            await frame.locator(".notice-ok").wait_for()
            thanked = await frame_fits(page, SIGN_FRAME)
            assert thanked["frame"] < fitted["frame"]
            assert problems == []
            await page.close()


@pytest.mark.parametrize("lang", ["en", "fa"])
async def test_without_the_script_the_frame_still_holds_the_form_on_a_phone(
    browser, settings, conn, lang
):
    await make_petition(conn, goal=100)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        bare = "".join(  # a site that strips scripts
            iframe_snippet(base, SLUG, query, height, "Petition").split("<script>")[0]
            for query, height in (
                (f"lang={lang}", FORM_HEIGHT),
                (f"lang={lang}&form=0", COUNTER_HEIGHT),
            )
        )
        async with serving(union_site(bare)) as site:
            page = await browser.new_page(viewport=PHONE)
            await page.goto(site.replace("127.0.0.1", "localhost") + "/")
            iframes = page.locator("iframe")
            form = await (await iframes.nth(0).element_handle()).content_frame()
            await form.locator("#sign-individual").wait_for()
            for tab in range(2):  # the individual form, then the organisation form
                await form.get_by_role("tab").nth(tab).click()
                fits(await form.evaluate(MEASURE), FORM_HEIGHT)
            await iframes.nth(1).scroll_into_view_if_needed()
            counter = await (await iframes.nth(1).element_handle()).content_frame()
            fits(await counter.evaluate(MEASURE), COUNTER_HEIGHT)
            await page.close()


def fits(measures: dict, height: int) -> None:
    assert measures["content"] <= height  # nothing cut off
    assert measures["scrollHeight"] <= measures["clientHeight"]  # no inner scrollbar
    assert measures["scrollWidth"] <= measures["clientWidth"]


async def test_embed_js_counters_write_the_digits_of_their_language(browser, settings, conn):
    pid = await make_petition(conn, goal=1000)
    for _ in range(3):
        await add_signature(conn, pid)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        counters = f"""<p><span id="fa" data-petition="{SLUG}" data-lang="fa"></span></p>
<p><span id="page" data-petition="{SLUG}"></span></p>
<script src="{base}/embed.js" async></script>"""
        async with serving(union_site(counters, lang="en")) as site:
            page = await browser.new_page(viewport=PHONE)
            await page.goto(site.replace("127.0.0.1", "localhost") + "/")
            await page.wait_for_function(
                "document.querySelector('#fa .petition-count')?.textContent === '۳'"
            )
            await page.wait_for_function(
                "document.querySelector('#page .petition-count')?.textContent === '3'"
            )
            await page.close()
