"""Live fan-out: commit → event at every event-stream client, and the server's memory per client.

    python bench/sse_fanout.py [--clients 300] [--slow 0] [--commits 20] [--rate 5]
        starts an embedded PostgreSQL (temporary DATA_DIR) and `petitions serve` of its
        own, loads the demo petition and pending signatures, measures, stops both
    python bench/sse_fanout.py --base URL --dsn DSN --ids FILE [--server-pid PID] [...]
        against a running server (FILE: pending public ids of --slug, one a line)

Opens N connections to GET /p/{slug}/events (RLIMIT_NOFILE raised first), waits until
each has had its first `count` event, then a committer process of its own
(`sse_fanout.py commit ...`, asyncpg on the same database) confirms pending
signatures at a steady rate, one transaction each, and prints the monotonic clock
right after each COMMIT returned. Each client notes the clock when the bytes naming
an event id arrive; the delay of an event at a client is arrival minus commit (one
machine, CLOCK_MONOTONIC). A client that never receives an event counts as missed.
The client loop's own work is in the figure (it can only make it larger).

Every client also keeps a digest of each event's bytes: `encodings` counts the
distinct forms an event reached clients in (1: every client got the same bytes).
`--slow M` adds M connections that never read a byte (a tiny receive buffer): they
must not delay the others, and the server drops them once their queue is full.

Prints one JSON line (what bench/figures.py reads). With a server
pid: its VmRSS before the clients connect, once they are connected, and after the
events; per_client_kb is (connected - before) / clients.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

HERE = Path(__file__).resolve().parent
CONNECT_BATCH = 200
GRACE_SECONDS = 5.0  # after the last commit, for the last events to arrive
SLOW_RECEIVE_BUFFER = 4096

CONFIRM = """
UPDATE signatures SET status = 'verified', verified_at = now(), updated_at = now()
 WHERE public_id = $1 AND status = 'pending'
