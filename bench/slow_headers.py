"""/healthz while a slowloris holds 2,000 connections that never finish their headers.

    python bench/slow_headers.py [--connections 2000] [--seconds 10] [--plain] [--files 1024]

Starts `petitions serve` on a temporary embedded database (`--plain`: the same app on
uvicorn with its default options, as before `petitions/serving.py`), measures /healthz
on fresh connections (raw HTTP, from connecting to the last byte) while idle, then
while tests/slowloris.py (a process of its own) holds its connections and opens a new
one whenever the server closes one, then sends one 64 MiB header and measures
/healthz meanwhile. `--files 1024` starts the server with that open-file limit, soft
and hard, as on many machines. Prints the figures docs/benchmarks.md records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port, wait_healthy  # noqa: E402

SLOWLORIS = Path(__file__).resolve().parent.parent / "tests" / "slowloris.py"
# The same app served by uvicorn with its defaults (no header limit or timeout).
PLAIN = """
import sys, uvicorn
from petitions.app import create_app
from petitions.db import database_url_for
from petitions.sealing import prepare_database
from petitions.settings import load_settings
import asyncio
settings = load_settings()
with database_url_for(settings) as url:
    asyncio.run(prepare_database(url, settings))
    uvicorn.run(create_app(settings.with_database(url)), host="127.0.0.1",
                port=int(sys.argv[1]), log_level="warning")
"""


def start(plain: bool, files: int | None) -> tuple[subprocess.Popen, int, str]:
    data_dir = tempfile.mkdtemp(prefix="petitions-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(DATA_DIR=data_dir, LOG_LEVEL="WARNING")
    port = free_port()
    if plain:
        command = [sys.executable, "-c", PLAIN, str(port)]
    else:
        command = ["petitions", "serve", "--port", str(port), "--no-worker"]

    def limit_files() -> None:  # a machine where processes may open only `files` files
        if files:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    server = subprocess.Popen(command, env=env, preexec_fn=limit_files)
    wait_healthy(f"http://127.0.0.1:{port}")
    return server, port, data_dir


async def healthz(port: int, times: int, pause: float = 0.05) -> list[float]:
    latencies = []
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    for _ in range(times):
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            ok = answer.startswith(b"HTTP/1.1 200")
        except (OSError, TimeoutError):
            ok = False
        latencies.append((time.perf_counter() - started) * 1000 if ok else float("inf"))
        await asyncio.sleep(pause)
    return latencies


def describe(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    failed = sum(1 for x in ordered if x == float("inf"))
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (
        f"median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, "
        f"max {ordered[-1]:.1f} ms, failed {failed}/{len(ordered)}"
    )


async def big_header(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    started, sent = time.perf_counter(), 0
    try:
        for _ in range(64):
            writer.write(b"a" * (1 << 20))
            await writer.drain()
            sent += 1 << 20
        writer.write(b"\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(100), 60)
    except (OSError, TimeoutError):
        answer = b"(closed)"
    writer.close()
    took = (time.perf_counter() - started) * 1000
    return f"{answer[:40]!r} after {took:.0f} ms, {sent >> 20} MiB sent"


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    server, port, data_dir = start(args.plain, args.files)
    try:
        print("idle:", describe(await healthz(port, 50)))
        attack = await asyncio.create_subprocess_exec(
            sys.executable, str(SLOWLORIS), "127.0.0.1", str(port),
            str(args.connections), str(args.seconds), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        ready = await asyncio.wait_for(attack.stdout.readline(), 120)
        print(f"{args.connections} slow-header connections ({ready.strip().decode()}):",
              describe(await healthz(port, 100)))  # fmt: skip
        print("attacker:", json.loads(await attack.stdout.readline()))
        await attack.wait()
        measuring = asyncio.create_task(healthz(port, 40, pause=0.02))
        print("64 MiB header:", await big_header(port))
        print("/healthz meanwhile:", describe(await measuring))
    finally:
        server.send_signal(signal.SIGINT)  # lets the embedded PostgreSQL stop with it
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--plain", action="store_true", help="uvicorn's defaults, no guard")
    parser.add_argument("--files", type=int, help="the server's open-file limit (ulimit -n)")
    asyncio.run(main(parser.parse_args()))
