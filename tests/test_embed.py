"""What other sites use: the embed page, embed.js, the badge, and the framing rules."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from conftest import add_signature, count_is, make_petition, wait_until
from petitions.paths import STATIC_DIR


async def test_embed_form_signs_with_no_cookies_at_all(client, conn):
    await make_petition(conn, goal=100)
    page = await client.get("/p/release-them/embed")
    assert page.status_code == 200
    assert "set-cookie" not in page.headers
    token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
    assert 'action="http://testserver/p/release-them/embed#sign-errors"' in page.text
    client.cookies.clear()
    response = await client.post(
        "/p/release-them/embed",
        data={
            "form_token": token,
            "kind": "individual",
            "name": "Embedded Signer",
            "email": "embedded@example.org",
            "country": "NL",
            "display": "public",
            # The iframe is served from our origin, so its posts carry our origin.
            "ref": "embed",
        },
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "http://testserver/p/release-them/embed?signed=1#main"
    assert "set-cookie" not in response.headers
    assert not client.cookies
    row = await conn.fetchrow("SELECT name, status, ref FROM signatures")
    assert (row["name"], row["status"], row["ref"]) == ("Embedded Signer", "pending", "embed")
    done = await client.get(response.headers["location"])
    assert "Check your email" in done.text and 'name="email"' not in done.text


async def test_embed_errors_stay_in_the_embed(client, conn):
    await make_petition(conn)
    page = await client.get("/p/release-them/embed")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
    response = await client.post(
        "/p/release-them/embed",
        data={
            "form_token": token,
            "kind": "individual",
            "name": "X",
            "email": "bad",
            "country": "NL",
        },
    )
    assert response.status_code == 400
    assert 'class="embed"' in response.text and "does not look like an email" in response.text
    assert "frame-ancestors *" in response.headers["content-security-policy"]


async def test_only_embed_pages_may_be_framed(client, conn):
    await make_petition(conn)
    framed = await client.get("/p/release-them/embed")
    assert "frame-ancestors *" in framed.headers["content-security-policy"]
    assert "x-frame-options" not in framed.headers
    for path in ("/", "/p/release-them", "/p/release-them/signatures", "/p/release-them/thanks",
                 "/p/missing", "/verify/forged"):  # fmt: skip
        response = await client.get(path)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"], path


async def test_counter_only_embed(client, conn):
    pid = await make_petition(conn, goal=100)
    await add_signature(conn, pid)
    page = await client.get("/p/release-them/embed?form=0")
    assert page.status_code == 200
    assert 'name="email"' not in page.text
    assert re.search(r"data-count>\s*1\s*<", page.text)


async def test_badge_is_a_cacheable_svg_with_count_and_goal(client, conn):
    pid = await make_petition(conn, goal=5000)
    for _ in range(3):
        await add_signature(conn, pid)
    badge = await client.get("/p/release-them/badge.svg")
    assert badge.status_code == 200
    assert badge.headers["content-type"].startswith("image/svg+xml")
    assert "public" in badge.headers["cache-control"]
    svg = ElementTree.fromstring(badge.content)
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["signatures", "3 of 5,000"]
    again = await client.get(
        "/p/release-them/badge.svg", headers={"If-None-Match": badge.headers["etag"]}
    )
    assert again.status_code == 304
    assert (await client.get("/p/missing/badge.svg")).status_code == 404


async def test_the_badge_speaks_the_language_asked_for_and_only_that_one(client, conn):
    pid = await make_petition(conn, goal=5000)
    for _ in range(3):
        await add_signature(conn, pid)

    def texts(response):
        svg = ElementTree.fromstring(response.content)
        return [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]

    english = await client.get("/p/release-them/badge.svg", headers={"Accept-Language": "fa"})
    assert texts(english) == ["signatures", "3 of 5,000"]  # other sites' pages: no guessing
    persian = await client.get("/p/release-them/badge.svg?lang=fa")
    label, value = texts(persian)
    assert label != "signatures" and "۳" in value and "۵٬۰۰۰" in value
    assert persian.headers["etag"] != english.headers["etag"]
    odd = await client.get("/p/release-them/badge.svg?lang=%00xx")
    assert odd.status_code == 200 and texts(odd) == ["signatures", "3 of 5,000"]


async def test_embed_js_is_small_and_dependency_free(client):
    response = await client.get("/embed.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert len(response.content) < 5 * 1024
    source = response.text
    assert "import " not in source and "require(" not in source
    assert "[data-petition]" in source and "count.json" in source and "EventSource" in source
    assert (STATIC_DIR / "embed.js").read_bytes() == response.content


async def test_count_json_is_served_from_memory(client, conn, app):
    pid = await make_petition(conn)
    await add_signature(conn, pid)
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 1
    # The tallies change behind the app's back, without a notification: the
    # cached count is served (no count per request) until the next refresh.
    await conn.execute("UPDATE signature_tallies SET n = n + 41")
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 1
    await app.state.live.counts.reconcile()
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 42
    await conn.execute("UPDATE petitions SET goal = 900")
    assert await count_is(client, 900, key="goal")
    await conn.execute("UPDATE petitions SET status = 'draft'")

    async def gone():
        return (await client.get("/p/release-them/count.json")).status_code == 404

    assert await wait_until(gone)


async def test_admin_page_explains_embedding_with_copyable_snippets(app, conn):
    from admin_support import admin_client

    await make_petition(conn)
    async with admin_client(app, conn, "editor") as editor:
        page = await editor.get("/admin/petitions/release-them/embed")
    assert page.status_code == 200
    base = app.state.settings.base_url
    html = page.text
    # Each snippet sits escaped in a read-only textarea, ready to copy.
    assert f"&lt;script src=&#34;{base}/embed.js&#34; async&gt;&lt;/script&gt;" in html
    assert f"{base}/p/release-them/embed?ref=website" in html
    assert f"{base}/p/release-them/badge.svg" in html
    assert f"{base}/p/release-them/count.json" in html
    assert html.count("readonly") >= 5 and 'data-copy="snippet-1"' in html
    assert 'src="http://testserver/p/release-them/embed?ref=admin-preview"' in html
