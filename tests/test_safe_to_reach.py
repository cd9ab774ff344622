"""Safe to reach from where signing is dangerous: no public page loads anything from
another site (checked in the HTML, the stylesheets and the Content-Security-Policy), and
signing, confirming and withdrawing work in a browser with JavaScript off."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from conftest import add_signature, make_petition, wait_until
from livekit import serving
from petitions.app import create_app
from petitions.paths import STATIC_DIR

ORIGIN = "http://testserver"
SLUG = "release-them"


class Resources(HTMLParser):
    """Every address a page makes the browser load, with where it was found."""

    LOADING = {
        "src": None,  # any element: script, img, iframe, audio, video, source, input, embed
        "srcset": None,
        "poster": None,
        "data": {"object"},
        "href": {"link"},
        "action": {"form"},
        "formaction": None,
        "background": None,
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self.css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            tags = self.LOADING.get(name, ())
            if name in self.LOADING and (tags is None or tag in tags):
                urls = (
                    [p.strip().split()[0] for p in value.split(",")]
                    if name == "srcset"
                    else [value]
                )
                self.found += [(f"<{tag} {name}>", url) for url in urls if url]
            if name == "style":
                self.css.append(value)
            if tag == "meta" and name == "content" and "url=" in value.lower():
                self.found.append(("<meta refresh>", value.split("=", 1)[1]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def css_addresses(css: str) -> list[str]:
    urls = re.findall(r"url\(\s*['\"]?([^'\")]+)", css, flags=re.I)
    urls += re.findall(r"@import\s+(?:url\()?\s*['\"]?([^'\"\s);]+)", css, flags=re.I)
    return urls


def same_origin(url: str, page: str) -> bool:
    full = urlsplit(urljoin(page, url))
    return full.scheme in ("http", "https") and f"{full.scheme}://{full.netloc}" == ORIGIN


CSP_SELF_ONLY = ("default-src", "script-src", "style-src", "img-src", "font-src", "connect-src")


def check_csp(header: str, where: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    for name in CSP_SELF_ONLY:
        assert directives.get(name) == ["'self'"], (where, name, directives.get(name))
    assert directives.get("object-src") == ["'none'"], where
    assert directives.get("base-uri") == ["'none'"], where
    assert directives.get("form-action") == ["'self'"], where
    return directives


async def public_pages(client, conn, app, monkeypatch) -> dict[str, object]:
    """Every public page, as its response: a petition with signatures, its forms with a
    dangerous country, the pages behind the links in emails, the error pages."""
    pid = await make_petition(conn, goal=100, dangerous_countries=("IR",))
    await make_petition(conn, "closed-one", status="closed")
    for i in range(6):
        organisation = {"kind": "organisation", "website": "https://union.example.org"}
        await add_signature(
            conn, pid, name=f"Signer {i}", country="IR", comment="Solidarity",
            display=("public", "initials", "anonymous")[i % 3], **(organisation if i % 2 else {}),
        )  # fmt: skip
    pending = await add_signature(conn, pid, status="pending", name="Waiting Signer")
    verified = await add_signature(conn, pid, name="Done Signer")
    tokens = app.state.tokens
    page = (await client.get(f"/p/{SLUG}")).text
    form_token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    responses = {
        "home": await client.get("/"),
        "home in Persian": await client.get("/?lang=fa"),
        "petition": await client.get(f"/p/{SLUG}"),
        "petition with ref": await client.get(f"/p/{SLUG}?ref=newsletter"),
        "closed petition": await client.get("/p/closed-one"),
        "signatures": await client.get(f"/p/{SLUG}/signatures"),
        "signatures filtered": await client.get(f"/p/{SLUG}/signatures?kind=organisation&q=x"),
        "thanks": await client.get(f"/p/{SLUG}/thanks"),
        "embed": await client.get(f"/p/{SLUG}/embed"),
        "embed counter": await client.get(f"/p/{SLUG}/embed?form=0"),
        "embed signed": await client.get(f"/p/{SLUG}/embed?signed=1"),
        "privacy": await client.get("/privacy"),
        "verify": await client.get("/verify/" + tokens.signature_link("verify", pending["public_id"])),
        "verify bad link": await client.get("/verify/not-a-token"),
        "withdraw": await client.get("/withdraw/" + tokens.signature_link("withdraw", verified["public_id"])),
        "withdrawn": await client.post("/withdraw/" + tokens.signature_link("withdraw", verified["public_id"])),
        "unsubscribe": await client.get("/unsubscribe/" + tokens.signature_link("unsubscribe", pending["public_id"])),
        "sign form with errors": await client.post(
            f"/p/{SLUG}/sign", data={"kind": "individual", "country": "IR", "form_token": form_token}
        ),
        "not found": await client.get("/p/no-such-petition"),
        "bad request": await client.get(f"/p/{SLUG}/signatures?after=forged"),
    }  # fmt: skip
    from petitions.views import signing as signing_views

    monkeypatch.setattr(signing_views, "VERIFY_TOKEN_AGE", -1)
    responses["verify expired"] = await client.get(
        "/verify/" + tokens.signature_link("verify", pending["public_id"])
    )
    return responses


async def test_no_public_page_loads_anything_from_another_site(client, conn, app, monkeypatch):
    pages = await public_pages(client, conn, app, monkeypatch)
    stylesheets: set[str] = set()
    for name, response in pages.items():
        assert "text/html" in response.headers["content-type"], name
        parser = Resources()
        parser.feed(response.text)
        assert parser.found, name  # at least the stylesheet
        for where, url in parser.found:
            assert same_origin(url, str(response.url)), (name, where, url)
            if where == "<link href>" and url.endswith(".css"):
                stylesheets.add(urljoin(str(response.url), url))
        for css in parser.css:
            for url in css_addresses(css):
                assert same_origin(url, str(response.url)), (name, "inline css", url)
        frame_ancestors = check_csp(response.headers["content-security-policy"], name)[
            "frame-ancestors"
        ]
        assert frame_ancestors == (["*"] if name.startswith("embed") else ["'none'"]), name
    assert {"verify", "withdraw", "withdrawn", "unsubscribe", "verify expired"} <= set(pages)
    assert pages["verify expired"].status_code == 400
    assert pages["sign form with errors"].status_code == 400
    assert pages["not found"].status_code == 404

    # The stylesheets, and every static file, name no other site either.
    assert stylesheets
    for url in stylesheets:
        css = (await client.get(url)).text
        for address in css_addresses(css):
            assert same_origin(address, url), (url, address)
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".css":
            assert css_addresses(text) == [] or all(
                same_origin(a, ORIGIN + "/static/") for a in css_addresses(text)
            ), path.name
        if path.name in ("petition.js", "live.js"):
            assert not re.search(r"https?://", text), path.name


def test_the_check_sees_what_another_site_would_serve():
    page = """<link rel="stylesheet" href="//fonts.example.net/css"><script src="https://cdn.example/a.js"></script>
    <img srcset="/static/a.png 1x, https://img.example/b.png 2x"><iframe src="http://testserver.evil/"></iframe>
    <div style="background: url('https://t.example/p.gif')"></div><style>@import "https://x.example/s.css";</style>
    <link rel="icon" href="/static/favicon.svg"><a href="https://elsewhere.example/">a link loads nothing</a>"""
    parser = Resources()
    parser.feed(page)
    foreign = [url for _, url in parser.found if not same_origin(url, ORIGIN + "/")]
    foreign += [
        url for css in parser.css for url in css_addresses(css) if not same_origin(url, ORIGIN)
    ]
    assert foreign == [
        "//fonts.example.net/css", "https://cdn.example/a.js", "https://img.example/b.png",
        "http://testserver.evil/", "https://t.example/p.gif", "https://x.example/s.css",
    ]  # fmt: skip


async def test_json_and_other_answers_carry_the_same_policy(client, conn):
    await make_petition(conn)
    for path in ("/p/release-them/count.json", "/p/release-them/signatures.json",
                 "/p/release-them/badge.svg", "/embed.js", "/static/site.css", "/healthz"):  # fmt: skip
        response = await client.get(path)
        assert response.status_code == 200, path
        check_csp(response.headers["content-security-policy"], path)


# In a browser with JavaScript off --------------------------------------------------------


@pytest.mark.slow  # a real browser
async def test_sign_confirm_and_withdraw_with_javascript_off(
    settings, conn, mail_settings, mail_server
):
    """Tor Browser's safest level: no JavaScript. The whole loop still works, and the
    browser asks nothing of any other site."""
    from browsers import BROWSER_ARGS, CHROMIUM

    if CHROMIUM is None:
        pytest.skip("no chromium on this machine")
    from playwright.async_api import async_playwright

    await make_petition(conn, goal=100, dangerous_countries=("IR",))
    app = create_app(mail_settings, run_outbox_worker=True)
    async with serving(app) as base, async_playwright() as p:
        app.state.settings = replace(mail_settings, base_url=base)  # links in emails point here
        app.state.mailer.settings = app.state.settings
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = await browser.new_context(java_script_enabled=False)
        page = await context.new_page()
        page.set_default_timeout(15000)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))

        await page.goto(f"{base}/p/release-them")
        # Without JavaScript the guidance for a dangerous country is simply there.
        assert await page.locator("#ind-guidance").is_visible()
        await page.locator("#ind-name").fill("Nasrin Sotoudeh")
        await page.locator("#ind-email").fill("nasrin@example.org")
        await page.locator("#ind-country").select_option("IR")
        await page.locator("#ind-occupation").fill("Lawyer")
        await page.locator("#sign-individual input[name=display][value=anonymous]").check()
        await page.locator("#sign-individual button[type=submit]").click()
        await page.get_by_role("heading", name="Check your email").wait_for()

        await wait_until(lambda: mail_server.messages, what="the confirmation email")
        text = mail_server.messages[0].get_body(("plain",)).get_content()
        verify = re.search(r"(http://\S+/verify/\S+)", text).group(1)
        withdraw = re.search(r"(http://\S+/withdraw/\S+)", text).group(1)
        await page.goto(verify)
        await page.get_by_role("heading", name="Your signature is confirmed").wait_for()
        assert await conn.fetchval("SELECT status FROM signatures") == "verified"

        await page.goto(withdraw)
        await page.get_by_role("heading", name="Withdraw your signature?").wait_for()
        assert (
            await conn.fetchval("SELECT status FROM signatures") == "verified"
        )  # a GET changes nothing
        await page.get_by_role("button", name="Withdraw my signature").click()
        await page.get_by_role("heading", name="Your signature is withdrawn").wait_for()
        assert await conn.fetchval("SELECT status FROM signatures") == "withdrawn"

        await page.goto(f"{base}/privacy")
        await page.get_by_role("heading", name="How to withdraw").wait_for()
        assert requested and all(url.startswith(base + "/") for url in requested), [
            u for u in requested if not u.startswith(base + "/")
        ]
        assert not any(url.endswith(".js") for url in requested)  # JavaScript was off
        await browser.close()
