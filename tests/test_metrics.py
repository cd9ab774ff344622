"""`GET /metrics`: this process's figures in the Prometheus text format."""

from __future__ import annotations

import re
from dataclasses import replace

import httpx
import pytest

from conftest import add_signature, make_petition, wait_until
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
