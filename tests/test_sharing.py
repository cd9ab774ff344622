"""Sharing: share links with a `ref` per channel, link previews, and the share picture."""

from __future__ import annotations

import io
import re
from html import unescape
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fontpkg.pil import truetype
from PIL import Image, ImageDraw, ImageFont

from admin_support import admin_client
from conftest import add_signature, make_petition, wait_until
from livekit import serving
from petitions.app import create_app
from petitions.i18n import language
from petitions.petitions import StatementText, create_petition
from petitions.share_image import ShareCard, is_arabic, render_card, visual_line
from petitions.sharing import count_step, og_locale, valid_ref
from petitions.views.sharing import count_text

SLUG = "release-them"
BASE = "http://testserver"  # the tests' BASE_URL: absolute addresses never use the Host
PERSIAN_TITLE = "آزادی فوری کارگران زندانی هفت‌تپه"
CHANNEL_HOSTS = {
    "whatsapp": "wa.me",
    "telegram": "t.me",
    "x": "twitter.com",
    "facebook": "www.facebook.com",
}


async def persian_petition(conn, slug="haft-tapeh", **options) -> int:
    texts = {
        "en": StatementText(title="Free the Haft Tapeh workers", summary="Release them now."),
        "fa": StatementText(title=PERSIAN_TITLE, summary="همین حالا آزادشان کنید."),
    }
    return await create_petition(conn, slug, texts, status="open", **options)


def share_hrefs(html: str) -> dict[str, str]:
    """The share box's links by channel (data-ref), unescaped."""
    found = re.findall(r'<a class="share-link share-(\w+)" href="([^"]+)" data-ref="\w+"', html)
    return {channel: unescape(href) for channel, href in found}


def shared_url(channel: str, href: str) -> str:
    """The petition address a channel's link hands over."""
    query = parse_qs(urlsplit(href).query)
    if channel == "whatsapp":
        return query["text"][0].rsplit(" ", 1)[1]
    if channel in ("telegram", "x"):
        return query["url"][0]
    if channel == "facebook":
        return query["u"][0]
    body = unquote(href.split("body=", 1)[1])
    return body.rsplit("\n", 1)[1]


def check_share_box(html: str, slug: str = SLUG, title: str = "Release the detained workers"):
    hrefs = share_hrefs(html)
    assert set(hrefs) == {"whatsapp", "telegram", "x", "facebook", "email"}
    for channel, href in hrefs.items():
        if channel == "email":
            assert href.startswith("mailto:?subject=")
            assert "+" not in href  # RFC 6068: spaces are %20
        else:
            assert urlsplit(href).scheme == "https"
            assert urlsplit(href).netloc == CHANNEL_HOSTS[channel]
        url = urlsplit(shared_url(channel, href))
        assert f"{url.scheme}://{url.netloc}" == BASE
        assert url.path == f"/p/{slug}"
        assert parse_qs(url.query)["ref"] == [channel]
    # Every share link is a navigation the signer chooses, in a new tab, telling nothing.
    for tag in re.findall(r'<a class="share-link[^>]*>', html):
        assert 'rel="noopener noreferrer"' in tag and 'target="_blank"' in tag
    text = parse_qs(urlsplit(hrefs["telegram"]).query)["text"][0]
    assert text == f"I signed: {title}"
    copy = re.search(r'<input id="share-url"[^>]*value="([^"]+)"[^>]*readonly', html)
    assert copy and unescape(copy.group(1)) == f"{BASE}/p/{slug}?ref=copy"
    assert re.search(r'data-share-native data-url="[^"]*ref=share"[^>]*hidden', html)
    assert re.search(r"data-share-copy hidden>Copy link<", html)
    assert 'data-copied="Link copied"' in html


