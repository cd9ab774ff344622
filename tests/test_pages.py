"""Public pages and JSON: what a visitor, an embedder and a crawler see."""

from __future__ import annotations

import re
from dataclasses import replace

from conftest import (
    add_signature,
    count_is,
    make_petition,
    minutes_ago,
    without_form_tokens,
)


async def test_home_lists_open_petitions_not_drafts(client, conn):
    await make_petition(conn, "open-one", title="Open statement")
    await make_petition(conn, "draft-one", status="draft", title="Secret draft")
    page = await client.get("/")
    assert page.status_code == 200
    assert "Open statement" in page.text
    assert "Secret draft" not in page.text
    assert (await client.get("/p/draft-one")).status_code == 404


async def test_petition_page_shows_statement_demands_forms_and_signatories(client, conn):
    pid = await make_petition(conn, goal=1000)
    await add_signature(conn, pid, name="Maryam Public", country="FR", occupation="Nurse")
    await add_signature(
        conn, pid, kind="organisation", organisation="Dockers Union of Ruritania", country="DE"
    )
    page = await client.get("/p/release-them")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Release the detained workers</h1>" in html
    assert "<strong>workers</strong>" in html  # Markdown rendered
    assert "<script>alert(1)</script>" not in html  # and sanitised
    assert "Drop all charges" in html
    assert "Maryam Public" in html and "Dockers Union of Ruritania" in html
    assert 'max="1000" value="2"' in html  # progress towards the goal
    assert "France" in html and "Germany" in html  # counts by country
    # Both sign forms, with the contract's field names, post to the sign route.
    assert html.count('action="http://testserver/p/release-them/sign#sign-errors"') == 2
    for field in ("kind", "name", "email", "country", "city", "occupation", "organisation",
                  "organisation_type", "website", "members", "comment", "display", "updates", "ref"):  # fmt: skip
        assert f'name="{field}"' in html, field
    assert 'value="individual"' in html and 'value="organisation"' in html


async def test_unknown_slug_is_a_404_page(client):
    for path in ("/p/no-such-petition", "/p/no-such-petition/signatures"):
        page = await client.get(path)
        assert page.status_code == 404
        assert "text/html" in page.headers["content-type"]
        assert "There is no petition at this address" in page.text
    page = await client.get("/p/no-such-petition/signatures.json")
    assert page.status_code == 404
    assert page.json()["error"]


def name_every_country(app) -> None:
    """PUBLIC_MIN_GROUP=1: these tests have one or two signers per country, and test
    something else than the threshold (tests/test_disclosure.py tests that)."""
    app.state.settings = replace(app.state.settings, public_min_group=1)


async def test_display_choices_are_honoured_in_lists(client, conn, app):
    name_every_country(app)
    pid = await make_petition(conn)
    await add_signature(conn, pid, name="Alice Public", email="alice@example.org")
    await add_signature(
        conn, pid, name="Hossein Karimi", display="initials", occupation="Teacher", country="IR"
    )
    await add_signature(conn, pid, name="Nobody Knows", display="anonymous")
    await add_signature(conn, pid, name="Still Pending", status="pending")

    data = (await client.get("/p/release-them/signatures.json")).json()
    assert len(data["signatures"]) == 2
    by_name = {e.get("name") or e.get("initials"): e for e in data["signatures"]}
    assert set(by_name) == {"Alice Public", "H.K."}
    assert by_name["H.K."] == {
        "id": by_name["H.K."]["id"],
        "kind": "individual",
        "country": "IR",
        "signed_at": by_name["H.K."]["signed_at"],
        "initials": "H.K.",
        "occupation": "Teacher",
    }
    html = (await client.get("/p/release-them/signatures")).text
    assert "Alice Public" in html and "H.K." in html
    for hidden in ("Hossein", "Karimi", "Nobody Knows", "Still Pending"):
        assert hidden not in html
        assert hidden not in (await client.get("/p/release-them/signatures.json")).text
    # A search cannot find what a signer chose to hide.
    found = await client.get("/p/release-them/signatures.json", params={"q": "Karimi"})
    assert found.json()["signatures"] == []
    # The count still includes the initials and anonymous signers.
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 3


