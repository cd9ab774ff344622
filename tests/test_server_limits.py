"""`petitions serve` against slow and oversized requests (petitions/serving.py), and who
may read /metrics.

The server runs as a real `petitions serve` process, as in production; the attacker
(tests/slowloris.py) runs as a process of its own, so its work does not slow down the
client that measures. Latencies are printed (`pytest -s`) and recorded in
docs/benchmarks.md by bench/slow_headers.py, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from served import serve, stop

from conftest import SECRET, make_petition, wait_until

SLOWLORIS = Path(__file__).with_name("slowloris.py")
ATTACKERS = 2000


@pytest.fixture
def server(db_url, tmp_path):
    process, base = serve(db_url, tmp_path, "--header-timeout", "2")
    yield base
    stop(process)


async def healthz_latencies(base: str, times: int) -> list[float]:
    """Each /healthz on a fresh connection (as a new visitor would come), from connecting
    to the last byte of the answer, in ms. Raw HTTP: a client library's own set-up
    (httpx makes an SSL context per client) would be most of what is measured."""
    latencies = []
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    for _ in range(times):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", int(_port(base)))
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 30)
        latencies.append((time.perf_counter() - started) * 1000)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
        await asyncio.sleep(0.05)
    return latencies


def describe(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"


def _port(base: str) -> str:
    return base.rsplit(":", 1)[1]


@pytest.mark.slow  # a server process, 2,000 attacking connections for some seconds
async def test_slow_header_connections_leave_healthz_answering(server):
    # The attacker raises its own open-file limit (2,000 sockets; many systems start at
    # 1,024); the server raises its own at start (serving.raise_file_limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < ATTACKERS + 200:
        pytest.skip(f"the hard open-file limit ({hard}) is below {ATTACKERS + 200}")
    quiet = await healthz_latencies(server, 20)
    attack = await asyncio.create_subprocess_exec(
        sys.executable, str(SLOWLORIS), "127.0.0.1", _port(server), str(ATTACKERS), "8",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert (await asyncio.wait_for(attack.stdout.readline(), 60)).strip() == b"ready"
        under_attack = await healthz_latencies(server, 50)
        stats = json.loads(await asyncio.wait_for(attack.stdout.readline(), 60))
    finally:
        if attack.returncode is None:
            attack.kill()
        await attack.wait()
    print(f"\n/healthz quiet: {describe(quiet)}")
    print(f"/healthz with {ATTACKERS} slow-header connections: {describe(under_attack)}")
    print(f"attacker: {stats}")
    # The server closed the attacker's connections (the oldest unfinished ones make
    # room for new ones; the rest time out), so it never ran out of descriptors.
    assert stats["closed_by_server"] >= ATTACKERS
    assert (await healthz_latencies(server, 1))[0] >= 0


@pytest.mark.slow  # a server process
async def test_unfinished_headers_are_closed_after_the_header_timeout(server):
    sockets = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", int(_port(server))))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        s.setblocking(False)
        sockets.append(s)

    def closed(s: socket.socket) -> bool:
        try:
            return s.recv(1024) == b""
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True

    try:
        # --header-timeout 2: closed a little after two seconds, without a word.
        open_sockets = list(sockets)

        def all_closed():
            open_sockets[:] = [s for s in open_sockets if not closed(s)]
            return not open_sockets

        assert await wait_until(all_closed, seconds=15, interval=0.2, what="the server to close")
        # A request that finishes its headers in time is answered as usual.
        assert (await healthz_latencies(server, 1))[0] >= 0
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow  # a server process
async def test_a_64_mib_header_is_refused_without_stalling_others(server):
    host, port = "127.0.0.1", int(_port(server))
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    chunk = b"a" * (1024 * 1024)
    sent = 0
    started = time.perf_counter()
    try:
        for _ in range(64):
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass  # the server stopped reading and closed the connection
    try:
        answer = await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        # Closing a socket with unread data makes Linux reset the connection, which may
        # overtake the 431 the server wrote first.
        answer = b"(reset)"
    refused_after = (time.perf_counter() - started) * 1000
    writer.close()
    assert answer.startswith((b"HTTP/1.1 431 ", b"(reset)")), answer[:100]
    others = await healthz_latencies(server, 10)
    print(f"\n64 MiB header: 431 after {refused_after:.0f} ms and {sent >> 20} MiB sent; "
          f"/healthz afterwards: {describe(others)}")  # fmt: skip
    assert sent < 64 * 1024 * 1024  # refused long before the end


@pytest.mark.slow  # a server process
async def test_headers_just_under_the_limit_are_served(server):
    cookie = "c=" + "x" * (30 * 1024)  # --max-header-bytes defaults to 32 KiB
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(server + "/healthz", headers={"Cookie": cookie})
        assert response.status_code == 200
        response = await http.get(server + "/healthz", headers={"Cookie": cookie * 2})
        assert response.status_code == 431


def test_serve_refuses_limits_out_of_range(db_url, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "petitions.cli", "serve", "--header-timeout", "0"],
        env={**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": SECRET},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--header-timeout must be between" in result.stderr


async def _open_requests(port: int, requests: list[bytes]) -> list[tuple]:
    writers = []
    for request in requests:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        writers.append((reader, writer))
    return writers


async def _status(base: str, path: str) -> tuple[int, str | None]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.get(path, headers={"Connection": "close"})
        return response.status_code, response.headers.get("retry-after")


@pytest.mark.slow  # a server process and a few dozen connections
async def test_event_streams_do_not_crowd_out_pages(db_url, conn, tmp_path):
    """Open petition pages keep an event stream each: they do not count against
    --max-connections, which still bounds every other request in flight."""
    await make_petition(conn)
    process, base = serve(db_url, tmp_path, "--max-connections", "16")
    port = int(_port(base))
    host = f"Host: 127.0.0.1:{port}".encode()
    try:
        streams = await _open_requests(
            port, [b"GET /p/release-them/events HTTP/1.1\r\n" + host + b"\r\n\r\n"] * 40
        )
        for reader, _writer in streams:  # each stream is open: its headers came
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
        assert await _status(base, "/p/release-them") == (200, None)

        # 16 sign POSTs whose bodies never finish hold all the room for requests.
        post = (
            b"POST /p/release-them/sign HTTP/1.1\r\n" + host + b"\r\nOrigin: " + base.encode()
            + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + b"Content-Length: 1000\r\n\r\nname=Slow"
        )  # fmt: skip
        stalled = await _open_requests(port, [post] * 16)
        await asyncio.sleep(0.5)
        assert await _status(base, "/p/release-them") == (503, "5")
        for _reader, writer in stalled:
            writer.close()
        for _ in range(100):  # the server notices the closed connections
            if await _status(base, "/p/release-them") == (200, None):
                break
            await asyncio.sleep(0.1)
        assert await _status(base, "/p/release-them") == (200, None)
        for _reader, writer in streams:
            writer.close()
    finally:
        stop(process)