async def test_share_links_on_the_petition_thanks_and_verified_pages(client, conn, app):
    pid = await make_petition(conn)
    check_share_box((await client.get(f"/p/{SLUG}")).text)
    check_share_box((await client.get(f"/p/{SLUG}/thanks")).text)

    pending = await add_signature(conn, pid, status="pending")
    link = "/verify/" + app.state.tokens.signature_link("verify", pending["public_id"])
    confirmed = await client.get(link)
    assert "Your signature is confirmed" in confirmed.text
    check_share_box(confirmed.text)
    # A withdrawn signature's link offers nothing to share.
    withdrawn = await add_signature(conn, pid, status="withdrawn")
    link = "/verify/" + app.state.tokens.signature_link("verify", withdrawn["public_id"])
    assert share_hrefs((await client.get(link)).text) == {}


async def test_shared_addresses_keep_the_language_of_a_translated_petition(client, conn):
    await persian_petition(conn)
    html = (await client.get("/p/haft-tapeh?lang=fa")).text
    hrefs = share_hrefs(html)
    url = urlsplit(shared_url("telegram", hrefs["telegram"]))
    assert parse_qs(url.query) == {"lang": ["fa"], "ref": ["telegram"]}
    text = parse_qs(urlsplit(hrefs["telegram"]).query)["text"][0]
    assert PERSIAN_TITLE in text


async def test_a_signer_from_a_whatsapp_link_counts_under_whatsapp(client, conn, app):
    await make_petition(conn)
    page = (await client.get(f"/p/{SLUG}?ref=whatsapp")).text
    form = page.split('id="sign-individual"', 1)[-1] if 'id="sign-individual"' in page else page
    assert re.search(r'name="ref" value="whatsapp"', form)
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    signed = await client.post(
        f"/p/{SLUG}/sign",
        data={
            "kind": "individual", "name": "Leyla Ahmadi", "email": "leyla@example.org",
            "country": "SE", "display": "public", "ref": "whatsapp", "form_token": token,
        },
    )  # fmt: skip
    assert signed.status_code == 303
    public_id = await conn.fetchval("SELECT public_id FROM signatures")
    assert await conn.fetchval("SELECT ref FROM signatures") == "whatsapp"
    link = "/verify/" + app.state.tokens.signature_link("verify", public_id)
    assert (await client.get(link)).status_code == 200

    async with admin_client(app, conn) as admin:
        dashboard = (await admin.get(f"/admin/petitions/{SLUG}/dashboard")).text
    row = re.search(r"<tr><td><code>whatsapp</code></td><td[^>]*>(\d+)</td></tr>", dashboard)
    assert row and row.group(1) == "1"


@pytest.mark.parametrize("ref", ["bad code", "x" * 65, "<script>", "ref\u202e"])
async def test_a_bad_ref_is_dropped_not_echoed(client, conn, ref):
    await make_petition(conn)
    page = await client.get(f"/p/{SLUG}", params={"ref": ref})
    assert page.status_code == 200
    assert 'name="ref" value=""' in page.text
    og_url = re.search(r'<meta property="og:url" content="([^"]+)"', page.text).group(1)
    assert og_url == f"{BASE}/p/{SLUG}"
    assert valid_ref(ref) is None


def meta(html: str) -> dict[str, str]:
    tags = re.findall(r'<meta (?:property|name)="([^"]+)" content="([^"]*)"', html)
    return {name: unescape(content) for name, content in tags}


async def test_open_graph_and_twitter_card_tags(client, conn):
    await make_petition(conn, goal=100)
    tags = meta((await client.get(f"/p/{SLUG}?ref=facebook")).text)
    assert tags["og:title"] == "Release the detained workers"
    assert tags["og:description"] == "Free them now."
    assert tags["og:type"] == "website"
    # Link previews keep the channel (Facebook's points at og:url), and nothing else.
    assert tags["og:url"] == f"{BASE}/p/{SLUG}?ref=facebook"
    assert tags["og:image"] == f"{BASE}/p/{SLUG}/share.png?lang=en&v=0"
    assert (tags["og:image:width"], tags["og:image:height"]) == ("1200", "630")
    assert tags["og:locale"] == "en_US"
    assert tags["twitter:card"] == "summary_large_image"
    assert tags["twitter:image"] == tags["og:image"]


