"""Choosing the language: ?lang= beats Accept-Language beats the petition's default; the
choice stays in every link, is recorded with the signature, and every later email to
that signer is written in it; <html lang dir>; a switcher; the page cache per language."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from admin_support import admin_client
from conftest import add_signature, make_petition, opened_signatures, without_form_tokens
from petitions import i18n
from petitions.delivery import deliver_due
from petitions.locales import (
    accepted_languages,
    choose_language,
    choose_site_language,
    lang_url,
    match,
    own_name,
    page_variant,
    use_choice,
)
from petitions.signing import process_sign_reminders

PERSIAN_TITLE = "کارگران زندانی را آزاد کنید"
FRENCH_TITLE = "Libérez les travailleurs détenus"
ARABIC_TITLE = "أطلقوا سراح العمال المعتقلين"
PORTUGUESE_TITLE = "Libertem os trabalhadores detidos"
ENGLISH_TITLE = "Release the detained workers"

SIGNER = {
    "kind": "individual",
    "name": "Leyla Ahmadi",
    "email": "leyla@example.org",
    "country": "SE",
    "display": "public",
    "updates": "1",
}


async def add_text(conn, petition_id: int, language: str, title: str) -> None:
    version_id = await conn.fetchval(
        "SELECT id FROM statement_versions WHERE petition_id = $1", petition_id
    )
    await conn.execute(
        "INSERT INTO statement_texts (version_id, language, title, body, demands) "
        "VALUES ($1, $2, $3, $4, ARRAY['-'])",
        version_id, language, title, f"{title} ({language})",
    )  # fmt: skip


async def multilingual(conn, slug: str = "release-them", default_language: str = "en") -> int:
    """A petition in English (unless another default), Persian, French, Arabic and
    Brazilian Portuguese (a language the interface lacks)."""
    pid = await make_petition(conn, slug)
    for code, title in (("fa", PERSIAN_TITLE), ("fr", FRENCH_TITLE), ("ar", ARABIC_TITLE),
                        ("pt-BR", PORTUGUESE_TITLE)):  # fmt: skip
        await add_text(conn, pid, code, title)
    if default_language != "en":
        await conn.execute(
            "UPDATE petitions SET default_language = $2 WHERE id = $1", pid, default_language
        )
        await conn.execute(
            "DELETE FROM statement_texts t USING statement_versions v "
            "WHERE t.version_id = v.id AND v.petition_id = $1 AND t.language = 'en'",
            pid,
        )
    return pid


def html_tag(html: str) -> tuple[str, str]:
    tag = re.search(r"<html\b[^>]*>", html).group(0)
    return re.search(r'lang="([^"]*)"', tag).group(1), re.search(r'dir="([^"]*)"', tag).group(1)


def hrefs(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'(?:href|action)="([^"]*)"', html)]


def lang_of(url: str) -> str | None:
    return parse_qs(urlsplit(url).query).get("lang", [None])[0]


async def form_token(client, path: str) -> str:
    page = await client.get(path)
    return re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)


# The choice itself (no database) --------------------------------------------------


def test_accept_language_is_read_by_quality_then_order():
    header = "fr;q=0.5, fa-IR, en;q=0.8, de;q=0, *;q=0.1, es;q=0.80"
    assert accepted_languages(header) == ["fa-ir", "en", "es", "fr"]
    assert accepted_languages("en-GB,en;q=0.9") == ["en-gb", "en"]
    # Malformed entries are dropped, not guessed at; q=0 means "not this one".
    assert accepted_languages("fa;q=abc, ar;q=2, tr;q=0.0001, de;q=nan, ckb") == ["ckb"]
    assert accepted_languages("x" * 100_000) == []
    assert accepted_languages("fa\x00, ;;;, ,,,, ar") == ["ar"]
    assert accepted_languages(",".join(["zz"] * 30 + ["fa"])) == ["zz"]  # the first few only
    assert len(accepted_languages(",".join(["fa"] * 5000))) == 1


def test_matching_a_wish_to_the_languages_there_are():
    assert match("fa-ir", ["en", "fa"]) == "fa"
    assert match("pt", ["en", "pt-BR"]) == "pt-BR"
    assert match("pt-br", ["en", "pt-BR"]) == "pt-BR"
    assert match("zh-hant-tw", ["zh-Hant", "en"]) == "zh-Hant"
    assert match("ja", ["en", "fa"]) is None


def test_lang_beats_accept_language_beats_the_default():
    texts = ("en", "fa", "fr")
    chosen = choose_language("fa", "fr", texts, "en")
    assert (chosen.text, chosen.interface, chosen.link, chosen.negotiated) == (
        "fa", "fa", "fa", False,
    )  # fmt: skip
    chosen = choose_language(None, "de;q=0.9, fr;q=0.8, fa;q=0.7", texts, "en")
    assert (chosen.text, chosen.interface, chosen.link, chosen.negotiated) == (
        "fr", "fr", None, True,
    )  # fmt: skip
    assert choose_language(None, "ja", texts, "fa").text == "fa"  # the petition's default
    assert choose_language(None, None, texts, "fa").interface == "fa"
    # ?lang= that is no text's language but an interface one: that interface, default text.
    chosen = choose_language("de", "fa", texts, "en")
    assert (chosen.text, chosen.interface, chosen.link) == ("en", "de", "de")
    # A statement language the interface lacks: the text, with English around it.
    chosen = choose_language("pt-br", None, ("en", "pt-BR"), "en")
    assert (chosen.text, chosen.interface, chosen.link) == ("pt-BR", "en", "pt-BR")
    # Nonsense in ?lang= is ignored: Accept-Language decides.
    for nonsense in ("xx", "\x00", "x" * 5000, "fa;drop table", "", None, ["fa"]):
        assert choose_language(nonsense, "fr", texts, "en").text == "fr", nonsense
    # Pages without a petition: the interface languages, then English.
    assert choose_site_language("ckb", "fr").interface == "ckb"
    assert choose_site_language(None, "pt-BR, ja").interface == "en"
    assert choose_site_language(None, "tr-TR, en;q=0.5").interface == "tr"


def test_page_variant_and_links():
    assert page_variant("fa", "fr") == ""  # ?lang= decides alone
    assert page_variant(None, "fr-FR, fa;q=0.5") == "fr-fr,fa"
    assert page_variant("pt-BR", "fr") == "fr"  # a statement language: the header may matter
    state: dict = {}
    use_choice(state, choose_language("fa", None, ("en", "fa"), "en"))
    assert i18n.current_language() == "fa"
    assert (
        lang_url("/p/x/signatures", country="IR", after=None)
        == "/p/x/signatures?country=IR&lang=fa"
    )
    assert lang_url("http://t/p/x/embed?signed=1") == "http://t/p/x/embed?signed=1&lang=fa"
    use_choice(state, choose_language(None, "fa", ("en", "fa"), "en"))
    assert lang_url("/p/x") == "/p/x"  # negotiated: nothing to carry
    i18n.use_language("en")


def test_languages_are_named_in_themselves():
    assert own_name("fa") == "فارسی" and own_name("ckb") == "کوردی"
    assert own_name("pt-BR") == "Português (Brasil)"
    assert own_name("qqq") == "qqq"


# Pages ------------------------------------------------------------------------------


async def test_lang_beats_accept_language_beats_the_petition_default(client, conn):
    await multilingual(conn)
    page = await client.get("/p/release-them?lang=fa", headers={"Accept-Language": "fr"})
    assert PERSIAN_TITLE in page.text and html_tag(page.text) == ("fa", "rtl")
    assert "accept-language" not in page.headers.get("vary", "").lower()

    page = await client.get(
        "/p/release-them", headers={"Accept-Language": "de;q=0.9, fr;q=0.8, fa;q=0.5"}
    )
    assert FRENCH_TITLE in page.text and html_tag(page.text) == ("fr", "ltr")
    assert "accept-language" in page.headers["vary"].lower()

    page = await client.get("/p/release-them", headers={"Accept-Language": "ja, zh;q=0.9"})
    assert ENGLISH_TITLE in page.text and html_tag(page.text) == ("en", "ltr")
    page = await client.get("/p/release-them")
    assert ENGLISH_TITLE in page.text and html_tag(page.text) == ("en", "ltr")

    # A statement in a language the interface lacks: English around it.
    page = await client.get("/p/release-them?lang=pt-BR", headers={"Accept-Language": "fa"})
    assert PORTUGUESE_TITLE in page.text and html_tag(page.text) == ("en", "ltr")
    assert re.search(r'<section class="statement" lang="pt-BR"', page.text)
    # ?lang= in an interface language the statement lacks: that interface, default text.
    page = await client.get("/p/release-them?lang=tr")
    assert ENGLISH_TITLE in page.text and html_tag(page.text) == ("tr", "ltr")


async def test_the_interface_follows_the_statement(client, conn):
    await multilingual(conn, default_language="fa")
    page = await client.get("/p/release-them", headers={"Accept-Language": "ja"})
    assert PERSIAN_TITLE in page.text and html_tag(page.text) == ("fa", "rtl")
    page = await client.get("/p/release-them/signatures")
    assert html_tag(page.text) == ("fa", "rtl")


@pytest.mark.parametrize("code,direction", [("fa", "rtl"), ("ar", "rtl"), ("ckb", "rtl"), ("en", "ltr"), ("fr", "ltr")])  # fmt: skip
async def test_html_lang_and_dir_on_every_public_page(client, conn, code, direction):
    await multilingual(conn)
    await add_text(conn, await conn.fetchval("SELECT id FROM petitions"), "ckb", "ئازادیان بکەن")
    for path in ("/", "/privacy", "/p/release-them", "/p/release-them/signatures",
                 "/p/release-them/embed", "/p/release-them/thanks", "/p/nothing-here",
                 "/verify/not-a-token"):  # fmt: skip
        page = await client.get(f"{path}?lang={code}")
        assert page.status_code in (200, 400, 404), path
        assert html_tag(page.text) == (code, direction), path
    # Accept-Language alone, on pages without a petition.
    page = await client.get("/privacy", headers={"Accept-Language": f"{code};q=0.9, xx"})
    assert html_tag(page.text) == (code, direction)


NASTY_HEADERS = [
    "x" * 100_000,
    "fa;q=" + "9" * 5000,
    ";;;,,,===",
    "fa-" + "a" * 3000,
    "\u0641\u0627",  # not a language tag
    "*",
    "fa;q=-1, ar;q=1e9",
]


async def test_malformed_lang_and_accept_language_fall_back_without_an_error(client, conn):
    await multilingual(conn)
    for path in ("/", "/p/release-them", "/p/release-them/signatures", "/p/release-them/embed",
                 "/privacy"):  # fmt: skip
        for header in NASTY_HEADERS:
            page = await client.get(path, headers={"Accept-Language": header.encode("utf-8")})
            assert page.status_code == 200, (path, header[:20])
            assert html_tag(page.text) == ("en", "ltr")
        for value in ("%00", "x" * 5000, "fa%00", "../../etc", "%ff%fe", "fa&lang=ar", "-", "ckb-"):
            page = await client.get(f"{path}?lang={value}")
            assert page.status_code == 200, (path, value)
    # A NUL byte in the header itself (httpx refuses to send one: the raw ASGI way).
    page = await client.get("/p/release-them", headers={"Accept-Language": b"fa\x00ar"})
    assert page.status_code == 200


async def test_links_keep_the_language(client, conn):
    pid = await multilingual(conn)
    for n in range(3):
        await add_signature(conn, pid, name=f"Signer {n}", country="IR")

    page = (await client.get("/p/release-them?lang=fa&ref=telegram")).text
    links = [h for h in hrefs(page) if "/p/release-them/signatures" in h and "json" not in h]
    assert links and all(lang_of(h) == "fa" for h in links)
    actions = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]*)"', page)
    assert actions and all(lang_of(unescape(a)) == "fa" for a in actions)
    assert lang_of(next(h for h in hrefs(page) if h.endswith("/privacy?lang=fa"))) == "fa"

    listing = (await client.get("/p/release-them/signatures?lang=fa&limit=1")).text
    assert '<input type="hidden" name="lang" value="fa">' in listing  # the filter form
    next_url = unescape(re.search(r'rel="next" href="([^"]+)"', listing).group(1))
    assert lang_of(next_url) == "fa" and "after=" in next_url
    second = await client.get(urlsplit(next_url).path + "?" + urlsplit(next_url).query)
    assert html_tag(second.text) == ("fa", "rtl")
    filtered = (await client.get("/p/release-them/signatures?lang=fa&country=IR")).text
    assert html_tag(filtered) == ("fa", "rtl")

    embed = (await client.get("/p/release-them/embed?lang=fa")).text
    petition_links = [h for h in hrefs(embed) if urlsplit(h).path == "/p/release-them"]
    assert petition_links and all(lang_of(h) == "fa" for h in petition_links)
    [embed_action] = {a for a in re.findall(r'action="([^"]*)"', embed)}
    assert lang_of(unescape(embed_action)) == "fa"

    index = (await client.get("/?lang=fa")).text
    assert PERSIAN_TITLE in index
    assert any(urlsplit(h).path == "/p/release-them" and lang_of(h) == "fa" for h in hrefs(index))

    # After signing: the thanks page (and the embed's own) in the same language.
    token = await form_token(client, "/p/release-them?lang=fa")
    signed = await client.post("/p/release-them/sign?lang=fa", data={**SIGNER, "form_token": token})
    assert signed.status_code == 303 and lang_of(signed.headers["location"]) == "fa"
    thanks = await client.get(signed.headers["location"])
    assert html_tag(thanks.text) == ("fa", "rtl")
    token = await form_token(client, "/p/release-them/embed?lang=ar")
    signed = await client.post(
        "/p/release-them/embed?lang=ar",
        data={**SIGNER, "email": "b@example.org", "form_token": token},
    )
    location = signed.headers["location"]
    assert signed.status_code == 303 and lang_of(location) == "ar" and "signed=1" in location

    # A rejected form comes back in the language it was sent in.
    bad = await client.post(
        "/p/release-them/sign?lang=fa", data={**SIGNER, "email": "nope", "form_token": token}
    )
    assert bad.status_code == 400 and html_tag(bad.text) == ("fa", "rtl")


async def test_a_switcher_lists_the_statement_languages_by_their_own_names(client, conn):
    await multilingual(conn)
    page = (await client.get("/p/release-them/signatures?lang=fa&country=IR")).text
    switcher = re.search(r'<nav class="languages"[^>]*>(.*?)</nav>', page, re.S).group(1)
    names = re.findall(r">([^<]+)</a>", switcher)
    assert set(names) == {"English", "فارسی", "Français", "العربية", "Português (Brasil)"}
    current = re.findall(r'<a href="([^"]+)"[^>]*aria-current="true"[^>]*>([^<]+)<', switcher)
    assert [name for _, name in current] == ["فارسی"]
    french = unescape(re.search(r'<a href="([^"]+)"[^>]*>Français<', switcher).group(1))
    assert lang_of(french) == "fr" and "country=IR" in french  # the same page, in French
    assert html_tag((await client.get(french)).text) == ("fr", "ltr")
    embed = (await client.get("/p/release-them/embed?lang=ar")).text
    assert '<nav class="languages"' in embed and "فارسی" in embed
    # Pages without a petition offer the interface languages.
    home = (await client.get("/?lang=ckb")).text
    switcher = re.search(r'<nav class="languages"[^>]*>(.*?)</nav>', home, re.S).group(1)
    assert len(re.findall(r"<a ", switcher)) == len(i18n.LANGUAGES)
    assert re.search(r'aria-current="true"[^>]*>کوردی<', switcher)


async def test_the_page_cache_keeps_each_language_apart(client, conn, app):
    await multilingual(conn)
    app.state.page_cache.seconds = 60  # long enough that every request below could hit it
    persian = await client.get("/p/release-them", headers={"Accept-Language": "fa"})
    english = await client.get("/p/release-them", headers={"Accept-Language": "en"})
    french = await client.get("/p/release-them", headers={"Accept-Language": "fr-CA, fr;q=0.9"})
    bare = await client.get("/p/release-them")
    assert PERSIAN_TITLE in persian.text and html_tag(persian.text)[0] == "fa"
    assert ENGLISH_TITLE in english.text and html_tag(english.text)[0] == "en"
    assert FRENCH_TITLE in french.text and html_tag(french.text)[0] == "fr"
    assert ENGLISH_TITLE in bare.text
    again = await client.get("/p/release-them", headers={"Accept-Language": "fa"})
    assert without_form_tokens(again.text) == without_form_tokens(persian.text)  # cached
    assert "accept-language" in again.headers["vary"].lower()
    arabic = await client.get("/p/release-them/embed?lang=ar", headers={"Accept-Language": "fa"})
    assert html_tag(arabic.text) == ("ar", "rtl")
    assert html_tag((await client.get("/p/release-them/embed?lang=ar")).text) == ("ar", "rtl")
    assert html_tag((await client.get("/p/release-them/embed")).text) == ("en", "ltr")


async def sign_and_receive(client, app, mail_settings, mail_server, lang: str, email: str):
    token = await form_token(client, f"/p/release-them?lang={lang}")
    signed = await client.post(
        f"/p/release-them/sign?lang={lang}", data={**SIGNER, "email": email, "form_token": token}
    )
    assert signed.status_code == 303
    before = len(mail_server.messages)
    await deliver_due(app.state.db, mail_settings)
    [message] = mail_server.messages[before:]
    return message


async def test_signing_in_persian_records_it_and_the_email_is_persian(
    client, conn, app, mail_settings, mail_server
):
    await multilingual(conn)
    message = await sign_and_receive(
        client, app, mail_settings, mail_server, "fa", "leyla@example.org"
    )
    [row] = await opened_signatures(conn)
    assert row["language"] == "fa"
    assert message["Content-Language"] == "fa"
    assert PERSIAN_TITLE in message["Subject"]
    html = message.get_body(("html",)).get_content()
    assert html_tag(html) == ("fa", "rtl") and PERSIAN_TITLE in html
    text = message.get_body(("plain",)).get_content()
    links = re.findall(r"http://\S+/(?:verify|withdraw)/\S+", text)
    assert len(links) >= 2 and all(lang_of(link) == "fa" for link in links)
    # The confirmation page opens in Persian.
    verify = next(link for link in links if "/verify/" in link)
    page = await client.get(urlsplit(verify).path + "?" + urlsplit(verify).query)
    assert page.status_code == 200 and html_tag(page.text) == ("fa", "rtl")
    # Signing again (from an English page): the reminder is in the signer's language.
    token = await form_token(client, "/p/release-them?lang=en")
    await client.post("/p/release-them/sign?lang=en", data={**SIGNER, "form_token": token})
    await process_sign_reminders(app.state.db, app.state.mailer)
    await deliver_due(app.state.db, mail_settings)
    reminder = mail_server.messages[-1]
    assert reminder["Content-Language"] == "fa"
    assert html_tag(reminder.get_body(("html",)).get_content()) == ("fa", "rtl")


async def test_signing_without_lang_records_the_negotiated_language(
    client, conn, app, mail_settings, mail_server
):
    await multilingual(conn)
    token = await form_token(client, "/p/release-them")
    signed = await client.post(
        "/p/release-them/sign", data={**SIGNER, "form_token": token},
        headers={"Accept-Language": "ar, en;q=0.5"},
    )  # fmt: skip
    assert signed.headers["location"] == "http://testserver/p/release-them/thanks#main"
    [row] = await opened_signatures(conn)
    assert row["language"] == "ar"
    await deliver_due(app.state.db, mail_settings)
    assert mail_server.messages[-1]["Content-Language"] == "ar"


async def test_the_french_email_is_translated(client, conn, app, mail_settings, mail_server):
    """The mechanism above, with a real catalogue: as far as French is translated."""
    expected = i18n.translations("fr").gettext("Confirm my signature")
    if expected == "Confirm my signature":
        pytest.skip("the French catalogue has no translation of 'Confirm my signature' yet")
    await multilingual(conn)
    message = await sign_and_receive(client, app, mail_settings, mail_server, "fr", "a@example.org")
    assert expected in message.get_body(("html",)).get_content()
    assert FRENCH_TITLE in message["Subject"]
    # And the pages: the interface, chosen by Accept-Language alone.
    page = await client.get("/p/release-them", headers={"Accept-Language": "fr-FR"})
    see_all = i18n.translations("fr").gettext("See all signatories")
    assert see_all != "See all signatories" and see_all in unescape(page.text)


async def test_an_update_reaches_each_signer_in_their_language(
    app, conn, client, mail_settings, mail_server
):
    pid = await multilingual(conn)
    await add_signature(conn, pid, email="fa@example.org", updates=True, language="fa")
    await add_signature(conn, pid, email="en@example.org", updates=True, language="en")
    update = {"subject": "آزاد شدند / They are free", "body": "**Thank you.** متشکریم"}
    url = "/admin/petitions/release-them/updates"
    async with admin_client(app, conn, "editor") as editor:
        preview = await editor.post(url, {**update, "action": "preview"})
        confirmation = re.search(r'name="confirmation" value="([0-9a-f]+)"', preview.text).group(1)
        sent = await editor.post(url, {**update, "action": "send", "confirmation": confirmation})
        assert sent.status_code == 303
    await deliver_due(app.state.db, mail_settings)
    received = {m["To"]: m for m in mail_server.messages}
    persian, english = received["fa@example.org"], received["en@example.org"]
    for message, code, direction, title in ((persian, "fa", "rtl", PERSIAN_TITLE),
                                            (english, "en", "ltr", ENGLISH_TITLE)):  # fmt: skip
        assert message["Content-Language"] == code
        assert message["Subject"] == update["subject"]  # the campaign's words, as written
        html = message.get_body(("html",)).get_content()
        assert html_tag(html) == (code, direction)
        assert "<strong>Thank you.</strong> متشکریم" in html and title in html
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        assert lang_of(unsubscribe) == code and unsubscribe in html
        page = await client.get(urlsplit(unsubscribe).path + "?" + urlsplit(unsubscribe).query)
        assert page.status_code == 200 and html_tag(page.text) == (code, direction)
