"""count.json answered from memory (counter_fast_path.py) says what the route says;
the cheaper middleware keeps every page's security headers and language."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx

from conftest import add_signature, count_is, make_petition
from petitions import counters
from petitions.app import create_app
from petitions.counters import CountCache
from public_pages import make_public_pages

COUNT = "/p/release-them/count.json"
SECURITY = ("x-content-type-options", "referrer-policy", "content-security-policy")


def answer(response) -> tuple:
    """What a client sees of an answer."""
    return response.status_code, list(response.headers.multi_items()), response.content


def was_served_from_memory(app, slug: str = "release-them") -> bool:
    snapshot = app.state.live.counts.cached(slug)
    return snapshot is not None and snapshot.petition.id in _fast_path(app).prepared


def _fast_path(app):
    layer = app.middleware_stack
    while type(layer).__name__ != "CountFastPath":
        layer = layer.app
    return layer


async def test_count_json_from_memory_is_the_routes_answer(client, conn, app):
    pid = await make_petition(conn, goal=500)
    await add_signature(conn, pid)
    await add_signature(conn, pid, kind="organisation")
    # The first request finds no count in memory: the route loads it and answers.
    first = await client.get(COUNT)
    assert not was_served_from_memory(app)
    second = await client.get(COUNT)
    assert was_served_from_memory(app)
    assert answer(second) == answer(first)
    headers = second.headers
    assert second.json()["count"] == 2 and headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-expose-headers"] == "ETag"
    assert headers["cache-control"] == "public, max-age=10, stale-while-revalidate=30"
    assert headers["content-length"] == str(len(second.content))
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert all(headers[name] for name in SECURITY)
    # A HEAD gets the same headers.
    head = await client.head(COUNT)
    assert head.status_code == 200 and list(head.headers.multi_items()) == list(
        headers.multi_items()
    )


async def test_count_json_answers_304_to_its_etag_from_memory_as_from_the_route(client, conn, app):
    pid = await make_petition(conn)
    await add_signature(conn, pid)
    etag = (await client.get(COUNT)).headers["etag"]
    assert was_served_from_memory(app) or (await client.get(COUNT)).status_code == 200
    for if_none_match in (etag, f'W/"other", {etag}'):
        from_memory = await client.get(COUNT, headers={"If-None-Match": if_none_match})
        assert from_memory.status_code == 304 and from_memory.content == b""
        assert from_memory.headers["etag"] == etag
        assert "content-type" not in from_memory.headers
        assert from_memory.headers["access-control-allow-origin"] == "*"
        assert all(from_memory.headers[name] for name in SECURITY)
    other = await client.get(COUNT, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.headers["etag"] == etag
    # The route's 304 (a process that does not hold the count yet) is the same answer.
    app.state.live.counts.forget(pid)
    from_route = await client.get(COUNT, headers={"If-None-Match": etag})
    again = await client.get(COUNT, headers={"If-None-Match": etag})
    assert was_served_from_memory(app)
    assert answer(from_route) == answer(again) and from_route.status_code == 304


async def test_a_new_count_gets_a_new_etag_soon_after_a_confirmation(client, conn, app):
    pid = await make_petition(conn)
    await add_signature(conn, pid)
    before = await client.get(COUNT)
    await client.get(COUNT)
    assert was_served_from_memory(app)
    await add_signature(conn, pid, status="pending")
    await add_signature(conn, pid, status="verified")  # a confirmation, as the trigger sees it
    assert await count_is(client, 2)
    after = await client.get(COUNT, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.json()["count"] == 2
    assert after.headers["etag"] != before.headers["etag"]
    assert was_served_from_memory(app)


async def test_what_is_not_in_memory_still_gets_the_routes_404(client, conn, app):
    await make_petition(conn, slug="a-draft", status="draft")
    for _ in range(2):  # the draft's summary is in memory after the first
        draft = await client.get("/p/a-draft/count.json")
        assert draft.status_code == 404 and draft.json()["error"]
    unknown = await client.get("/p/no-such-thing/count.json")
    assert unknown.status_code == 404 and unknown.json()["error"]
    assert (await client.get("/p/a/b/count.json")).status_code == 404
    # In the visitor's language, as every error.
    persian = await client.get("/p/no-such-thing/count.json", headers={"Accept-Language": "fa"})
    assert persian.status_code == 404 and persian.json()["error"] != unknown.json()["error"]


async def test_counts_from_memory_are_counted_refused_for_other_hosts_and_bodies_capped(
    client, conn, app
):
    pid = await make_petition(conn)
    await add_signature(conn, pid)
    await client.get(COUNT)
    etag = (await client.get(COUNT)).headers["etag"]
    await client.get(COUNT, headers={"If-None-Match": etag})
    assert was_served_from_memory(app)
    metrics = (await client.get("/metrics")).text
    route = 'route="/p/{slug}/count.json"'
    assert f'petitions_http_requests_total{{method="GET",{route},status="200"}} 2.0' in metrics
    assert f'petitions_http_requests_total{{method="GET",{route},status="304"}} 1.0' in metrics
    # The Host check comes first, for counts in memory too.
    assert (await client.get(COUNT, headers={"Host": "evil.example"})).status_code == 400
    # A request that announces a body goes through the body limit, as before.
    huge = await client.request("GET", COUNT, content=b"x" * 200_000)
    assert huge.status_code == 413


async def test_every_public_page_keeps_its_security_headers(client, conn, app):
    paths = await make_public_pages(conn, app.state.tokens)
    checked = 0
    for name, path in paths.items():
        response = await client.get(path)
        assert response.status_code < 500, name  # among them a 404 page and a bad link
        headers = response.headers
        assert all(headers.get(header) for header in SECURITY), name
        if response.headers["content-type"].startswith("text/html"):
            checked += 1
            framable = path.endswith("/embed") or "/embed?" in path
            assert ("frame-ancestors *" if framable else "frame-ancestors 'none'") in headers[
                "content-security-policy"
            ], name
            assert (headers.get("x-frame-options") == "DENY") != framable, name
    assert checked >= 5


async def test_count_json_from_memory_carries_hsts_under_https(settings, conn):
    pid = await make_petition(conn)
    await add_signature(conn, pid)
    https_app = create_app(replace(settings, base_url="https://testserver"), False)
    async with https_app.router.lifespan_context(https_app):
        transport = httpx.ASGITransport(app=https_app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as https:
            first, second = await https.get(COUNT), await https.get(COUNT)
            assert was_served_from_memory(https_app)
            assert answer(first) == answer(second)
            assert second.headers["strict-transport-security"] == "max-age=31536000"


async def test_an_older_read_of_the_counts_never_replaces_a_newer_one(app, conn, monkeypatch):
    """After the database comes back, the listener's catch-up and a pass of events both
    re-read the counts at once; the read that answers last must not be the stale one."""
    await make_petition(conn)
    counts = CountCache(app.state.db)
    assert (await counts.by_id(1)).counts.total == 0
    await add_signature(conn, 1)
    first_read_done, let_it_answer = asyncio.Event(), asyncio.Event()
    real = counters.get_counts_for

    async def first_read_answers_late(db, ids):
        result = await real(db, ids)
        if not first_read_done.is_set():
            first_read_done.set()
            await let_it_answer.wait()
        return result

    monkeypatch.setattr(counters, "get_counts_for", first_read_answers_late)
    older = asyncio.create_task(counts.reconcile())  # reads 1, answers last
    await first_read_done.wait()
    await add_signature(conn, 1)
    await counts.refresh([1])  # reads 2
    let_it_answer.set()
    await older
    assert (await counts.by_id(1)).counts.total == 2
