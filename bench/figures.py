"""The figures of issue 13's table, each against its baseline measured in the same run."""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import data
from servers import (
    HERE,
    PETITIONS,
    SLUG,
    Cluster,
    Server,
    bare_server,
    petitions_server,
    process_memory,
)
from wrk import WrkResult, run_wrk

SMALL = "bench_small"  # the demo petition and a pool of pending signatures
LARGE = "bench_large"  # the demo petition with a million signatures
ADMIN = "bench-admin@example.org"


@dataclass
class Plan:
    quick: bool
    duration: float  # seconds of each measured load
    connections: int  # wrk -c for the throughput figures
    large_signatures: int
    list_page: int
    event_clients: tuple[int, int]  # the figure, and the large count
    event_commits: tuple[int, int]
    event_rate: tuple[float, float]  # commits a second
    sign_limits: str  # "spread" or "off"
    work: Path  # scratch files (tokens, links)

    @classmethod
    def make(cls, quick: bool, duration: float | None, sign_limits: str, work: Path) -> Plan:
        if quick:
            return cls(True, duration or 2, 64, 20_000, 100, (100, 300), (10, 5), (10, 5),
                       sign_limits, work)  # fmt: skip
        return cls(False, duration or 20, 64, 1_000_000, 1000, (1000, 10_000), (100, 30),
                   (5, 1), sign_limits, work)  # fmt: skip

    @property
    def warmup(self) -> float:
        return 1 if self.quick else 3

    @property
    def pending_pool(self) -> int:
        """Pending signatures to confirm: the HTTP run, the raw UPDATE run, the streams."""
        return int(self.duration * (HTTP_CONFIRMS + RAW_CONFIRMS)) + sum(self.event_commits)


# Confirmations a second each side can use up: beyond, its figure says it ran out.
HTTP_CONFIRMS = 2_500
RAW_CONFIRMS = 6_000


@dataclass
class Figure:
    key: str
    title: str
    goal: str
    app: str = ""
    baseline: str = ""
    ratio: float | None = None
    value: str = ""  # what the table shows ("0.45 (8,326 vs 18,451)")
    commands: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"figure {self.key}: {self.value}"


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def _wrk_line(label: str, result: WrkResult) -> str:
    return f"{label}: {result.summary()}; non-2xx/3xx {result.non_2xx_3xx}; socket errors {result.socket_errors}"


def _run(command: list[str], figure: Figure) -> str:
    figure.commands.append(shlex.join(command))
    print("$", shlex.join(command), flush=True)
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


# 1. count.json against a bare Starlette route ----------------------------------


def count_figure(plan: Plan, cluster: Cluster) -> Figure:
    figure = Figure("count", "`count.json` req/s ÷ a bare Starlette JSON route on the same "
                    "uvicorn settings", "≥ 0.8, no database query per request")  # fmt: skip
    with petitions_server(cluster, SMALL) as app:
        url = f"{app.base}/p/{SLUG}/count.json"
        run_wrk(url, plan.warmup, plan.connections, show=False)
        before = data.run(data.transactions(cluster, SMALL))
        ours = run_wrk(url, plan.duration, plan.connections)
        time.sleep(1.5)  # backends report their statistics at most once a second
        queries = data.run(data.transactions(cluster, SMALL)) - before
        figure.commands += [shlex.join(app.command), ours.command]
    with bare_server() as bare:
        url = f"{bare.base}/count.json"
        run_wrk(url, plan.warmup, plan.connections, show=False)
        base = run_wrk(url, plan.duration, plan.connections)
        figure.commands += [shlex.join(bare.command), base.command]
    figure.ratio = _ratio(ours.requests_per_second, base.requests_per_second)
    figure.app = f"{ours.requests_per_second:,.0f} req/s"
    figure.baseline = f"{base.requests_per_second:,.0f} req/s"
    figure.value = (
        f"{figure.ratio} ({ours.requests_per_second:,.0f} vs {base.requests_per_second:,.0f} req/s)"
    )
    figure.details = [
        _wrk_line("count.json", ours),
        _wrk_line("bare route", base),
        f"database transactions while count.json was loaded: {queries:,} for "
        f"{ours.requests:,} requests (pg_stat_database, the app's background work included)",
    ]
    return figure


# 2. sign POSTs against raw asyncpg ----------------------------------------------