RETURNING id
"""
EVENT_OF = "SELECT max(id) FROM petition_events WHERE signature_id = $1"


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class StreamClient(asyncio.Protocol):
    """One event stream: when each event id arrived, and a digest of its bytes."""

    def __init__(self, request: bytes, ready: asyncio.Future) -> None:
        self.request = request
        self.ready = ready
        self.head = b""
        self.status: int | None = None
        self.body = b""  # de-chunked stream not yet split into events
        self.chunked = b""  # raw bytes not yet de-chunked
        self.received: dict[int, float] = {}
        self.digests: dict[int, bytes] = {}
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200 and not self.ready.done():
                self.ready.set_result(False)
        self.chunked += data
        self._dechunk()
        *events, self.body = self.body.split(b"\n\n")
        for event in events:
            if event.startswith(b"id: "):
                event_id = int(event[4 : event.index(b"\n")])
                self.received.setdefault(event_id, now)
                self.digests[event_id] = hashlib.blake2b(event, digest_size=16).digest()
            elif b"event: count" in event and not self.ready.done():
                self.ready.set_result(True)

    def _dechunk(self) -> None:
        while True:
            line_end = self.chunked.find(b"\r\n")
            if line_end < 0:
                return
            size = int(self.chunked[:line_end], 16)
            end = line_end + 2 + size
            if len(self.chunked) < end + 2:
                return
            self.body += self.chunked[line_end + 2 : end]
            self.chunked = self.chunked[end + 2 :]

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_result(False)


def stream_request(base: str, slug: str) -> bytes:
    return (
        f"GET /p/{slug}/events HTTP/1.1\r\nHost: {urlsplit(base).netloc}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()


async def open_clients(base: str, slug: str, count: int) -> tuple[list[StreamClient], int]:
    parts = urlsplit(base)
    request = stream_request(base, slug)
    loop = asyncio.get_running_loop()
    clients: list[StreamClient] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        ready = loop.create_future()
        try:
            _, client = await loop.create_connection(
                lambda: StreamClient(request, ready), parts.hostname, parts.port
            )
            ok = await asyncio.wait_for(ready, 60)
        except (OSError, TimeoutError):
            failed += 1
            return
        if ok:
            clients.append(client)
        else:
            failed += 1
            client.transport.close()

    for start in range(0, count, CONNECT_BATCH):
        await asyncio.gather(*(one() for _ in range(min(CONNECT_BATCH, count - start))))
    return clients, failed


def open_slow_clients(base: str, slug: str, count: int) -> list[socket.socket]:
    """Connections that ask for the stream and never read: blocking sockets, set aside."""
    parts = urlsplit(base)
    request = stream_request(base, slug)
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
        s.connect((parts.hostname, parts.port))
        s.sendall(request)
        sockets.append(s)
    return sockets


async def commit(dsn: str, ids: list[uuid.UUID], rate: float) -> None:
    """Confirm one signature at a time at `rate` a second; print "event_id clock"."""
    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        for n, public_id in enumerate(ids):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            async with conn.transaction():
                signature_id = await conn.fetchval(CONFIRM, public_id)
                event_id = await conn.fetchval(EVENT_OF, signature_id) if signature_id else None
            committed = time.monotonic()
            if event_id is not None:
                print(event_id, committed, flush=True)
    finally:
        await conn.close()


async def measure(args) -> dict:
    raise_file_limit()
    before = rss_kb(args.server_pid)
    started = time.monotonic()
    clients, failed = await open_clients(args.base, args.slug, args.clients)
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(1.0)
    connected = rss_kb(args.server_pid)
    with ExitStack() as slow:
        for s in open_slow_clients(args.base, args.slug, args.slow):
            slow.callback(s.close)
        committer = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "commit", "--dsn", args.dsn, "--ids", args.ids,
            "--commits", str(args.commits), "--rate", str(args.rate),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        output, _ = await committer.communicate()
        commits = {}
        for line in output.decode().splitlines():
            event_id, clock = line.split()
            commits[int(event_id)] = float(clock)
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline:
            if all(len(c.received) >= len(commits) for c in clients):
                break
            await asyncio.sleep(0.1)
        after = rss_kb(args.server_pid)

    delays, missed = [], 0
    encodings: dict[int, set[bytes]] = {event_id: set() for event_id in commits}
    for client in clients:
        for event_id, committed in commits.items():
            if event_id in client.received:
                delays.append(client.received[event_id] - committed)
                encodings[event_id].add(client.digests[event_id])
            else:
                missed += 1
        client.transport.close()
    delays.sort()
    quantile = statistics.quantiles(delays, n=100) if len(delays) > 1 else [float("nan")] * 99
    per_client = (connected - before) / len(clients) if before and clients else None
    return {
        "clients": args.clients,
        "connected": len(clients),
        "failed": failed,
        "slow": args.slow,
        "connect_seconds": round(connect_seconds, 2),
        "commits": len(commits),
        "rate": args.rate,
        "deliveries": len(delays),
        "missed": missed,
        "encodings": max((len(e) for e in encodings.values()), default=0),
        "p50_ms": round(quantile[49] * 1000, 1),
        "p99_ms": round(quantile[98] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1) if delays else None,
        "server_rss_kb": {"before": before, "connected": connected, "after_events": after},
        "per_client_kb": round(per_client, 1) if per_client is not None else None,
    }


def run_standalone(args) -> dict:
    """An embedded PostgreSQL and a `petitions serve` of this run's own, then measure."""
    sys.path.insert(0, str(HERE))
    import data
    from servers import SLUG, embedded_cluster, petitions_server

    database = "bench_fanout"
    with embedded_cluster(None) as cluster:
        data.run(data.demo_database(cluster, database, fresh=True))
        data.run(data.add_pending(cluster, database, args.commits))
        ids = data.run(data.pending_public_ids(cluster, database))
        args.ids = str(data.write_ids(ids, cluster.data_dir / "fanout-ids.txt"))
        args.dsn, args.slug = cluster.dsn(database), SLUG
        with petitions_server(cluster, database) as server:
            args.base, args.server_pid = server.base, server.pid
            return _run(measure(args))


def _run(coroutine):
    import uvloop

    return uvloop.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="clients", choices=("clients", "commit"))
    parser.add_argument("--base", help="a running server; without, one of this run's own")
    parser.add_argument("--slug", default="free-haft-tapeh-workers")
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--slow", type=int, default=0, help="connections that never read")
    parser.add_argument("--dsn", help="the server's database (with --base)")
    parser.add_argument("--ids", help="pending public ids, one a line (with --base)")
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0, help="commits a second")
    parser.add_argument("--server-pid", type=int)
    args = parser.parse_args()
    if args.mode == "commit":
        with open(args.ids) as f:
            ids = [uuid.UUID(line.strip()) for line in f if line.strip()][: args.commits]
        _run(commit(args.dsn, ids, args.rate))
        return
    if args.base is None:
        result = run_standalone(args)
    elif args.dsn is None or args.ids is None:
        parser.error("--base needs --dsn and --ids")
    else:
        result = _run(measure(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
