"""Phones first: no public page is wider than a small phone, in any interface language.

Most signers arrive from a messenger link on a cheap phone, often in a right-to-left
language. A page wider than the screen hides the Sign button off to one side, so every
public page (and the embed) is loaded at 320 and 360 CSS pixels wide, which is also a
1280-pixel window at 400% and 356% zoom, in every interface language, and must not scroll
sideways. Screenshots of the main pages are saved as artefacts under
test-artifacts/screenshots/ (gitignored): they are for people to look at, not assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browsers import needs_chromium
from public_pages import (
    INTERFACE_LANGUAGES,
    PHONES,
    with_language,
)

pytestmark = [needs_chromium, pytest.mark.slow]  # a real browser: seconds per test

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# What sticks out sideways, for the failure message.
WIDEST = """() => {
  const limit = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > limit + 1 || r.left < -1) {
      out.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  return out.slice(0, 8);
}"""


async def overflow(page) -> tuple[int, int]:
    """The document's width and the narrower of the window's and the layout viewport's
    (a phone may zoom out to show a page too wide for it, widening innerWidth)."""
    return await page.evaluate(
        """() => [document.documentElement.scrollWidth,
                 Math.min(window.innerWidth, document.documentElement.clientWidth)]"""
    )


async def test_no_public_page_scrolls_sideways_on_a_phone_in_any_language(browser, site):
    base, pages = site
    too_wide = []
    for viewport in PHONES:
        context = await browser.new_context(viewport=viewport, is_mobile=True, has_touch=True)
        page = await context.new_page()
        for lang in INTERFACE_LANGUAGES:
            for name, path in pages.items():
                response = await page.goto(base + with_language(path, lang))
                if response.status >= 500:
                    too_wide.append(f"{name} ?lang={lang}: status {response.status}")
                    continue
                width, inner = await overflow(page)
                if width > inner:
                    sticking_out = await page.evaluate(WIDEST)
                    too_wide.append(f"{name} ?lang={lang} at {inner}px: {width}px {sticking_out}")
        await context.close()
    assert not too_wide, "\n".join(too_wide)


async def test_a_laptop_at_200_percent_zoom_reflows(browser, site):
    """A 1280x800 window zoomed to 200% lays pages out 640 CSS pixels wide: between the
    phone and the desktop layouts, where a fixed width would show first."""
    base, pages = site
    context = await browser.new_context(
        viewport={"width": 640, "height": 400}, device_scale_factor=2
    )
    page = await context.new_page()
    too_wide = []
    for lang in ("en", "fa", "de"):
        for name, path in pages.items():
            await page.goto(base + with_language(path, lang))
            width, inner = await overflow(page)
            if width > inner:
                too_wide.append(f"{name} ?lang={lang}: {width}px {await page.evaluate(WIDEST)}")
    await context.close()
    assert not too_wide, "\n".join(too_wide)


async def test_a_persian_petition_is_right_to_left_and_fits(browser, site):
    """The case a signer met: a Persian statement turned the page right-to-left and the
    off-screen honeypot made it 10,360 pixels wide, with the Sign button out of reach."""
    base, pages = site
    context = await browser.new_context(viewport=PHONES[1], is_mobile=True, has_touch=True)
    page = await context.new_page()
    for name in ("persian petition", "persian embed"):
        await page.goto(base + pages[name])
        assert await page.evaluate("document.documentElement.dir") == "rtl"
        width, inner = await overflow(page)
        assert width <= inner, await page.evaluate(WIDEST)
        button = page.locator("#sign-individual button[type=submit]")
        await button.scroll_into_view_if_needed()
        box = await button.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= inner
        assert box["height"] >= 44
    await context.close()


async def test_form_controls_are_big_enough_to_tap(browser, site):
    base, pages = site
    context = await browser.new_context(viewport=PHONES[1], is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(base + pages["petition"] + "#sign")
    small = await page.evaluate(
        """() => [...document.querySelectorAll(
              '.sign-form:not([hidden]) input:not([type=hidden]):not([tabindex="-1"]), '
              + '.sign-form select, .sign-form textarea, .sign-form button, .kind-switch button')]
            .filter(el => el.offsetParent !== null)
            .map(el => [el.closest('label') || el, el.name || el.textContent.trim()])
            .map(([box, name]) => [name, Math.round(box.getBoundingClientRect().height)])
            .filter(([name, height]) => height < 44)"""
    )
    assert small == []
    await context.close()


async def test_screenshots_of_the_main_pages(browser, site):
    base, pages = site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for viewport in ({"width": 360, "height": 740}, {"width": 1280, "height": 800}):
        context = await browser.new_context(viewport=viewport)
        page = await context.new_page()
        size = f"{viewport['width']}x{viewport['height']}"
        for lang in ("en", "fa", "ar"):
            for name in ("petition", "signatures", "thanks", "verified"):
                await page.goto(base + with_language(pages[name], lang))
                path = SCREENSHOTS / f"{name}-{lang}-{size}.png"
                await page.screenshot(path=path, full_page=True)
                assert path.stat().st_size > 0
        await context.close()
