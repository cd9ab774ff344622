"""Display choice guidance: a campaign names the countries where signing its petition is
dangerous, and a signer who picks one is told what initials and anonymous do (with and
without JavaScript)."""

from __future__ import annotations

import re

import asyncpg
import pytest

from admin_support import admin_client
from conftest import make_petition
from livekit import serving
from petitions.app import create_app

URL = "/admin/petitions/release-them"
SETTINGS = {"slug": "release-them", "goal": "", "closes_at": "", "default_language": "en",
            "accepts_individuals": "1", "accepts_organisations": "1", "action": "settings"}  # fmt: skip


def guidance(html: str) -> list[str]:
    """The guidance notes of a page's sign forms, as their opening tags."""
    return re.findall(r'<div class="display-guidance[^"]*"[^>]*>', html)


async def test_the_campaign_sets_the_countries_in_the_petition_settings(app, conn):
    await make_petition(conn)
    async with admin_client(app, conn, "editor") as editor:
        saved = await editor.post(URL, {**SETTINGS, "dangerous_countries": "tj, ir  IR;af"})
        assert saved.status_code == 303
        row = await conn.fetchrow("SELECT dangerous_countries FROM petitions")
        assert row["dangerous_countries"] == ["AF", "IR", "TJ"]
        form = (await editor.get(URL)).text
        assert 'name="dangerous_countries"' in form and 'value="AF IR TJ"' in form
        audit = await conn.fetchval(
            "SELECT details FROM audit_log WHERE action = 'petition.settings'"
        )
        assert "dangerous_countries" in audit

        again = await editor.post(URL, {**SETTINGS, "dangerous_countries": "AF IR TJ"})
        assert again.status_code == 303
        assert "Nothing changed" in (await editor.get(URL)).text

        for bad in ("Iran", "XX", "IR, ZZ", "I R", "<script>"):
            response = await editor.post(URL, {**SETTINGS, "dangerous_countries": bad})
            assert response.status_code == 400, bad
            assert "not an ISO country code" in response.text
        assert (await conn.fetchval("SELECT dangerous_countries FROM petitions")) == [
            "AF", "IR", "TJ",
        ]  # fmt: skip

        cleared = await editor.post(URL, {**SETTINGS, "dangerous_countries": ""})
        assert cleared.status_code == 303
        assert await conn.fetchval("SELECT dangerous_countries FROM petitions") == []

        new = await editor.post(
            "/admin/petitions/new",
            {**SETTINGS, "slug": "second", "title": "Second", "action": "create",
             "dangerous_countries": "ir"},
        )  # fmt: skip
        assert new.status_code == 303
        assert await conn.fetchval(
            "SELECT dangerous_countries FROM petitions WHERE slug = 'second'"
        ) == ["IR"]


async def test_the_database_takes_only_country_codes(conn):
    await make_petition(conn)
    assert await conn.fetchval("SELECT dangerous_countries FROM petitions") == []
    for bad in (["ir"], ["IRN"], ["IR", None], [""], [["IR"], ["TJ"]]):
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE petitions SET dangerous_countries = $1", bad)
    await conn.execute("UPDATE petitions SET dangerous_countries = $1", ["IR", "TJ"])


async def test_no_note_when_the_campaign_named_no_country(client, conn):
    await make_petition(conn)
    html = (await client.get("/p/release-them")).text
    assert guidance(html) == [] and "Signing from" not in html


async def test_the_form_explains_initials_and_anonymous_without_javascript(client, conn):
    await make_petition(conn, dangerous_countries=("IR", "TJ"))
    for path in ("/p/release-them", "/p/release-them/embed"):
        html = (await client.get(path)).text
        notes = guidance(html)
        assert len(notes) == 2, path  # one in each sign form
        assert all("is-prominent" not in n and 'data-countries="IR TJ"' in n for n in notes)
        assert "Signing from Iran or Tajikistan?" in html
        assert (
            "the campaign recommends <strong>Initials</strong> or <strong>Anonymous</strong>"
            in html
        )
        # Beside the display choice.
        choice = html[html.index('<fieldset class="field display-choice') :]
        assert choice.index("display-guidance") < choice.index('name="display"')


async def test_after_a_bad_submission_from_such_a_country_the_note_stands_out(client, conn):
    await make_petition(conn, dangerous_countries=("IR",))
    page = (await client.get("/p/release-them")).text
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    base = {"kind": "individual", "email": "someone@example.org", "display": "public",
            "form_token": token}  # fmt: skip
    from_iran = await client.post("/p/release-them/sign", data={**base, "country": "ir"})
    assert from_iran.status_code == 400
    notes = guidance(from_iran.text)
    assert 'class="display-guidance is-prominent"' in notes[0] and 'role="alert"' in notes[0]
    assert "is-prominent" not in notes[1]  # the other form was not the one sent
    from_gb = await client.post("/p/release-them/sign", data={**base, "country": "GB"})
    assert from_gb.status_code == 400
    assert all("is-prominent" not in n for n in guidance(from_gb.text))
    # The embed form too.
    embedded = await client.post(
        "/p/release-them/embed", data={**base, "country": "IR"},
        headers={"origin": "http://testserver"},
    )  # fmt: skip
    assert embedded.status_code == 400
    assert "is-prominent" in guidance(embedded.text)[0]


@pytest.mark.slow  # a real browser
async def test_with_javascript_the_note_appears_when_such_a_country_is_chosen(settings, conn):
    from browsers import BROWSER_ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.skip("no chromium on this machine")
    from playwright.async_api import async_playwright

    await make_petition(conn, dangerous_countries=("IR", "TJ"))
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{base}/p/release-them")
        note = page.locator("#ind-guidance")
        assert await note.is_hidden()  # nothing dangerous chosen yet
        await page.locator("#ind-country").select_option("TJ")
        assert await note.is_visible()
        assert "is-prominent" in await note.get_attribute("class")
        await page.locator("#ind-country").select_option("GB")
        assert await note.is_hidden()
        await page.get_by_role("tab", name="For an organisation").click()
        await page.locator("#org-country").select_option("IR")
        assert await page.locator("#org-guidance").is_visible()
        assert errors == []
        await browser.close()
