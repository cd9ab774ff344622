"""Live lists and counters: events across processes, replay, exact counts, restarts."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import asyncpg
import httpx
import pytest

from conftest import SECRET, add_signature, count_is, make_petition, wait_until
from livekit import event_stream, serving
from petitions.app import create_app
from petitions.db import asyncpg_dsn, ensure_database, start_embedded_server, with_database_name
from petitions.migrations import migrate
from petitions.settings import load_settings


def verify_url(app, row) -> str:
    return "/verify/" + app.state.tokens.signature_link("verify", row["public_id"])


async def test_a_signature_verified_through_one_process_appears_on_the_other(settings, conn):
    await make_petition(conn)
    first = create_app(settings, run_outbox_worker=False)
    second = create_app(settings, run_outbox_worker=False)
    async with serving(first) as base_a, serving(second) as base_b:
        async with event_stream(base_b) as stream:
            initial = await stream.next()
            assert initial.kind == "count" and initial.data["count"] == 0
            row = await add_signature(conn, 1, status="pending", name="Farhad Public", country="DE")
            async with httpx.AsyncClient() as http:
                assert (await http.get(base_a + verify_url(first, row))).status_code == 200
            event = await stream.until(lambda e: e.kind == "signature")
            assert event.data["name"] == "Farhad Public"
            assert event.data["id"] == str(row["public_id"])
            assert "email" not in event.data and event.id
            count = await stream.until(lambda e: e.kind == "count")
            assert count.data["count"] == 1
            # Withdrawal reaches the stream too, and the count follows.
            await conn.execute(
                "UPDATE signatures SET status = 'withdrawn' WHERE id = $1", row["id"]
            )
            gone = await stream.until(lambda e: e.kind == "signature")
            assert gone.data == {"id": str(row["public_id"]), "removed": True}
            assert (await stream.until(lambda e: e.kind == "count")).data["count"] == 0


async def test_display_choices_hold_in_the_stream(settings, conn):
    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, event_stream(base) as stream:
        await stream.next()
        hidden = await add_signature(
            conn, 1, status="pending", name="Anon Person", display="anonymous"
        )
        initials = await add_signature(
            conn, 1, status="pending", name="Reza Tehrani", display="initials", occupation="Driver"
        )
        await conn.execute(
            "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1",
            hidden["id"],
        )
        await conn.execute(
            "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1",
            initials["id"],
        )
        event = await stream.until(lambda e: e.kind == "signature")
        assert event.data["initials"] == "R.T." and "name" not in event.data
        assert await stream.until(lambda e: e.kind == "count" and e.data["count"] == 2)
        assert str(hidden["public_id"]) not in str(event.data)


async def test_last_event_id_replays_what_a_client_missed(settings, conn):
    await make_petition(conn)
    rows = [await add_signature(conn, 1, status="pending", name=f"Signer {i}") for i in range(4)]
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, httpx.AsyncClient() as http:
        async with event_stream(base) as stream:
            await http.get(base + verify_url(app, rows[0]))
            seen = await stream.until(lambda e: e.kind == "signature")
            assert seen.data["name"] == "Signer 0"
        # Disconnected: three more are confirmed.
        for row in rows[1:]:
            await http.get(base + verify_url(app, row))
        async with event_stream(base, headers={"Last-Event-ID": seen.id}) as stream:
            names = []
            while len(set(names) - {"Signer 0"}) < 3:
                event = await stream.next()
                if event.kind == "signature":
                    names.append(event.data["name"])
            assert [n for n in names if n != "Signer 0"] == ["Signer 1", "Signer 2", "Signer 3"]
        for bad in ("abc", "-1", "9" * 40):
            response = await http.get(
                f"{base}/p/release-them/events", headers={"Last-Event-ID": bad}
            )
            assert response.status_code == 400


async def test_disconnected_clients_are_released_at_once(settings, conn):
    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base:
        live = app.state.live
        async with event_stream(base) as stream:
            await stream.next()
            assert live.subscriber_count == 1

        async def released():
            return live.subscriber_count == 0

        assert await wait_until(released, 5)


async def test_keepalive_comments(settings, conn, monkeypatch):
    from petitions.views import live as live_views

    monkeypatch.setattr(live_views, "KEEPALIVE_SECONDS", 0.1)
    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, event_stream(base) as stream:
        await stream.next()
        with pytest.raises(TimeoutError):
            await stream.next(0.5)
        assert ": keep-alive" in stream.comments


@pytest.mark.slow  # 1,000 confirmations at once
async def test_a_thousand_parallel_verifications_leave_the_counter_exact(app, client, conn):
    await make_petition(conn)
    await conn.executemany(
        "INSERT INTO signatures (petition_id, kind, name, email, email_hash, country) "
        "VALUES (1, 'individual', $1, $2, $3, $4)",
        [
            (f"P {i}", f"p{i}@example.org", i.to_bytes(32, "big"), ("DE", "IR", "BR", "ZA")[i % 4])
            for i in range(1000)
        ],
    )
    assert (await client.get("/p/release-them/count.json")).json()["count"] == 0  # now cached
    ids = [r["public_id"] for r in await conn.fetch("SELECT public_id FROM signatures")]
    responses = await asyncio.gather(
        *(client.get("/verify/" + app.state.tokens.signature_link("verify", i)) for i in ids)
    )
    assert {r.status_code for r in responses} == {200}
    assert await count_is(client, 1000)
    assert await conn.fetchval("SELECT sum(n) FROM signature_tallies") == 1000
    assert await conn.fetchval("SELECT count(*) FROM signatures WHERE status = 'verified'") == 1000
    page = (await client.get("/p/release-them")).text
    assert "1,000" in page and "Iran" in page


@pytest.fixture
async def private_server(tmp_path):
    """A PostgreSQL of this test's own, which it may restart; migrated, with a petition."""
    # A short path of its own: the server's socket lives in it (socket paths are short).
    pgdata = Path(tempfile.mkdtemp(prefix="petitions-restart-"))
    server = start_embedded_server(pgdata)
    try:
        await ensure_database(server.get_uri(), "petitions")
        url = with_database_name(server.get_uri(), "petitions")
        await migrate(url)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await make_petition(conn)
        await conn.close()
        settings = load_settings(
            {"DATABASE_URL": url, "SECRET_KEY": SECRET, "DATA_DIR": str(tmp_path)}, env_file=None
        )
        yield server, url, settings
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.mark.slow  # starts and restarts a PostgreSQL of its own
async def test_the_listener_survives_a_database_restart(private_server):
    """A private PostgreSQL, restarted under a live stream: events flow again afterwards."""
    server, url, settings = private_server
    conn = await asyncpg.connect(asyncpg_dsn(url))
    row = await add_signature(conn, 1, status="pending", name="After Restart")
    await conn.close()
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, event_stream(base) as stream:
        await stream.next()
        assert app.state.live.connected.is_set()
        await asyncio.to_thread(_restart, server)

        async def reconnected():
            return app.state.live.connections >= 2 and app.state.live.connected.is_set()

        assert await wait_until(reconnected, 30)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await conn.execute(
            "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1",
            row["id"],
        )
        await conn.close()
        event = await stream.until(lambda e: e.kind == "signature", 20)
        assert event.data["name"] == "After Restart"
        assert (await stream.until(lambda e: e.kind == "count", 20)).data["count"] == 1


