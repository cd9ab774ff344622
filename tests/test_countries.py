"""Country names in the reader's language, in the order that language sorts them."""

from __future__ import annotations

import html
import re
import shutil

import pytest
from babel import Locale

from conftest import add_signature, make_petition
from petitions import i18n
from petitions.collation import sort_key, sort_texts
from petitions.countries import COUNTRY_CODES, country_name, country_names, sort_by_country_name
from petitions.petitions import StatementText, create_petition


def _before(names: list[str], first: str, second: str) -> bool:
    return names.index(first) < names.index(second)


def test_english_sorts_letters_with_accents_with_their_letter():
    names = list(country_names("en").values())
    assert _before(names, "Afghanistan", "Åland Islands")
    assert _before(names, "Åland Islands", "Albania")
    assert _before(names, "Tunisia", "Türkiye")
    assert _before(names, "Türkiye", "Turkmenistan")
    assert _before(names, "Curaçao", "Cyprus")


def test_persian_order_puts_vav_before_he_and_alef_madda_first():
    names = list(country_names("fa").values())
    assert names[0].startswith("آ")  # آ is a letter before ا
    assert _before(names, "ونزوئلا", "هلند")  # root order has ه before و
    assert _before(names, "ویتنام", "هند")
    assert _before(names, "هندوراس", "یمن")
    assert _before(names, "پرو", "تایلند")  # پ after ب, before ت
    assert _before(names, "کانادا", "گرجستان")  # ک before گ
    assert _before(names, "گینه", "لبنان")
    assert names[-1] == "یونان"


def test_turkish_letters_come_after_their_latin_base():
    names = list(country_names("tr").values())
    assert _before(names, "Curaçao", "Çad")  # Ç after every C
    assert _before(names, "Çin", "Danimarka")
    assert _before(names, "Uruguay", "Ürdün")
    assert sort_texts(["İran", "Irak", "Hindistan", "Isparta"], "tr") == [
        "Hindistan", "Irak", "Isparta", "İran",
    ]  # fmt: skip


def test_arabic_ignores_the_hamza_seat():
    names = list(country_names("ar").values())
    assert names[0] == "آيسلندا"
    assert _before(names, "إثيوبيا", "أذربيجان")  # ث before ذ; the hamza makes no letter


def test_names_follow_the_current_language():
    assert country_name("IR") == "Iran"
    with i18n.language("fa"):
        assert country_name("IR") == "ایران"
        assert list(country_names())[0] == "AR"  # آرژانتین
    with i18n.language("de"):
        assert country_name("DE") == "Deutschland"
    assert country_name("IR", "ckb") == Locale("ckb").territories["IR"]
    assert country_name("XX") == "XX" and country_name(None) == ""


def test_every_language_lists_every_country_once():
    for language in i18n.LANGUAGES:
        assert set(country_names(language)) == COUNTRY_CODES, language


def test_the_lists_are_built_once_per_language():
    assert country_names("fa") is country_names("fa")


def test_pairs_sort_by_the_name_in_the_current_language():
    pairs = [("TR", 3), ("AX", 1), ("AL", 2)]
    assert [c for c, _ in sort_by_country_name(pairs, "en")] == ["AX", "AL", "TR"]
    with i18n.language("fa"):
        # آلبانی, ترکیه, جزایر آلاند
        assert [c for c, _ in sort_by_country_name(pairs)] == ["AL", "TR", "AX"]


def test_sort_keys_break_ties_by_the_text():
    key = sort_key("fa")
    assert key("ي") != key("ی")  # sorted together, still distinct


# Pages -------------------------------------------------------------------------

PERSIAN = StatementText(title="آزادی کارگران زندانی", summary="آزادشان کنید.", target="مقامات")


def _select_names(page: str) -> list[str]:
    """The names in the first country <select> of a page."""
    start = page.index('name="country"')
    block = page[start : page.index("</select>", start)]
    return [html.unescape(n) for n in re.findall(r'<option value="[A-Z]{2}"[^>]*>([^<]*)<', block)]


async def test_the_sign_form_lists_countries_in_persian_order(client, conn):
    await create_petition(conn, "azadi", {"fa": PERSIAN}, status="open", default_language="fa")
    page = await client.get("/p/azadi?lang=fa")
    names = _select_names(page.text)
    assert names == list(country_names("fa").values())
    assert "ایران" in names


async def test_the_sign_form_lists_countries_in_english_order(client, conn):
    await make_petition(conn)
    page = await client.get("/p/release-them?lang=en")
    names = _select_names(page.text)
    assert names == list(country_names("en").values())
    assert _before(names, "Åland Islands", "Albania")


async def test_the_public_breakdown_and_filters_name_countries_in_the_reader_language(
    client, conn, settings
):
    petition_id = await make_petition(conn)
    for _ in range(settings.public_min_group):
        await add_signature(conn, petition_id, country="IR")
        await add_signature(conn, petition_id, country="DE")
    page = await client.get("/p/release-them?lang=fr")
    assert "Allemagne" in page.text and "Iran" in page.text
    listing = await client.get("/p/release-them/signatures?lang=de")
    assert listing.status_code == 200
    filter_names = re.findall(r'data-name="([^"]+)"', listing.text)
    assert filter_names == ["Deutschland", "Iran"]


# In a browser: the order against Chromium's ICU collation -------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")
async def test_the_order_is_the_one_chromium_s_icu_gives():
    """pyuca with our tailorings against ICU's CLDR collation, every interface language.
    (Chromium has no Central Kurdish collation and sorts it as root, as we do.)"""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = await browser.new_page()
        for language in i18n.LANGUAGES:
            names = list(country_names(language).values())
            icu = await page.evaluate(
                "([lang, names]) => names.slice().sort(new Intl.Collator(lang).compare)",
                [language, names],
            )
            assert names == icu, language
        await browser.close()
