"""The delivery document, GET /p/{slug}/print: the statement, then the public signatories
(organisations by type and country, then individuals by country) as their display
choices allow, with small countries unnamed; streamed, so a long list never sits in memory."""

from __future__ import annotations

import re
import unicodedata

import httpx
import pytest

from conftest import add_signature, count_is, make_petition, minutes_ago
from livekit import serving
from petitions.app import create_app
from petitions.petitions import StatementText, create_petition
from petitions.views.printout import Slots

SLUG = "release-them"


def order_of(html: str, *texts: str) -> list[int]:
    """Where each text first appears; fails naming any that does not."""
    positions = []
    for text in texts:
        position = html.find(text)
        assert position >= 0, f"{text!r} is not in the document"
        positions.append(position)
    return positions


def in_order(html: str, *texts: str) -> bool:
    positions = order_of(html, *texts)
    return positions == sorted(positions)


async def sign(conn, pid, name, country, minutes, **fields):
    return await add_signature(
        conn, pid, name=name, country=country, verified_at=minutes_ago(minutes), **fields
    )


async def a_petition_with_signers(conn) -> int:
    """France (6 counted) and the United Kingdom (5) may be named; Iceland (2) may not."""
    pid = await make_petition(conn, goal=1000)
    org = {"kind": "organisation"}
    # France: six counted signatures, one of them anonymous.
    await sign(
        conn,
        pid,
        "Paul Secretary",
        "FR",
        50,
        **org,
        organisation="Syndicat Rouge",
        organisation_type="trade_union",
        members=12500,
        city="Lyon",
    )
    await sign(
        conn,
        pid,
        "Nadia Director",
        "FR",
        49,
        **org,
        organisation="ONG Solidaire",
        organisation_type="ngo",
    )
    await sign(conn, pid, "Marie Curie", "FR", 48, occupation="Physicist", city="Paris")
    await sign(conn, pid, "Jean Luc Picard", "FR", 47, display="initials", occupation="Captain")
    await sign(conn, pid, "Secret Person", "FR", 46, display="anonymous", occupation="Hidden job")
    await sign(conn, pid, "Louise Michel", "FR", 45, occupation="Teacher")
    # The United Kingdom: five, among them a union shown by its initials only.
    await sign(
        conn,
        pid,
        "Dora Docker",
        "GB",
        40,
        **org,
        organisation="Dockers Union",
        organisation_type="trade_union",
    )
    await sign(
        conn,
        pid,
        "Quiet Officer",
        "GB",
        39,
        **org,
        display="initials",
        organisation="Hidden Workers Union",
        organisation_type="trade_union",
    )
    for i in range(3):
        await sign(conn, pid, f"British Signer {i}", "GB", 30 - i)
    # Iceland: two, too few to name the country.
    await sign(
        conn,
        pid,
        "Tiny Union Secretary",
        "IS",
        20,
        **org,
        organisation="Tiny Union",
        organisation_type="trade_union",
    )
    await sign(conn, pid, "Bjork Small", "IS", 19, occupation="Singer")
    # Not counted, so never listed.
    await add_signature(conn, pid, name="Pending Person", country="FR", status="pending")
    await add_signature(conn, pid, name="Gone Person", country="FR", status="withdrawn",
                        verified_at=minutes_ago(60))  # fmt: skip
    return pid