def sign_settings(sign_limits: str) -> dict[str, str]:
    if sign_limits == "spread":
        return {"TRUSTED_PROXIES": "127.0.0.1"}
    return {"SIGN_LIMIT_PER_HOUR": "0", "SIGN_CEILING_PER_HOUR": "0"}


def sign_load(plan: Plan, cluster: Cluster, base: str, duration: float, show=True) -> WrkResult:
    """wrk posting new signatures, each form token used for at most its 5 submissions."""
    tokens = data.write_form_tokens(
        cluster, plan.work / f"form-tokens-{secrets.token_hex(3)}.txt",
        int(duration * 5_000 / 5) + 1_000,  # room for 5,000 signatures a second
    )  # fmt: skip
    env = {"SLUG": SLUG, "TOKENS": str(tokens), "ORIGIN": base, "RUN": secrets.token_hex(4),
           "SPREAD": "1" if plan.sign_limits == "spread" else "0"}  # fmt: skip
    return run_wrk(base, duration, plan.connections, script=str(HERE / "sign.lua"), env=env,
                   show=show)  # fmt: skip


def sign_figure(plan: Plan, cluster: Cluster) -> Figure:
    figure = Figure("sign", "sign POST/s ÷ raw asyncpg committing the same two inserts, "
                    "16 concurrent transactions", "≥ 0.5; stretch ≥ 1.0")  # fmt: skip
    settings = sign_settings(plan.sign_limits)
    with petitions_server(cluster, SMALL, settings) as app:
        sign_load(plan, cluster, app.base, plan.warmup, show=False)
        ours = sign_load(plan, cluster, app.base, plan.duration)
        figure.commands += [_with_env(settings, app.command), ours.command]
    raw = json.loads(_run([sys.executable, str(HERE / "raw_baseline.py"), "sign",
                           "--dsn", cluster.dsn(SMALL), "--concurrency", "16",
                           "--duration", str(plan.duration)], figure))  # fmt: skip
    non303 = int(ours.lines.get("non303", -1))
    _against_raw(figure, ours, raw, "POST/s", "transactions/s", f"non-303 answers: {non303}")
    limits = (
        "sign limits on, each POST from its own /24 (X-Forwarded-For, TRUSTED_PROXIES=127.0.0.1) "
        "and its own email domain: the limits run, hold nothing"
        if plan.sign_limits == "spread"
        else "sign limits off (SIGN_LIMIT_PER_HOUR=0, SIGN_CEILING_PER_HOUR=0)"
    )
    figure.details = [
        _wrk_line("sign POSTs", ours) + f"; answers other than 303: {non303}",
        f"raw asyncpg, 16 connections: {raw['transactions']:,} transactions in {raw['seconds']} s, "
        f"p50 {raw['p50_ms']} ms, p99 {raw['p99_ms']} ms (one statement inserting the signature "
        "and its outbox row, one commit; every column copied from the newest signature and "
        "email the app stored, a new public id and email hash each time)",
        limits + "; a fresh form token for every 5 POSTs (minted with the server's SECRET_KEY), "
        "a fresh email for each",
    ]
    return figure


def _against_raw(figure: Figure, ours, raw: dict, unit: str, raw_unit: str, odd: str) -> None:
    """The figure's ratio and values: the app's requests/s against the raw baseline's."""
    figure.ratio = _ratio(ours.requests_per_second, raw["per_second"])
    figure.app = f"{ours.requests_per_second:,.0f} {unit}"
    figure.baseline = f"{raw['per_second']:,.0f} {raw_unit}"
    figure.value = (
        f"{figure.ratio} ({ours.requests_per_second:,.0f} vs {raw['per_second']:,.0f}/s; {odd})"
    )


def _with_env(settings: dict[str, str], command: list[str]) -> str:
    shown = " ".join(f"{k}={v}" for k, v in settings.items())
    return (shown + " " if shown else "") + shlex.join(command)


# 6. confirmations against raw asyncpg -------------------------------------------


