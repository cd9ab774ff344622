"""`GET /metrics`: this process's figures in the Prometheus text format.

Each app process answers for itself (scrape every process, or sum them):
requests by route and status, live-stream clients, the listener's state, the
counts it holds in memory, and the outbox backlog read from the database.
"""

from __future__ import annotations

import hmac
import ipaddress
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import raw_connection

disable_created_metrics()  # the "_created" twin of every counter is noise here


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "petitions_http_requests",
            "HTTP requests answered, by route and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        gauge = lambda name, text, labels=(): Gauge(name, text, labels, registry=self.registry)  # noqa: E731
        self.started = gauge("petitions_process_start_time_seconds", "When this process started")
        self.subscribers = gauge("petitions_live_subscribers", "Open event-stream clients")
        self.fell_behind = gauge(
            "petitions_live_fell_behind",
            "Event-stream clients dropped for falling behind, since the process started",
        )
        self.listening = gauge("petitions_live_listener_up", "1 while the LISTEN connection is up")
        self.listener_connections = gauge(
            "petitions_live_listener_connections", "How often the listener has (re)connected"
        )
        self.signatures = gauge(
            "petitions_verified_signatures",
            "Verified signatures of the petitions this process holds in memory",
            ["petition", "kind"],
        )
        self.outbox = gauge("petitions_outbox_emails", "Emails in the outbox", ["status"])
        self.outbox_oldest = gauge(
            "petitions_outbox_oldest_waiting_seconds", "Age of the oldest email still waiting"
        )
        self.started.set(time.time())
        # Each (route, method, status) counter once: `labels()` costs a lock and a tuple
        # of strings on every request.
        self._request_counters: dict[tuple[str, str, int], Counter] = {}

    def count_request(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self.requests.labels(route, method, str(status))
            self._request_counters[key] = counter
        counter.inc()

    async def render(self, request: Request) -> Response:
        refusal = metrics_refusal(request)
        if refusal is not None:
            return refusal
        live = request.app.state.live
        self.subscribers.set(live.subscriber_count)
        self.fell_behind.set(live.fell_behind)
        self.listening.set(1 if live.connected.is_set() else 0)
        self.listener_connections.set(live.connections)
        self.signatures.clear()
        for petition_id in live.counts.cached_ids():
            snapshot = await live.counts.by_id(petition_id)
            if snapshot is not None:
                slug = snapshot.petition.slug
                self.signatures.labels(slug, "individual").set(snapshot.counts.individuals)
                self.signatures.labels(slug, "organisation").set(snapshot.counts.organisations)
        async with raw_connection(request.app.state.db) as conn:
            row = await conn.fetchrow(
                """
                SELECT count(*) FILTER (WHERE status = 'waiting') AS waiting,
                       count(*) FILTER (WHERE status = 'failed') AS failed,
                       extract(epoch FROM now() - min(created_at)
                               FILTER (WHERE status = 'waiting')) AS oldest
                  FROM outbox WHERE status IN ('waiting', 'failed')
                """
            )
        self.outbox.labels("waiting").set(row["waiting"])
        self.outbox.labels("failed").set(row["failed"])
        self.outbox_oldest.set(float(row["oldest"] or 0))
        return Response(
            generate_latest(self.registry),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )


def metrics_refusal(request: Request) -> Response | None:
    """None when the caller may read the figures: from METRICS_NETWORKS (loopback by
    default; the client as uvicorn saw it, through TRUSTED_PROXIES) or with
    `Authorization: Bearer METRICS_TOKEN`. They name petitions and the outbox's backlog,
    which is nobody else's business, and no public page needs them."""
    settings = request.app.state.settings
    if _in_networks(request.client.host if request.client else None, settings.metrics_networks):
        return None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if settings.metrics_token is None:
        return _refuse(403, "Metrics are served to the monitoring networks only.", settings)
    if scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), settings.metrics_token.encode()
    ):
        return None
    return _refuse(401, "Metrics need the bearer token.", settings)


def _in_networks(address: str | None, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def _refuse(status: int, text: str, settings) -> Response:
    headers = {"Cache-Control": "no-store"}
    if settings.metrics_token:
        headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return PlainTextResponse(text + "\n", status, headers=headers)


class RequestCounter:
    """Counts every answered request by its route's path pattern (never the raw path,
    which would let anyone add a label value per URL)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes) -> None:
        self.app = app
        self.metrics = metrics
        # The router records the matched endpoint in the scope; name it by its path.
        self.paths = {getattr(r, "endpoint", None) or r.app: r.path for r in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = self.paths.get(scope.get("endpoint"), "unmatched")
            self.metrics.count_request(route, scope["method"], status)