async def test_link_preview_of_a_persian_page(client, conn):
    await persian_petition(conn)
    html = (await client.get("/p/haft-tapeh?lang=fa")).text
    tags = meta(html)
    assert tags["og:title"] == PERSIAN_TITLE
    assert tags["og:locale"] == "fa_IR"
    assert tags["og:url"] == f"{BASE}/p/haft-tapeh?lang=fa"
    assert urlsplit(tags["og:image"]).path == "/p/haft-tapeh/share.png"
    assert parse_qs(urlsplit(tags["og:image"]).query)["lang"] == ["fa"]
    assert '<link rel="canonical" href="/p/haft-tapeh?lang=fa">' in html


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


async def test_share_image_in_persian_is_a_1200_by_630_png(client, conn):
    await persian_petition(conn, goal=1000)
    persian = await client.get("/p/haft-tapeh/share.png?lang=fa")
    english = await client.get("/p/haft-tapeh/share.png?lang=en")
    for response in (persian, english):
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert png(response.content).size == (1200, 630)
        assert "max-age" in response.headers["cache-control"]
    assert persian.content != english.content
    assert persian.headers["etag"] != english.headers["etag"]
    # Unknown or missing languages fall back to the petition's own.
    assert (await client.get("/p/haft-tapeh/share.png?lang=xx")).content == english.content
    assert (await client.get("/p/haft-tapeh/share.png")).content == english.content


def ink_columns(image: Image.Image, top: int, bottom: int) -> tuple[int, int]:
    """The leftmost and rightmost columns with dark pixels between two rows."""
    box = (
        image.convert("L")
        .crop((0, top, image.width, bottom))
        .point(lambda v: 255 if v < 128 else 0)
    )
    left, _, right, _ = box.getbbox()
    return left, right


def test_persian_is_joined_and_right_to_left():
    line = visual_line(PERSIAN_TITLE, "R")
    # Joined: letters become their contextual presentation forms...
    assert any(0xFE70 <= ord(c) <= 0xFEFF or 0xFB50 <= ord(c) <= 0xFDFF for c in line)
    assert line != PERSIAN_TITLE[::-1]  # ...so it is not merely reversed
    # ...and the joiner controls are gone (fonts draw them as boxes).
    assert "\u200c" not in line
    # In display order: the first word (آزادی) is drawn at the right end.
    assert visual_line("آزادی", "R") == line[-len(visual_line("آزادی", "R")) :]
    # Brackets are mirrored and Latin runs keep their order inside right-to-left text.
    mixed = visual_line("بیانیه (ILO 87)", "R")
    assert mixed.startswith("(ILO 87)")

    card = ShareCard(title="کارگران", count="۱۲ امضا", footer="example.org", rtl=True)
    image = png(render_card(card))
    _, right = ink_columns(image, 80, 200)
    assert right > 1200 - 72 - 8  # a right-to-left title ends at the right margin
    left, _ = ink_columns(png(render_card(ShareCard("Workers", "12", "x"))), 80, 200)
    assert left < 72 + 8  # a left-to-right one starts at the left margin


def test_shaped_and_unshaped_drawings_differ():
    """The picture draws joined letters: the same word drawn letter by letter (what
    Pillow does on its own without libraqm) looks different."""
    font = truetype("noto-sans-arabic", 64, weight=700, layout_engine=ImageFont.Layout.BASIC)

    def drawn(text: str) -> bytes:
        image = Image.new("L", (600, 120), 255)
        ImageDraw.Draw(image).text((10, 90), text, font=font, fill=0, anchor="ls")
        return image.tobytes()

    word = "کارگران"
    assert drawn(visual_line(word, "R")) != drawn(word)
    assert drawn(visual_line(word, "R")) != drawn(word[::-1])
    assert all(is_arabic(c) for c in visual_line(word, "R"))