async def test_organisations_by_type_and_country_then_individuals_by_country(client, conn):
    await a_petition_with_signers(conn)
    assert await count_is(client, 13)
    response = await client.get(f"/p/{SLUG}/print")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    # The statement, its target and the count come first.
    assert in_order(html, "Release the detained workers", "The authorities", "13 signatures on",
                    "Release all detained workers", ">Signatories<")  # fmt: skip
    # Organisations (trade unions: France, United Kingdom, then the unnamed countries;
    # then NGOs), then individuals by country, each group in signing order.
    assert in_order(
        html,
        "Trade union · France", "Syndicat Rouge",
        "Trade union · United Kingdom", "Dockers Union", "H.W.U.",
        "Trade union · Other countries", "Tiny Union",
        "NGO · France", "ONG Solidaire",
        ">Individuals<",
        ">France<", "Marie Curie", "J.L.P.", "Louise Michel",
        ">United Kingdom<", "British Signer 0", "British Signer 1", "British Signer 2",
        ">Other countries<", "Bjork Small",
    )  # fmt: skip
    assert "12,500" in html and "Paul Secretary" in html  # public: members, who signed
    # Initials only for those who chose them; the anonymous and the uncounted never.
    for hidden in ("Jean", "Picard", "Hidden Workers", "Quiet Officer", "Secret Person",
                   "Hidden job", "Pending Person", "Gone Person"):  # fmt: skip
        assert hidden not in html, hidden
    assert "Captain" in html  # an initials signer's occupation is public
    # Iceland has too few signers to be named.
    assert "Iceland" not in html and "🇮🇸" not in html and '"IS"' not in html
    assert "fewer than 5 signatures are not named" in html
    # A print stylesheet with repeated headings and page numbers, and the document ends.
    assert 'href="http://testserver/static/print.css"' in html
    assert html.count("<thead>") == html.count("<table") == 7
    assert html.rstrip().endswith("</html>")
    assert html.count('<tr class="entry') == 12  # 13 counted, one anonymous


async def test_print_stylesheet_numbers_pages_and_repeats_headings(client):
    css = (await client.get("/static/print.css")).text
    assert "@page" in css and "counter(page" in css and "counter(pages" in css
    assert re.search(r"thead\s*\{\s*display:\s*table-header-group", css)
    assert "break-inside: avoid" in css and "@media print" in css


async def test_only_published_petitions_have_one(client, conn):
    await make_petition(conn, status="draft")
    assert (await client.get(f"/p/{SLUG}/print")).status_code == 404
    assert (await client.get("/p/nobody-here/print")).status_code == 404
    assert (await client.get("/p/NOT_A_SLUG/print")).status_code == 404
    await conn.execute("UPDATE petitions SET status = 'closed'")
    closed = await client.get(f"/p/{SLUG}/print")
    assert closed.status_code == 200 and "No one is listed yet." in closed.text


async def test_in_the_statement_language(client, conn):
    texts = {
        "en": StatementText(title="Free the workers", target="The authorities", body="Now."),
        "fa": StatementText(title="کارگران را آزاد کنید", target="مقامات", body="همین حالا."),
    }
    pid = await create_petition(conn, SLUG, texts, status="open")
    for i in range(5):
        await add_signature(conn, pid, name=f"امضاکننده {i}", country="IR")
    assert await count_is(client, 5)
    persian = (await client.get(f"/p/{SLUG}/print?lang=fa")).text
    assert '<html lang="fa" dir="rtl">' in persian
    assert "کارگران را آزاد کنید" in persian and "<bdi>مقامات</bdi>" in persian
    assert "<bdi>امضاکننده 0</bdi>" in persian and "Free the workers" not in persian
    english = (await client.get(f"/p/{SLUG}/print?lang=en")).text
    assert '<html lang="en" dir="ltr">' in english and "Free the workers" in english
    assert ">Iran<" in english  # five signers: the country is named


async def test_busy_answers_503_rather_than_queueing(client, conn, app):
    await make_petition(conn)
    app.state.print_slots = Slots(0)
    busy = await client.get(f"/p/{SLUG}/print")
    assert busy.status_code == 503 and busy.headers["retry-after"]
    app.state.print_slots = Slots(1)
    assert (await client.get(f"/p/{SLUG}/print")).status_code == 200
    assert app.state.print_slots.taken == 0  # given back when the document is done


async def add_many(conn, pid: int, n: int, country: str = "DE") -> None:
    """`n` verified public individuals, inserted in one statement."""
    await conn.execute(
        """
        INSERT INTO signatures (petition_id, kind, status, display, name, occupation,
                                country, email_hash, verified_at)
        SELECT $1, 'individual', 'verified', 'public', 'Many Signer ' || i, 'Worker',
               $3, sha256(convert_to('many-' || i, 'UTF8')), now() - make_interval(secs => $2 - i)
          FROM generate_series(1, $2) AS i
        """,
        pid,
        n,
        country,
    )


