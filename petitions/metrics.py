"""`GET /metrics`: this process's figures in the Prometheus text format.

Each app process answers for itself (scrape every process, or sum them):
requests by route and status and how long they took, live-stream clients, the
listener's state, the counts it holds in memory, the email deliveries that failed in
this process; and, read from the database at scrape time, signatures by status and
the outbox backlog. docs/operations.md ("Metrics and logs") lists every family.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from bisect import bisect_left
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import raw_connection
from .logs import KNOWN_METHODS

log = logging.getLogger(__name__)

disable_created_metrics()  # the "_created" twin of every counter is noise here

# Request latency buckets, in seconds: from a count answered from memory to a slow export.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The scrape's reads from the database: bounded, so a slow or absent database makes
# /metrics answer without those figures (and petitions_database_up 0), never hang.
SCRAPE_STATEMENT_TIMEOUT_MS = 2000
SCRAPE_TIMEOUT_SECONDS = 3.0


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
        # Labelled by the replica's place in DATABASE_REPLICA_URL, never its address.
        self.replica_lag = gauge(
            "petitions_replica_lag_seconds",
            "How far each read replica is behind the primary (absent while it is out of reach)",
            ["replica"],
        )
        self.replica_up = gauge(
            "petitions_replica_up",
            "1 while a read replica answers within REPLICA_MAX_LAG",
            ["replica"],
        )
        self.started.set(time.time())
        self.latency = RequestLatency()
        self.database = DatabaseFigures()
        for collector in (self.latency, self.database, DELIVERY_FAILURES):
            self.registry.register(collector)
        # Each (route, method, status) counter and histogram once: `labels()` costs a
        # lock and a tuple of strings on every request.
        self._request_figures: dict[tuple[str, str, int], tuple[Counter, _Histogram]] = {}

    def count_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request: `seconds` from its arrival to its response's start."""
        key = (route, method, status)
        figures = self._request_figures.get(key)
        if figures is None:
            label = method if method in KNOWN_METHODS else "other"
            figures = (
                self.requests.labels(route, label, str(status)),
                self.latency.histogram(route, label, f"{status // 100}xx"),
            )
            self._request_figures[key] = figures
        figures[0].inc()
        figures[1].observe(seconds)

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
        self.database.read = await read_database_figures(request.app.state.db)
        self._replica_figures(request.app.state.replicas)
        return Response(
            generate_latest(self.registry),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    def _replica_figures(self, replicas) -> None:
        self.replica_lag.clear()
        self.replica_up.clear()
        for replica in replicas.replicas if replicas is not None else ():
            label = str(replica.index)
            if replica.lag is not None:
                self.replica_lag.labels(label).set(replica.lag)
            up = replica.lag is not None and replica.lag <= replicas.max_lag
            self.replica_up.labels(label).set(1 if up else 0)


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
        started = time.perf_counter()
        seconds = None

        async def counting_send(message: Message) -> None:
            nonlocal status, seconds
            if message["type"] == "http.response.start":
                status = message["status"]
                # Up to the headers: an event stream's or an export's length is no latency.
                seconds = time.perf_counter() - started
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = self.paths.get(scope.get("endpoint"), "unmatched")
            if seconds is None:
                seconds = time.perf_counter() - started
            self.metrics.count_request(route, scope["method"], status, seconds)


class _Histogram:
    """One latency histogram's buckets (not cumulative) and sum. Plain numbers: the
    event loop is the only writer, and observing must stay cheap on the count.json fast
    path, where prometheus_client's Histogram (a lock and a bucket walk) costs more."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class RequestLatency:
    """`petitions_http_request_duration_seconds` by route pattern, method and status class."""

    def __init__(self) -> None:
        self._histograms: dict[tuple[str, str, str], _Histogram] = {}

    def histogram(self, route: str, method: str, status_class: str) -> _Histogram:
        return self._histograms.setdefault((route, method, status_class), _Histogram())

    def collect(self):
        family = HistogramMetricFamily(
            "petitions_http_request_duration_seconds",
            "Time from a request's arrival to its response's headers, by route pattern, "
            "method and status class",
            labels=["route", "method", "status_class"],
        )
        bounds = [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for labels, histogram in list(self._histograms.items()):
            cumulative = list(zip(bounds, accumulate(histogram.buckets), strict=True))
            family.add_metric(list(labels), cumulative, histogram.sum)
        yield family


class DeliveryFailures:
    """`petitions_delivery_failures_total`: failed SMTP deliveries in this process, by
    the server's 3-digit reply code, or `connect` / `timeout` when there was no reply.
    One per process: the outbox worker counts here whichever app it runs beside."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, error: BaseException) -> None:
        reason = delivery_failure_reason(error)
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def collect(self):
        family = CounterMetricFamily(
            "petitions_delivery_failures",
            "Failed email deliveries (connections, refused messages), by SMTP reply code",
            labels=["reply"],
        )
        for reply, n in sorted(self.counts.items()):
            family.add_metric([reply], n)
        yield family


def delivery_failure_reason(error: BaseException) -> str:
    """A bounded label for an SMTP failure: the reply code, never the address it names."""
    code = getattr(error, "code", None)
    recipients = getattr(error, "recipients", None)  # SMTPRecipientsRefused: one per address
    if recipients:
        code = getattr(recipients[0], "code", None)
    if isinstance(code, int) and 200 <= code <= 599:
        return str(code)
    if isinstance(error, TimeoutError):
        return "timeout"
    return "connect"


DELIVERY_FAILURES = DeliveryFailures()
count_delivery_failure = DELIVERY_FAILURES.count


SIGNATURE_KINDS = ("individual", "organisation")
# Erased signatures (withdrawn ones whose personal data is gone) are left out: they
# only ever grow, and nobody acts on them.
SIGNATURE_STATUSES = ("pending", "verified", "held", "rejected", "withdrawn")

_OUTBOX_FIGURES = """
SELECT count(*) FILTER (WHERE status = 'waiting') AS waiting,
       count(*) FILTER (WHERE status = 'waiting' AND attempts > 0) AS retrying,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'waiting')) AS oldest
  FROM outbox
 WHERE status IN ('waiting', 'failed')
"""

# Verified signatures come from the tallies the triggers keep (a few rows per petition
# and country); the other statuses through the (petition_id, status) index, petition by
# petition, so the read grows with them and not with every verified signature.
_SIGNATURE_FIGURES = """
SELECT 'verified' AS status, kind, sum(n)::bigint AS n
  FROM signature_tallies
 GROUP BY kind
UNION ALL
SELECT s.status, s.kind, count(*)
  FROM petitions p
 CROSS JOIN LATERAL (
       SELECT status, kind FROM signatures
        WHERE petition_id = p.id AND status IN ('pending', 'held', 'rejected', 'withdrawn')
       ) AS s
 GROUP BY 1, 2
"""


async def read_database_figures(db) -> dict | None:
    """What the scrape reads from the database; None when it cannot (it is down,
    restarting, or slower than the scrape's bounds)."""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
            async with raw_connection(db) as conn, conn.transaction(readonly=True):
                await conn.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
                outbox = await conn.fetchrow(_OUTBOX_FIGURES)
                signatures = await conn.fetch(_SIGNATURE_FIGURES)
    except Exception as error:  # any failure of the database: report it down, not a 500
        log.warning("metrics: the database did not answer (%s)", type(error).__name__)
        return None
    counts = {(status, kind): 0 for status in SIGNATURE_STATUSES for kind in SIGNATURE_KINDS}
    for row in signatures:
        counts[(row["status"], row["kind"])] = row["n"] or 0
    return {"outbox": outbox, "signatures": counts}


class DatabaseFigures:
    """The figures read from the database at the last scrape, and whether it answered.
    When it did not, its families are left out rather than repeated stale."""

    def __init__(self) -> None:
        self.read: dict | None = None

    def collect(self):
        up = GaugeMetricFamily(
            "petitions_database_up", "1 when the database answered this scrape's reads"
        )
        up.add_metric([], 1 if self.read else 0)
        yield up
        if not self.read:
            return
        outbox = self.read["outbox"]
        emails = GaugeMetricFamily(
            "petitions_outbox_emails", "Emails in the outbox", labels=["status"]
        )
        emails.add_metric(["waiting"], outbox["waiting"])
        emails.add_metric(["failed"], outbox["failed"])
        yield emails
        yield GaugeMetricFamily(
            "petitions_outbox_retrying_emails",
            "Emails waiting after at least one failed attempt",
            value=outbox["retrying"],
        )
        yield GaugeMetricFamily(
            "petitions_outbox_oldest_waiting_seconds",
            "Age of the oldest email still waiting",
            value=float(outbox["oldest"] or 0),
        )
        signatures = GaugeMetricFamily(
            "petitions_signatures",
            "Signatures of all petitions by status and kind (erased ones left out)",
            labels=["status", "kind"],
        )
        for (status, kind), n in self.read["signatures"].items():
            signatures.add_metric([status, kind], n)
        yield signatures