def confirm_figure(plan: Plan, cluster: Cluster, ids: list[uuid.UUID]) -> Figure:
    figure = Figure("confirm", "confirmations/s ÷ raw asyncpg single UPDATE", "≥ 0.5")
    http_ids = ids[: int(plan.duration * HTTP_CONFIRMS)]
    raw_ids = ids[len(http_ids) :]
    links = data.write_verify_paths(cluster, http_ids, plan.work / "verify-paths.txt")
    raw_file = data.write_ids(raw_ids, plan.work / "raw-confirm-ids.txt")
    with petitions_server(cluster, SMALL) as app:
        env = {"TOKENS": str(links)}
        ours = run_wrk(app.base, plan.duration, plan.connections,
                       script=str(HERE / "verify.lua"), env=env)  # fmt: skip
        figure.commands += [shlex.join(app.command), ours.command]
    raw = json.loads(_run([sys.executable, str(HERE / "raw_baseline.py"), "confirm",
                           "--dsn", cluster.dsn(SMALL), "--ids", str(raw_file),
                           "--concurrency", str(plan.connections),
                           "--duration", str(plan.duration)], figure))  # fmt: skip
    non200 = int(ours.lines.get("non200", -1))
    _against_raw(figure, ours, raw, "confirmations/s", "UPDATEs/s", f"non-200 answers: {non200}")
    figure.details = [
        _wrk_line("confirmation links", ours) + f"; answers other than 200: {non200}; "
        f"{len(http_ids):,} links"
        + (
            " — RAN OUT, links were opened twice: figure too high"
            if ours.requests > len(http_ids)
            else ""
        ),
        f"raw asyncpg, {plan.connections} connections: {raw['transactions']:,} UPDATEs "
        f"({raw['confirmed']:,} confirmed) in {raw['seconds']} s, p50 {raw['p50_ms']} ms, "
        f"p99 {raw['p99_ms']} ms" + (" — RAN OUT of pending signatures" if raw["ran_out"] else ""),
        "the raw UPDATE: `UPDATE signatures SET status = 'verified', verified_at = now(), "
        "updated_at = now() WHERE public_id = $1 AND status = 'pending'` (the same triggers fire)",
    ]
    return figure


# 4. event-stream clients ---------------------------------------------------------


def events_figure(
    plan: Plan, cluster: Cluster, ids: list[uuid.UUID], clients: int, commits: int, rate: float
) -> Figure:
    key = "events" if clients == plan.event_clients[0] else "events-large"
    figure = Figure(key, f"{clients:,} event-stream clients: commit → event at every client, p99",
                    "< 0.5 s; memory per client given")  # fmt: skip
    id_file = data.write_ids(ids[:commits], plan.work / f"event-ids-{clients}.txt")
    # Streams come on top of --max-connections (petitions/in_flight.py): defaults serve them.
    with petitions_server(cluster, SMALL) as app:
        result = json.loads(_run([sys.executable, str(HERE / "sse_fanout.py"),
                                  "--base", app.base, "--slug", SLUG, "--clients", str(clients),
                                  "--dsn", cluster.dsn(SMALL), "--ids", str(id_file),
                                  "--commits", str(commits), "--rate", str(rate),
                                  "--server-pid", str(app.pid)], figure))  # fmt: skip
        figure.commands.insert(0, shlex.join(app.command))
    rss = result["server_rss_kb"]
    figure.app = f"p99 {result['p99_ms']:,} ms"
    figure.value = (
        f"p99 {result['p99_ms']:,} ms (p50 {result['p50_ms']:,}, max {result['max_ms']} ms); "
        f"{result['connected']:,} of {clients:,} connected, {result['missed']:,} events missed; "
        f"{result['per_client_kb']} kB per client"
    )
    figure.details = [
        f"{result['commits']} confirmations committed at {rate:g}/s (one transaction each, "
        f"direct SQL), {result['deliveries']:,} deliveries timed, {result['missed']:,} missed, "
        f"{result['failed']:,} clients refused or failed; connecting took "
        f"{result['connect_seconds']} s",
        f"server VmRSS: {rss['before']:,} kB before, {rss['connected']:,} kB with the clients "
        f"connected, {rss['after_events']:,} kB after the events: "
        f"{result['per_client_kb']} kB per client",
    ]
    return figure


# 3. CSV export against psql \copy -------------------------------------------------


