"""Event-stream clients: commit → event at every client, and the server's memory per client.

    python bench/event_clients.py --base URL --slug SLUG --clients 1000 --dsn DSN \
        --ids FILE --commits 100 --rate 5 [--server-pid PID]

Opens N connections to GET /p/{slug}/events (through the public route only), waits
until each has its first `count` event, then starts a committer process of its own
(`event_clients.py commit ...`) that confirms pending signatures from FILE (public
display, so each is a `signature` event with an id) at a steady rate, one
transaction each, and reports the monotonic clock right after each COMMIT returned.
Each client notes the clock when a chunk naming an event id arrives. Both clocks
are CLOCK_MONOTONIC of one machine. The delay of an event at a client is its
arrival minus its commit; a client that never receives an event counts as missed.
The client loop's own work is in the figure (it can only make it larger).

Prints one JSON line. With --server-pid, the server's VmRSS before the clients
connect, once they are connected, and after the events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import asyncpg

CONNECT_BATCH = 200
GRACE_SECONDS = 5.0  # after the last commit, for the last events to arrive

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
    def __init__(self, request: bytes, ready: asyncio.Future) -> None:
        self.request = request
        self.ready = ready
        self.head = b""
        self.status: int | None = None
        self.partial = b""
        self.received: list[tuple[int, float]] = []
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
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(b"id: "):
                self.received.append((int(line[4:]), now))
            elif line == b"event: count" and not self.ready.done():
                self.ready.set_result(True)

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_result(False)


async def open_clients(base: str, slug: str, count: int) -> tuple[list[StreamClient], int]:
    parts = urlsplit(base)
    request = (
        f"GET /p/{slug}/events HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
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
    for client in clients:
        arrived = dict(client.received)
        for event_id, committed in commits.items():
            if event_id in arrived:
                delays.append(arrived[event_id] - committed)
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
        "connect_seconds": round(connect_seconds, 2),
        "commits": len(commits),
        "rate": args.rate,
        "deliveries": len(delays),
        "missed": missed,
        "p50_ms": round(quantile[49] * 1000, 1),
        "p99_ms": round(quantile[98] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1) if delays else None,
        "server_rss_kb": {"before": before, "connected": connected, "after_events": after},
        "per_client_kb": round(per_client, 1) if per_client is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="clients", choices=("clients", "commit"))
    parser.add_argument("--base")
    parser.add_argument("--slug")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--ids", required=True, help="pending public ids, one a line")
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="commits a second")
    parser.add_argument("--server-pid", type=int)
    args = parser.parse_args()
    import uvloop

    if args.mode == "commit":
        with open(args.ids) as f:
            ids = [uuid.UUID(line.strip()) for line in f if line.strip()][: args.commits]
        uvloop.run(commit(args.dsn, ids, args.rate))
    else:
        print(json.dumps(uvloop.run(measure(args))), flush=True)


if __name__ == "__main__":
    main()