@pytest.mark.slow
async def test_the_head_arrives_before_the_list_is_read(settings, conn):
    """A stream, not a page built whole: the head is sent while the list cannot yet be
    read (its table is locked), and the rows follow when it can."""
    pid = await make_petition(conn)
    await add_many(conn, pid, 5000)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, httpx.AsyncClient(timeout=60) as http:
        locker = conn.transaction()  # hold the rows back from the cursor
        await locker.start()
        await conn.execute("LOCK TABLE signatures IN ACCESS EXCLUSIVE MODE")
        try:
            async with http.stream("GET", f"{base}/p/{SLUG}/print") as response:
                assert response.status_code == 200
                chunks = response.aiter_bytes()
                first = await anext(chunks)
                assert b"Release the detained workers" in first
                assert b"Many Signer" not in first and b"</html>" not in first
                await locker.rollback()
                locker = None
                rest = b"".join([chunk async for chunk in chunks])
        finally:
            if locker is not None:
                await locker.rollback()
    html = (first + rest).decode()
    assert html.count('<tr class="entry"') == 5000
    assert in_order(html, "Many Signer 1<", "Many Signer 2<", "Many Signer 4999<", "</html>")


async def test_linked_from_the_admin_once_published(app, conn):
    from admin_support import admin_client

    await make_petition(conn, status="draft")
    async with admin_client(app, conn, "editor") as editor:
        draft = await editor.get(f"/admin/petitions/{SLUG}/dashboard")
        assert f"/p/{SLUG}/print" not in draft.text
        await conn.execute("UPDATE petitions SET status = 'open'")
        page = await editor.get(f"/admin/petitions/{SLUG}/dashboard")
    assert f'href="http://testserver/p/{SLUG}/print?lang=en"' in page.text


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    from browsers import BROWSER_ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.skip("no chromium on this machine")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield chromium
        await chromium.close()


def pdf_pages(pdf: bytes) -> list[str]:
    import io

    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    return [
        "".join(item.get_text() for item in page if isinstance(item, LTTextContainer))
        for page in extract_pages(io.BytesIO(pdf))
    ]


@pytest.mark.slow
# The PDF's text comes out in visual order: right to left, "3 / 12" reads "12 / 3".
@pytest.mark.parametrize(
    ("lang", "page_number"), [("en", "{n} / {total}"), ("fa", "{total} / {n}")]
)
async def test_printed_pages_are_numbered_and_repeat_the_group_headings(
    browser, settings, conn, lang, page_number
):
    texts = {
        "en": StatementText(title="Free the workers", target="The authorities", body="Now."),
        "fa": StatementText(title="کارگران را آزاد کنید", target="مقامات", body="همین حالا."),
    }
    pid = await create_petition(conn, SLUG, texts, status="open")
    await add_many(conn, pid, 400)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        page = await browser.new_page()
        await page.goto(f"{base}/p/{SLUG}/print?lang={lang}")
        pdf = await page.pdf(prefer_css_page_size=True)
        await page.close()
    pages = pdf_pages(pdf)
    total = len(pages)
    assert total >= 4  # the statement, then 400 entries over several pages
    digits = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹" if lang == "fa" else "0123456789")
    germany = "Germany" if lang == "en" else "آلمان"
    for n, text in enumerate(pages, start=1):
        assert page_number.format(n=n, total=total).translate(digits) in text, (n, text[-200:])
        if n > 1:  # the list starts on page 2; its group's heading heads every page
            # (Arabic script comes out as presentation forms, in visual order)
            shown = unicodedata.normalize("NFKC", text)
            assert germany in shown or germany[::-1] in shown, n


@pytest.mark.slow
async def test_fits_a_phone_screen(browser, settings, conn, client):
    await a_petition_with_signers(conn)
    await add_signature(
        conn, 1, name="Averyveryverylongnamewithoutanyspacesatallinit" * 2, country="GB"
    )
    assert await count_is(client, 14)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        page = await browser.new_page(viewport={"width": 360, "height": 740})
        await page.goto(f"{base}/p/{SLUG}/print")
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        await page.close()