def _admin_cookie(base: str) -> str:
    """Log in as the bench admin over HTTP, as a browser does; the Cookie header."""
    parts = urlsplit(base)
    jar = SimpleCookie()

    def request(method: str, path: str, body: str | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Origin": base, "Cookie": "; ".join(f"{k}={v.value}" for k, v in jar.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        for value in response.headers.get_all("Set-Cookie") or []:
            jar.load(value)
        text = response.read().decode()
        conn.close()
        return response.status, text

    _, page = request("GET", "/admin/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    status, _ = request("POST", "/admin/login", urlencode(
        {"email": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": csrf}))  # fmt: skip
    if status != 303:
        raise RuntimeError(f"admin login answered {status}")
    return "; ".join(f"{k}={v.value}" for k, v in jar.items())


ADMIN_PASSWORD = "bench password " + secrets.token_hex(8)


def _create_admin(cluster: Cluster, database: str) -> None:
    env = {"DATABASE_URL": cluster.database_url(database), "SECRET_KEY": cluster.secret_key,
           "DATA_DIR": str(cluster.data_dir), "LOG_LEVEL": "WARNING"}  # fmt: skip
    subprocess.run([PETITIONS, "create-admin", ADMIN, "--password-stdin"],
                   input=ADMIN_PASSWORD + "\n", text=True, env={**_base_env(), **env},
                   check=True, capture_output=True)  # fmt: skip


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}


class MemorySampler:
    """VmRSS of a process every 20 ms, while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.running = pid, 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, process_memory(self.pid)["VmRSS"])
            time.sleep(0.02)

    def __enter__(self) -> MemorySampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()


def _export_once(app: Server, cookie: str, figure: Figure, label: str) -> dict:
    """GET export.csv with curl (to /dev/null); its status, size, seconds and the
    app's peak RSS while it ran (kB)."""
    Path(f"/proc/{app.pid}/clear_refs").write_text("5")  # reset VmHWM to now
    before = process_memory(app.pid)
    curl = ["curl", "-s", "-o", "/dev/null", "-H", "Cookie: <the admin session>",
            "-w", "%{http_code} %{size_download} %{time_total}",
            f"{app.base}/admin/petitions/{SLUG}/export.csv"]  # fmt: skip
    figure.commands.append(f"{shlex.join(curl)}   # {label}")
    print("$", shlex.join(curl), flush=True)
    curl[5] = f"Cookie: {cookie}"
    with MemorySampler(app.pid) as sampler:
        out = subprocess.run(curl, capture_output=True, text=True, check=True).stdout
    after = process_memory(app.pid)
    status, size, seconds = out.split()
    return {"status": status, "size": int(size), "seconds": float(seconds),
            "before_kb": before["VmRSS"], "peak_kb": max(sampler.peak, after["VmHWM"])}  # fmt: skip


def _worker_makes_blocks(cluster: Cluster, figure: Figure) -> tuple[float, dict[str, int]]:
    """`petitions worker` on the large database until the demo petition's export
    blocks are made (fewer than a block's worth of confirmed signatures left past
    them); the seconds it took, and the blocks' state."""
    from petitions.export_blocks import BLOCK_SIGNATURES

    env = {**_base_env(), "DATABASE_URL": cluster.database_url(LARGE),
           "SECRET_KEY": cluster.secret_key, "DATA_DIR": str(cluster.data_dir),
           "LOG_LEVEL": "WARNING"}  # fmt: skip
    command = [PETITIONS, "worker"]
    figure.commands.append(f"{shlex.join(command)}   # until the export blocks are made")
    print("$", shlex.join(command), flush=True)
    started = time.monotonic()
    with subprocess.Popen(command, env=env) as worker:
        try:
            while True:
                state = data.run(data.export_blocks(cluster, LARGE))
                if not state["emptied"] and state["confirmed"] - state["held"] < BLOCK_SIGNATURES:
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"petitions worker exited with {worker.returncode}")
                if time.monotonic() - started > 900:
                    raise RuntimeError(f"the worker did not make the export blocks: {state}")
                time.sleep(0.5)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
    return time.monotonic() - started, state


def export_figure(plan: Plan, cluster: Cluster, signatures: int) -> Figure:
    figure = Figure("export", f"CSV export MB/s ÷ `psql \\copy` of the signatures table, "
                    f"{signatures:,} rows", "≥ 0.6, app RSS < 200 MB")  # fmt: skip
    _create_admin(cluster, LARGE)
    data.run(data.export_blocks(cluster, LARGE, drop=True))
    with petitions_server(cluster, LARGE) as app:
        figure.commands.append(shlex.join(app.command))
        cookie = _admin_cookie(app.base)
        cold = _export_once(app, cookie, figure, "before the worker made the export blocks")
        making, blocks = _worker_makes_blocks(cluster, figure)
        warm = _export_once(app, cookie, figure, "with the blocks: the figure")
    if (cold["status"], cold["size"]) != (warm["status"], warm["size"]):
        raise RuntimeError(f"the two exports differ: {cold} against {warm}")
    psql = [str(cluster.bin_dir / "psql"), "-X", "-q", "-d", cluster.database_url(LARGE),
            "-c", "\\copy signatures TO STDOUT WITH (FORMAT csv)"]  # fmt: skip
    figure.commands.append(shlex.join(psql) + " > (counted, discarded)")
    print("$", shlex.join(psql), flush=True)
    started = time.monotonic()
    copied = 0
    with subprocess.Popen(psql, stdout=subprocess.PIPE) as process:
        while chunk := process.stdout.read(1 << 20):
            copied += len(chunk)
    copy_seconds = time.monotonic() - started
    copy_mbs = copied / copy_seconds / 1e6
    ours_mbs, cold_mbs = (e["size"] / e["seconds"] / 1e6 for e in (warm, cold))
    figure.ratio = _ratio(ours_mbs, copy_mbs)
    figure.app = f"{ours_mbs:,.1f} MB/s"
    figure.baseline = f"{copy_mbs:,.1f} MB/s"
    peak_mb = max(warm["peak_kb"], cold["peak_kb"]) / 1024
    figure.value = (
        f"{figure.ratio} ({ours_mbs:,.1f} vs {copy_mbs:,.1f} MB/s) with the export blocks; "
        f"{_ratio(cold_mbs, copy_mbs)} ({cold_mbs:,.1f} MB/s) before the worker made them; "
        f"app RSS peak {peak_mb:,.0f} MB"
    )
    figure.details = [
        f"export.csv with the blocks: HTTP {warm['status']}, {warm['size'] / 1e6:,.1f} MB in "
        f"{warm['seconds']:.2f} s",
        f"export.csv before the worker made them: HTTP {cold['status']}, "
        f"{cold['size'] / 1e6:,.1f} MB in {cold['seconds']:.2f} s (the same size)",
        f"`petitions worker` made {blocks['ready']:,} blocks holding {blocks['held']:,} of the "
        f"{blocks['confirmed']:,} confirmed signatures in {making:.1f} s (from start, polled "
        "every 0.5 s)",
        f"psql \\copy: {copied / 1e6:,.1f} MB in {copy_seconds:.2f} s",
        f"app VmRSS {warm['before_kb'] / 1024:,.0f} MB before; peak (sampled every 20 ms, and "
        f"VmHWM reset before each export) {cold['peak_kb'] / 1024:,.0f} MB in the first export, "
        f"{warm['peak_kb'] / 1024:,.0f} MB with the blocks",
    ]
    return figure


# 5. a deep list page against the first ---------------------------------------------


def _page_url(base: str, page: int) -> str:
    """The address of page `page` of signatures.json, reached by following `next`."""
    url = f"{base}/p/{SLUG}/signatures.json"
    for _ in range(page - 1):
        with urllib.request.urlopen(url, timeout=30) as r:
            following = json.load(r)["next"]
        if following is None:
            raise RuntimeError(f"the list has fewer than {page} pages")
        url = following
    return url


def list_figure(plan: Plan, cluster: Cluster, signatures: int) -> Figure:
    figure = Figure("list", f"list page {plan.list_page:,} ÷ page 1 at {signatures:,} "
                    "signatures (keyset, `signatures.json`), p50", "≤ 1.5×")  # fmt: skip
    with petitions_server(cluster, LARGE) as app:
        first = f"{app.base}/p/{SLUG}/signatures.json"
        deep = _page_url(app.base, plan.list_page)
        run_wrk(first, plan.warmup, 1, show=False)
        one = run_wrk(first, plan.duration, 1)
        run_wrk(deep, plan.warmup, 1, show=False)
        far = run_wrk(deep, plan.duration, 1)
        figure.commands += [shlex.join(app.command), one.command, far.command]
    p1, pn = one.latency_ms["50%"], far.latency_ms["50%"]
    figure.ratio = _ratio(pn, p1)
    figure.app = f"p50 {pn:.2f} ms"
    figure.baseline = f"p50 {p1:.2f} ms"
    figure.value = f"{figure.ratio} ({pn:.2f} vs {p1:.2f} ms)"
    figure.details = [
        _wrk_line("page 1", one),
        _wrk_line(f"page {plan.list_page:,} (reached by following `next`)", far),
        "one connection (wrk -c1): each page's own latency, no queueing",
    ]
    return figure