def _restart(server) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)


@pytest.mark.slow  # starts and restarts a PostgreSQL of its own
async def test_a_database_restart_under_load_gives_503s_not_500s(private_server):
    """Requests in flight while PostgreSQL restarts get 'try again' (503); nothing
    breaks for good, and signing works again as soon as the database is back."""
    import re

    server, url, settings = private_server
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = await http.get("/p/release-them")
        token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
        statuses: list[int] = []
        restarted = asyncio.Event()

        async def load(n: int) -> None:
            mine = token
            i = 0
            while not restarted.is_set() or i < 20:
                i += 1
                for path in ("/p/release-them", "/p/release-them/signatures.json", "/healthz"):
                    answer = await http.get(path)
                    statuses.append(answer.status_code)
                    if path == "/p/release-them" and answer.status_code == 200:
                        # a token carries a few submissions: take this page's own
                        mine = re.search(r'name="form_token" value="([^"]+)"', answer.text)[1]
                response = await http.post(
                    "/p/release-them/sign",
                    data={"form_token": mine, "kind": "individual", "name": f"Load {n}-{i}",
                          "email": f"load-{n}-{i}@example.org", "country": "DE"},
                )  # fmt: skip
                statuses.append(response.status_code)

        async def restart() -> None:
            await wait_until(lambda: len(statuses) >= 40, what="requests under way")
            await asyncio.to_thread(_restart, server)
            restarted.set()

        await asyncio.gather(restart(), *(load(n) for n in range(4)))
        assert set(statuses) <= {200, 303, 503}, sorted(set(statuses))

        async def healthy():
            return (await http.get("/healthz")).status_code == 200

        assert await wait_until(healthy, 30)
        after = await http.post(
            "/p/release-them/sign",
            data={"form_token": token, "kind": "individual", "name": "After",
                  "email": "after@example.org", "country": "DE"},
        )  # fmt: skip
        assert after.status_code == 303