async def test_share_image_is_cached_and_follows_the_count_by_steps(client, conn, app):
    pid = await persian_petition(conn)
    first = await client.get("/p/haft-tapeh/share.png?lang=fa")
    again = await client.get(
        "/p/haft-tapeh/share.png?lang=fa", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    assert len(app.state.share_images) == 1

    await add_signature(conn, pid)
    moved = await _wait_for_new_etag(client, first.headers["etag"])
    assert moved.content != first.content
    assert len(app.state.share_images) == 2


async def _wait_for_new_etag(client, old: str):
    async def changed():
        response = await client.get("/p/haft-tapeh/share.png?lang=fa")
        return response if response.headers["etag"] != old else None

    return await wait_until(changed, what="a new share picture after a signature")


def test_count_steps():
    assert [count_step(n) for n in (0, 7, 99, 100, 109, 110, 1234, 9999, 12_345, 1_234_567)] == [
        0, 7, 99, 100, 100, 110, 1200, 9900, 12_000, 1_200_000,
    ]  # fmt: skip


def test_open_graph_locales():
    assert [og_locale(code) for code in ("en", "fa", "ar", "ckb", "tr", "fr", "es", "de")] == [
        "en_US", "fa_IR", "ar_EG", "ckb_IQ", "tr_TR", "fr_FR", "es_ES", "de_DE",
    ]  # fmt: skip


async def test_share_image_of_a_draft_or_unknown_petition_is_404(client, conn):
    await make_petition(conn, "a-draft", status="draft")
    assert (await client.get("/p/a-draft/share.png")).status_code == 404
    assert (await client.get("/p/nothing-here/share.png")).status_code == 404
    assert (await client.get("/p/" + "x" * 300 + "/share.png")).status_code == 404


# In a browser ------------------------------------------------------------------------


@pytest.mark.slow  # a real browser
async def test_copy_link_in_a_browser_loads_nothing_from_elsewhere(settings, conn):
    from browsers import BROWSER_ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.skip("no chromium on this machine")
    from playwright.async_api import async_playwright

    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 360, "height": 740})
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
            page = await context.new_page()
            page.set_default_timeout(15000)
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))

            await page.goto(f"{base}/p/{SLUG}/thanks")
            copy = page.get_by_role("button", name="Copy link")
            await copy.click()
            status = page.locator("[data-share-status]")
            await status.filter(has_text="Link copied").wait_for()
            copied = await page.evaluate("navigator.clipboard.readText()")
            assert copied == f"{base}/p/{SLUG}?ref=copy"  # serving() made it BASE_URL

            # "Share…" is there exactly when the browser has the Web Share API.
            has_share = await page.evaluate("typeof navigator.share === 'function'")
            native = page.locator("[data-share-native]")
            assert await native.is_visible() == has_share

            # Following a share link is the signer's choice; the page loaded nothing
            # from another site on its own.
            assert requested and all(url.startswith(base + "/") for url in requested), requested
            assert problems == []
        finally:
            await browser.close()


def test_the_pictures_count_is_written_in_the_languages_digits():
    with language("fa"):
        assert "۱٬۲۰۰" in count_text(1234, 1200, "fa")
    with language("en"):
        assert count_text(1234, 1200, "en") == "Over 1,200 signatures"
        assert count_text(7, 7, "en") == "7 signatures"
        assert count_text(1, 1, "en") == "1 signature"
        assert count_text(0, 0, "en") == "Be one of the first to sign"


@pytest.mark.parametrize(
    "title",
    ["x" * 200, "Release the detained workers now " * 6, "🙂 ✊ 中文 کارگران"],
    ids=["one long word", "too long for four lines", "characters no font has"],
)
def test_any_title_gives_a_picture(title):
    assert png(render_card(ShareCard(title, "12 signatures", "example.org"))).size == (1200, 630)