async def test_json_lists_never_contain_emails(client, conn):
    pid = await make_petition(conn)
    emails = []
    for i in range(30):
        email = f"person{i}@unions.example"
        emails.append(email)
        await add_signature(conn, pid, email=email, kind="organisation" if i % 3 else "individual",
                            display=("public", "initials", "anonymous")[i % 3])  # fmt: skip
    body = (await client.get("/p/release-them/signatures.json?limit=100")).text
    assert "@" not in body
    page = (await client.get("/p/release-them/signatures")).text
    for email in emails:
        assert email not in page


async def test_public_ids_are_opaque(client, conn):
    pid = await make_petition(conn)
    row = await add_signature(conn, pid)
    entry = (await client.get("/p/release-them/signatures.json")).json()["signatures"][0]
    assert entry["id"] == str(row["public_id"])
    assert entry["id"] != str(row["id"])
    assert re.fullmatch(r"[0-9a-f-]{36}", entry["id"])


async def test_keyset_pagination_never_repeats_or_skips_while_rows_arrive(client, conn):
    pid = await make_petition(conn)
    # 120 signatures, several sharing one verification time (ties broken by id).
    for i in range(120):
        await add_signature(conn, pid, name=f"Early {i}", verified_at=minutes_ago(200 - i // 4))
    existing = {r["public_id"] for r in await conn.fetch("SELECT public_id FROM signatures")}

    seen: list[str] = []
    url = "/p/release-them/signatures.json?limit=25"
    pages = 0
    while url:
        data = (await client.get(url)).json()
        seen += [e["id"] for e in data["signatures"]]
        # New signatures arrive between page loads; they belong before page 1.
        for j in range(3):
            await add_signature(conn, pid, name=f"Late {pages}-{j}")
        url = data["next"]
        pages += 1
    assert len(seen) == len(set(seen)), "a signature was listed twice"
    assert {str(x) for x in existing} == set(seen), "a signature was skipped"
    assert pages == 5


async def test_list_filters(client, conn, app):
    name_every_country(app)
    pid = await make_petition(conn)
    await add_signature(conn, pid, kind="organisation", organisation="Teachers Union", country="IR")
    await add_signature(conn, pid, name="Jean Dupont", country="FR", city="Lyon")
    await add_signature(conn, pid, name="Ana Silva", country="BR")

    async def names(**params):
        data = (await client.get("/p/release-them/signatures.json", params=params)).json()
        return sorted(e.get("organisation") or e["name"] for e in data["signatures"])

    assert await names(kind="organisation") == ["Teachers Union"]
    assert await names(kind="individual") == ["Ana Silva", "Jean Dupont"]
    assert await names(country="fr") == ["Jean Dupont"]
    assert await names(q="lyon") == ["Jean Dupont"]
    assert await names(q="teachers") == ["Teachers Union"]
    assert await names(q="%") == []  # wildcards are literal
    html = (await client.get("/p/release-them/signatures", params={"country": "BR"})).text
    assert "Ana Silva" in html and "Jean Dupont" not in html


async def test_bad_list_parameters_are_400_not_500(client, conn):
    await make_petition(conn)
    bad = [
        {"after": "not-a-cursor"},
        {"after": "!!!"},
        {"after": "MTIzNDU2Nzg5"},
        {"after": "x" * 500},
        {"kind": "robot"},
        {"country": "XX"},
        {"country": "Iran"},
        {"q": "a" * 101},
        {"q": "nul\x00byte"},
        {"limit": "0"},
        {"limit": "-5"},
        {"limit": "1e9"},
    ]
    for params in bad:
        for path in ("/p/release-them/signatures.json", "/p/release-them/signatures"):
            response = await client.get(path, params=params)
            assert response.status_code == 400, (path, params, response.status_code)
            if path.endswith(".json"):
                assert response.json()["error"]
            else:
                assert "could not be understood" in response.text


async def test_count_json_shape_cors_and_etag(client, conn):
    pid = await make_petition(conn, goal=500)
    await add_signature(conn, pid)
    await add_signature(conn, pid, kind="organisation")
    await add_signature(conn, pid, status="pending")
    response = await client.get("/p/release-them/count.json")
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"slug", "count", "individuals", "organisations", "goal", "updated_at"}
    assert (data["slug"], data["count"], data["individuals"], data["organisations"], data["goal"]) == (
        "release-them", 2, 1, 1, 500,
    )  # fmt: skip
    assert response.headers["access-control-allow-origin"] == "*"
    assert "max-age" in response.headers["cache-control"]
    etag = response.headers["etag"]
    again = await client.get("/p/release-them/count.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    await add_signature(conn, pid)
    assert await count_is(client, 3)
    changed = await client.get("/p/release-them/count.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["count"] == 3


async def test_counts_follow_status_changes(client, conn, app):
    name_every_country(app)
    pid = await make_petition(conn)
    row = await add_signature(conn, pid, country="IR")
    await add_signature(conn, pid, country="IR")
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 2
    await conn.execute("UPDATE signatures SET status = 'withdrawn' WHERE id = $1", row["id"])
    assert await count_is(client, 1)
    html = (await client.get("/p/release-them")).text
    assert re.search(r'Iran</bdi></a> <bdi class="n">1</bdi>', html)


async def test_healthz_and_static_files(client):
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}
    css = await client.get("/static/site.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


async def test_security_headers_and_framing(client, conn):
    await make_petition(conn)
    page = await client.get("/p/release-them")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"]


async def test_oversized_bodies_are_refused(client, conn):
    await make_petition(conn)
    response = await client.post("/p/release-them/sign", content=b"x" * 200_000)
    assert response.status_code == 413


async def test_closed_petition_shows_no_forms(client, conn):
    await make_petition(conn, status="closed")
    html = (await client.get("/p/release-them")).text
    assert "no longer accepts signatures" in html
    assert 'name="email"' not in html


async def test_translation_is_served_by_lang(client, conn):
    pid = await make_petition(conn)
    version_id = await conn.fetchval(
        "SELECT id FROM statement_versions WHERE petition_id = $1", pid
    )
    await conn.execute(
        "INSERT INTO statement_texts (version_id, language, title, body, demands) "
        "VALUES ($1, 'fa', 'کارگران را آزاد کنید', 'متن', ARRAY['آزادی'])",
        version_id,
    )
    html = (await client.get("/p/release-them?lang=fa")).text
    assert "کارگران را آزاد کنید" in html
    assert 'dir="rtl"' in html
    english = (await client.get("/p/release-them?lang=xx")).text
    assert "Release the detained workers" in english


async def test_busy_pages_are_rendered_once_per_moment(client, conn, app):
    pid = await make_petition(conn)
    app.state.page_cache.seconds = 60  # a long "moment", so a slow machine cannot race it
    first = await client.get("/p/release-them")
    await add_signature(conn, pid, name="Arrived Later")
    again = await client.get("/p/release-them")
    assert without_form_tokens(again.text) == without_form_tokens(first.text)  # cached
    assert "Arrived Later" not in again.text
    app.state.page_cache.seconds = 0  # the moment passes
    app.state.page_cache._pages.clear()
    assert "Arrived Later" in (await client.get("/p/release-them")).text
    # Failed lookups are not cached, and every query string is its own page.
    assert (await client.get("/p/nothing-here")).status_code == 404
    assert (await client.get("/p/release-them?ref=union-site")).status_code == 200


NASTY_PATHS = [
    "/p/%00", "/p/" + "a" * 5000, "/p/%ff%fe", "/p/<script>", "/p/%00/count.json",
    "/p/%00/badge.svg", "/p/%00/events", "/p/%00/embed", "/p/%00/signatures.json",
    "/p/release-them?lang=%00", "/p/release-them?lang=" + "x" * 5000, "/?lang=%00",
    "/p/release-them/signatures?lang=%00", "/p/release-them/embed?lang=%00&ref=%00",
    "/p/release-them?ref=%00", "/p/release-them/signatures.json?q=%ef%bf%bf",
    "/verify/%00", "/withdraw/%00", "/unsubscribe/%00", "/static/%2e%2e/%2e%2e/etc/passwd",
    "/p/release-them/events?last_event_id=%00", "/admin/petitions/%00",
]  # fmt: skip


async def test_nasty_paths_and_parameters_never_reach_a_500(client, conn):
    await make_petition(conn)
    for path in NASTY_PATHS:
        response = await client.get(path)
        assert response.status_code < 500, (path, response.status_code)
    for path in ("/p/%00/sign", "/p/%00/embed", "/withdraw/%00", "/unsubscribe/%00"):
        response = await client.post(path, data={"name": "\x00"})
        assert 400 <= response.status_code < 500, (path, response.status_code)
