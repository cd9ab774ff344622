"""`GET /metrics`: this process's figures in the Prometheus text format."""

from __future__ import annotations

import re
from dataclasses import replace

import asyncpg
import httpx
import pytest

from conftest import add_signature, make_petition, wait_until
from livekit import event_stream, serving
from petitions.app import create_app
from petitions.db import asyncpg_dsn, with_database_name
from petitions.delivery import deliver_due
from petitions.settings import SettingsError, load_settings


def value(text: str, name: str, **labels) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}{{{re.escape(wanted)}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else None


async def test_metrics_report_requests_counts_listener_and_outbox(client, conn, app):
    pid = await make_petition(conn)
    await add_signature(conn, pid, kind="organisation")
    await add_signature(conn, pid)
    await add_signature(conn, pid)
    for _ in range(3):
        assert (await client.get("/p/release-them/count.json")).status_code == 200
    assert (await client.get("/p/missing")).status_code == 404
    await conn.execute(
        "INSERT INTO outbox (purpose, recipient, subject, body_text, created_at) "
        "VALUES ('notice', 'a@example.org', 'Hi', 'Hi', now() - interval '90 seconds')"
    )

    async def listening():
        return app.state.live.connected.is_set()

    assert await wait_until(listening)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    count_route = dict(route="/p/{slug}/count.json", method="GET", status="200")
    assert value(text, "petitions_http_requests_total", **count_route) == 3
    # Unknown addresses are counted under their route pattern, never their raw path.
    assert (
        value(text, "petitions_http_requests_total", route="/p/{slug}", method="GET", status="404")
        == 1
    )
    assert "/p/missing" not in text
    assert (
        value(text, "petitions_verified_signatures", petition="release-them", kind="individual")
        == 2
    )
    assert (
        value(text, "petitions_verified_signatures", petition="release-them", kind="organisation")
        == 1
    )
    assert value(text, "petitions_outbox_emails", status="waiting") == 1
    assert value(text, "petitions_outbox_emails", status="failed") == 0
    assert 90 <= value(text, "petitions_outbox_oldest_waiting_seconds") < 600
    assert value(text, "petitions_live_listener_up") == 1
    assert value(text, "petitions_live_subscribers") == 0
    assert "_created" not in text


async def test_metrics_only_for_allowed_networks_or_the_bearer_token(app):
    def from_address(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    token = "metrics-" + "t" * 32
    async with from_address("203.0.113.7") as outsider, from_address("::1") as local:
        refused = await outsider.get("/metrics")
        assert refused.status_code == 403 and "petitions_" not in refused.text
        assert (await local.get("/metrics")).status_code == 200  # loopback by default

        app.state.settings = replace(app.state.settings, metrics_token=token)
        assert (await outsider.get("/metrics")).status_code == 401
        wrong = await outsider.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
        allowed = await outsider.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200 and "petitions_http_requests_total" in allowed.text

        app.state.settings = replace(
            app.state.settings, metrics_token=None, metrics_networks=("203.0.113.0/24",)
        )
        assert (await outsider.get("/metrics")).status_code == 200
        assert (await local.get("/metrics")).status_code == 403


def test_metrics_settings_are_checked():
    environ = {"SECRET_KEY": "k" * 40, "DATABASE_URL": "postgresql://db/p"}
    settings = load_settings(environ, None)
    assert settings.metrics_networks == ("127.0.0.0/8", "::1/128") and not settings.metrics_token
    custom = load_settings({**environ, "METRICS_NETWORKS": "10.1.0.0/16, 2001:db8::/32"}, None)
    assert custom.metrics_networks == ("10.1.0.0/16", "2001:db8::/32")
    for name, value in (("METRICS_NETWORKS", "10.1.0.0/99"), ("METRICS_TOKEN", "short")):
        with pytest.raises(SettingsError, match=name):
            load_settings({**environ, name: value}, None)


async def scrape(client) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_latency_histogram_counts_requests_under_their_route_pattern(client, conn, app):
    await make_petition(conn)
    assert (await client.get("/p/release-them")).status_code == 200
    assert (await client.get("/p/no-such-petition")).status_code == 404
    assert (await client.get("/nowhere/at/all")).status_code == 404
    for _ in range(2):  # the second from memory (counter_fast_path.py), timed all the same
        assert (await client.get("/p/release-them/count.json")).status_code == 200
    text = await scrape(client)
    name = "petitions_http_request_duration_seconds"
    page = dict(route="/p/{slug}", method="GET")
    assert value(text, f"{name}_count", **page, status_class="2xx") == 1
    assert value(text, f"{name}_count", **page, status_class="4xx") == 1
    assert value(text, f"{name}_bucket", **page, status_class="2xx", le="+Inf") == 1
    assert value(text, f"{name}_sum", **page, status_class="2xx") > 0
    count = dict(route="/p/{slug}/count.json", method="GET", status_class="2xx")
    assert value(text, f"{name}_count", **count) == 2
    assert value(text, f"{name}_count", route="unmatched", method="GET", status_class="4xx") == 1
    # Buckets are cumulative and end with every request.
    buckets = [
        float(m) for m in re.findall(rf'^{name}_bucket{{le="[^"]+",method="GET",'
                                    rf'route="/p/{{slug}}/count.json",status_class="2xx"}} (\S+)$',
                                    text, re.M)
    ]  # fmt: skip
    assert len(buckets) == 14 and buckets == sorted(buckets) and buckets[-1] == 2
    assert "no-such-petition" not in text and "nowhere" not in text


async def test_signatures_by_status_and_kind_move_with_the_signatures(client, conn):
    pid = await make_petition(conn)
    pending = await add_signature(conn, pid, status="pending")
    await add_signature(conn, pid, status="held", kind="organisation")
    await add_signature(conn, pid)
    text = await scrape(client)
    assert value(text, "petitions_database_up") == 1
    signatures = lambda text, status, kind="individual": value(  # noqa: E731
        text, "petitions_signatures", status=status, kind=kind
    )
    assert signatures(text, "pending") == 1 and signatures(text, "verified") == 1
    assert signatures(text, "held", "organisation") == 1
    assert signatures(text, "verified", "organisation") == 0
    assert signatures(text, "withdrawn") == 0 and signatures(text, "rejected") == 0
    await conn.execute(
        "UPDATE signatures SET status = 'verified', verified_at = now() WHERE id = $1",
        pending["id"],
    )
    text = await scrape(client)
    assert signatures(text, "pending") == 0 and signatures(text, "verified") == 2


async def queue_email(conn, recipient: str) -> None:
    await conn.execute(
        "INSERT INTO outbox (purpose, recipient, subject, body_text, created_at) "
        "VALUES ('notice', $1, 'Hi', 'Hi', now() - interval '30 seconds')",
        recipient,
    )


async def test_outbox_depth_and_age_go_to_zero_once_delivered(
    client, conn, app, mail_settings, mail_server
):
    await queue_email(conn, "someone@example.org")
    text = await scrape(client)
    assert value(text, "petitions_outbox_emails", status="waiting") == 1
    assert value(text, "petitions_outbox_oldest_waiting_seconds") >= 30
    assert await deliver_due(app.state.db, mail_settings) == 1
    assert len(mail_server.messages) == 1
    text = await scrape(client)
    assert value(text, "petitions_outbox_emails", status="waiting") == 0
    assert value(text, "petitions_outbox_oldest_waiting_seconds") == 0
    assert value(text, "petitions_outbox_retrying_emails") == 0


async def test_delivery_failures_are_counted_by_smtp_reply(
    client, conn, app, mail_settings, mail_server
):
    class Refusing:
        messages: list = []

        async def handle_RCPT(self, server, session, envelope, address, options):
            if address.startswith("refused@"):
                return "550 No such user"
            if address.startswith("later@"):
                return "451 Try again later"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    mail_server.stop()
    mail_server.inbox = Refusing()
    mail_server.start()

    def failures(text: str, reply: str) -> float:
        return value(text, "petitions_delivery_failures_total", reply=reply) or 0

    before = await scrape(client)
    await queue_email(conn, "refused@example.org")
    await queue_email(conn, "later@example.org")
    assert await deliver_due(app.state.db, mail_settings) == 2
    after = await scrape(client)
    assert failures(after, "550") == failures(before, "550") + 1
    assert failures(after, "451") == failures(before, "451") + 1
    assert value(after, "petitions_outbox_emails", status="failed") == 1
    assert value(after, "petitions_outbox_retrying_emails") == 1
    assert "example.org" not in after  # the reply code only, never the address

    # No server at all: counted as `connect`.
    mail_server.stop()
    await conn.execute("UPDATE outbox SET next_attempt_at = now() WHERE status = 'waiting'")
    assert await deliver_due(app.state.db, mail_settings) == 1
    assert failures(await scrape(client), "connect") == failures(after, "connect") + 1


async def test_event_stream_gauge_goes_up_and_down(settings, conn):
    await make_petition(conn)
    app = create_app(settings, run_outbox_worker=False)
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:

        async def subscribers() -> float | None:
            return value((await http.get("/metrics")).text, "petitions_live_subscribers")

        assert await subscribers() == 0
        async with event_stream(base) as stream:
            await stream.next()
            assert await subscribers() == 1

        async def released():
            return await subscribers() == 0

        assert await wait_until(released, 5)


async def test_metrics_answer_while_the_database_is_away(client, conn, pg_server_url):
    await make_petition(conn)
    assert (await client.get("/p/release-them")).status_code == 200
    name = await conn.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(asyncpg_dsn(with_database_name(pg_server_url, "postgres")))
    try:
        # The database refuses new connections and drops the app's: as in an outage.
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        away = await client.get("/metrics")
        assert away.status_code == 200
        assert value(away.text, "petitions_database_up") == 0
        # What the process knows itself is still there; the database's figures are not.
        assert "petitions_http_request_duration_seconds_count" in away.text
        assert "petitions_outbox_emails" not in away.text
        assert "petitions_signatures{" not in away.text
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()

    async def back():
        return value((await client.get("/metrics")).text, "petitions_database_up") == 1

    assert await wait_until(back, 10)
