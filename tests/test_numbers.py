"""Numbers in the reader's digits: Babel on the server, the same in live.js and embed.js,
and counts typed in any script's digits."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime

import pytest

from conftest import add_signature, make_petition, wait_until
from petitions import i18n
from petitions.countries import country_name
from petitions.numbers import (
    MAX_COUNT_DIGITS,
    MAX_COUNT_INPUT,
    NUMBERING_SYSTEMS,
    BadCount,
    format_date,
    format_datetime,
    format_number,
    numbering_system,
    parse_count,
)
from petitions.paths import STATIC_DIR
from petitions.petitions import StatementText, create_petition
from petitions.signing import parse_sign_form

NNBSP = "\u202f"


# Formatting ------------------------------------------------------------------


@pytest.mark.parametrize(
    "language, expected",
    [
        ("en", "12,500"),
        ("fa", "۱۲٬۵۰۰"),
        ("ar", "١٢٬٥٠٠"),
        ("ckb", "١٢٬٥٠٠"),
        ("tr", "12.500"),
        ("fr", "12" + NNBSP + "500"),
        ("es", "12.500"),
        ("de", "12.500"),
    ],
)
def test_a_count_in_each_interface_language(language, expected):
    with i18n.language(language):
        assert format_number(12500) == expected
    assert format_number(12500, language) == expected


def test_the_filter_follows_the_current_language_not_a_default():
    assert format_number(1234567) == "1,234,567"
    with i18n.language("fa"):
        assert format_number(1234567) == "۱٬۲۳۴٬۵۶۷"
        assert format_number(None) == "۰"
        assert numbering_system() == "arabext"
    assert numbering_system() == "latn"


def test_spanish_groups_from_five_digits_as_cldr_says():
    assert format_number(1250, "es") == "1250"
    assert format_number(12500, "es") == "12.500"
    assert format_number(1250, "de") == "1.250"


def test_dates_use_the_page_digits():
    day = date(2025, 3, 14)
    assert format_date(day, "en") == "Mar 14, 2025"
    assert format_date(day, "fa") == "۱۴ مارس ۲۰۲۵"
    assert format_date(day, "ar") == "١٤\u200f/٠٣\u200f/٢٠٢٥"
    assert format_date(day, "de") == "14.03.2025"
    moment = datetime(2025, 3, 14, 15, 30, tzinfo=UTC)
    with i18n.language("fa"):
        text = format_datetime(moment)
    assert "۱۵:۳۰" in text and not re.search("[0-9]", text)
    assert format_date(None) == "" and format_datetime(None) == ""


def test_every_interface_language_has_a_numbering_system():
    assert set(NUMBERING_SYSTEMS) == set(i18n.LANGUAGES)


def test_embed_js_holds_the_same_table_as_python():
    source = (STATIC_DIR / "embed.js").read_text()
    match = re.search(r"var NUMBERING = (\{.*?\});", source)
    assert match, "embed.js has no NUMBERING table"
    assert json.loads(match.group(1)) == NUMBERING_SYSTEMS


def test_live_js_reads_the_numbering_system_of_the_page():
    source = (STATIC_DIR / "live.js").read_text()
    assert 'getAttribute("data-numbering")' in source
    assert '"-u-nu-"' in source


# Reading counts ----------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "12500",
        "۱۲۵۰۰",  # Persian digits
        "١٢٥٠٠",  # Arabic-Indic digits
        "12 500",
        "12\u00a0500",  # no-break space
        "12\u202f500",  # narrow no-break space
        "12\u2009500",  # thin space
        "12,500",
        "12.500",  # German, Turkish, Spanish
        "12'500",  # Swiss
        "۱۲٬۵۰۰",  # Arabic thousands separator
        "١٢٬٥٠٠",
        "۱۲ ۵۰۰",
        "  12 500  ",
        "۱۲٥٠٠",  # Persian with Arabic-Indic 5 and 0, as Persian keyboards mix them
        "１２５００",  # full-width
    ],
)
def test_counts_typed_in_any_script(typed):
    assert parse_count(typed) == 12500


@pytest.mark.parametrize("typed", ["1 000 000", "1.000.000", "1,000,000", "۱٬۰۰۰٬۰۰۰", "0"])
def test_larger_and_smaller_counts(typed):
    assert parse_count(typed) == int(re.sub(r"\D", "", typed.translate(str.maketrans("۰۱", "01"))))


def test_an_empty_field_is_no_count():
    assert parse_count("") is None
    assert parse_count("   ") is None


@pytest.mark.parametrize(
    "typed",
    [
        "12,5",  # a decimal part, not a count
        "1.25",
        "۱۲٫۵",  # Arabic decimal separator
        "12,50",
        "1,2345",
        "12\x00500",  # NUL byte
        "12\x00",
        "-12500",
        "\u221212500",  # minus sign
        "+12500",
        "12۵۰۰",  # Latin and Persian digits mixed
        "1२५00",  # Latin and Devanagari
        "1,000.000",  # two kinds of separator
        "1 2 3",
        ",500",
        "500,",
        "12,,500",
        "1e5",
        "twelve",
        "12500 members",
        "9" * (MAX_COUNT_DIGITS + 1),
        "9" * (MAX_COUNT_INPUT + 1),
        "1" + " 000" * 10,
    ],
)
def test_what_is_not_a_count_is_refused_with_a_message(typed):
    with pytest.raises(BadCount) as error:
        parse_count(typed)
    assert str(error.value).endswith(".")  # a sentence, not the input echoed


def test_a_decimal_part_gets_its_own_message():
    with pytest.raises(BadCount, match="decimal"):
        parse_count("12,5")


def test_messages_are_in_the_reader_digits():
    with i18n.language("fa"), pytest.raises(BadCount) as error:
        parse_count("abc")
    assert "۱۲۵۰۰" in str(error.value)


class _Petition:
    accepts_individuals = accepts_organisations = True


def _organisation_form(members: str) -> dict:
    return {
        "kind": "organisation", "name": "Shirin", "email": "shirin@example.org",
        "country": "IR", "organisation": "Haft Tapeh workers' syndicate",
        "organisation_type": "trade_union", "members": members, "display": "public",
    }  # fmt: skip


def test_the_sign_form_reads_members_in_persian_digits():
    assert parse_sign_form(_organisation_form("۱۲٬۵۰۰"), _Petition()).members == 12500
    assert parse_sign_form(_organisation_form(""), _Petition()).members is None


@pytest.mark.parametrize("members", ["12,5", "۱۲٫۵", "-3", "x" * 1000, "9" * 12])
def test_the_sign_form_refuses_bad_members(members):
    from petitions.fields import FieldErrors

    with pytest.raises(FieldErrors) as error:
        parse_sign_form(_organisation_form(members), _Petition())
    assert set(error.value.errors) == {"members"}


async def test_a_bad_member_count_gets_a_400_not_a_500(client, conn):
    await make_petition(conn)
    page = await client.get("/p/release-them")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    form = {**_organisation_form("12,5"), **({"form_token": token.group(1)} if token else {})}
    answer = await client.post(
        "/p/release-them/sign", data=form, headers={"origin": "http://testserver"}
    )
    assert answer.status_code == 400
    assert "decimal" in answer.text


# Pages -------------------------------------------------------------------------


PERSIAN = StatementText(
    title="آزادی کارگران زندانی",
    summary="همین حالا آزادشان کنید.",
    target="مقامات",
    body="ما در کنار **کارگران** هستیم.",
    demands=("آزادی همهٔ کارگران",),
)


async def make_persian_petition(conn, slug="azadi", **options) -> int:
    return await create_petition(
        conn, slug, {"fa": PERSIAN}, status="open", default_language="fa", **options
    )


def _count_text(html: str) -> str:
    match = re.search(r"<[^>]*\bdata-count\b[^>]*>([^<]*)<", html)
    assert match, "no element with data-count"
    return match.group(1)


async def test_a_persian_page_writes_every_number_in_persian_digits(client, conn):
    petition_id = await make_persian_petition(conn, goal=25000)
    for _ in range(3):
        await add_signature(conn, petition_id, country="IR")
    page = await client.get("/p/azadi?lang=fa")
    assert page.status_code == 200
    assert 'data-numbering="arabext"' in page.text
    assert _count_text(page.text) == "۳"
    assert "۲۵٬۰۰۰" in page.text


async def test_a_french_page_writes_latin_digits_with_a_narrow_space(client, conn):
    petition_id = await make_petition(conn, goal=12500)
    await add_signature(conn, petition_id)
    page = await client.get("/p/release-them?lang=fr")
    assert 'data-numbering="latn"' in page.text
    assert "12" + NNBSP + "500" in page.text


# In a browser ------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
browser_test = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine"),
]


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        await browser.close()


FIGURES = [0, 7, 999, 1000, 1250, 9999, 12500, 100000, 1234567, 1000000000]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
async def test_the_browser_formats_as_the_server_in_every_language(browser):
    """live.js's way (Intl with the page's numbering system, falling back to "en" with
    the same digits when the browser lacks the language) against numbers.py."""
    page = await browser.new_page()
    for language, system in NUMBERING_SYSTEMS.items():
        written = await page.evaluate(
            """([lang, system, figures]) => {
                var f = new Intl.NumberFormat(lang + "-u-nu-" + system);
                if (f.resolvedOptions().numberingSystem !== system)
                    f = new Intl.NumberFormat("en-u-nu-" + system);
                return figures.map(n => f.format(n));
            }""",
            [language, system, FIGURES],
        )
        assert written == [format_number(n, language) for n in FIGURES], language


async def _served_and_live_counts(browser, settings, conn, petition_id, url, lang):
    """Open the petition page, confirm a signature while it is open, and return the
    count the server wrote and the one live.js wrote after the live update."""
    import httpx

    from livekit import serving
    from petitions.app import create_app

    # 12,499 signatures counted before this one (tallies are what counts are read from).
    await conn.execute(
        "INSERT INTO signature_tallies (petition_id, kind, country, slot, n) "
        "VALUES ($1, 'individual', 'IR', 0, 12499)",
        petition_id,
    )
    pending = await add_signature(conn, petition_id, status="pending", country="IR")
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        page = await browser.new_page()
        await page.goto(base + url)
        counter = page.locator("[data-count]").first
        served = await counter.text_content()
        assert served == format_number(12499, lang)
        await wait_until(lambda: app.state.live.subscriber_count, what="live.js to connect")
        link = "/verify/" + app.state.tokens.signature_link("verify", pending["public_id"])
        async with httpx.AsyncClient() as http:
            assert (await http.get(base + link)).status_code == 200
        await page.wait_for_function(
            "text => document.querySelector('[data-count]').textContent === text",
            arg=format_number(12500, lang),
        )
        live = await counter.text_content()
        # The new signatory's country, named by live.js as the server names it.
        country = page.locator("[data-live-list] .is-new .sig-country").first
        await country.wait_for()
        assert (await country.text_content()).strip() == country_name("IR", lang)
        await page.close()
    return served, live


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
@pytest.mark.parametrize(
    "lang, before, after",
    [
        ("fa", "۱۲٬۴۹۹", "۱۲٬۵۰۰"),
        ("fr", "12" + NNBSP + "499", "12" + NNBSP + "500"),
        # Chromium has no Central Kurdish data: live.js keeps the digits all the same.
        ("ckb", "١٢٬٤٩٩", "١٢٬٥٠٠"),
    ],
)
async def test_a_live_update_writes_the_digits_the_server_wrote(
    browser, settings, conn, lang, before, after
):
    if lang == "fa":
        petition_id, url = await make_persian_petition(conn), "/p/azadi?lang=fa"
    else:
        petition_id, url = await make_petition(conn), f"/p/release-them?lang={lang}"
    served, live = await _served_and_live_counts(browser, settings, conn, petition_id, url, lang)
    assert (served, live) == (before, after)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
async def test_embed_js_counters_follow_their_language_on_a_foreign_site(browser, settings, conn):
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from livekit import serving
    from petitions.app import create_app

    petition_id = await make_petition(conn)
    await conn.execute(
        "INSERT INTO signature_tallies (petition_id, kind, country, slot, n) "
        "VALUES ($1, 'individual', 'IR', 0, 12499)",
        petition_id,
    )
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        page_html = f"""<!doctype html><html lang="fr"><head><meta charset="utf-8">
<title>Nouvelles</title><link rel="icon" href="data:,"></head><body>
<p id="page" data-petition="release-them"></p>
<p id="data-lang" data-petition="release-them" data-lang="fa"></p>
<div lang="ar"><p id="inside" data-petition="release-them"></p></div>
<script src="{base}/embed.js" async></script></body></html>"""

        async def home(request):
            return HTMLResponse(page_html)

        async with serving(Starlette(routes=[Route("/", home)])) as site:
            page = await browser.new_page()
            await page.goto(site.replace("127.0.0.1", "localhost"))
            for element, lang in (("page", "fr"), ("data-lang", "fa"), ("inside", "ar")):
                await page.wait_for_function(
                    "([id, text]) => document.querySelector('#' + id + ' .petition-count')"
                    "?.textContent === text",
                    arg=[element, format_number(12499, lang)],
                )
            await page.close()
