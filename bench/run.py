"""Load benchmarks against a real `petitions serve`, driven by wrk on loopback.

    python bench/run.py sign [--duration 20] [--connections 64] [--workers 1]
    python bench/run.py verify [...]   (signs first, then confirms those signatures)
    python bench/run.py page|count|list [...]

Starts its own server on the embedded PostgreSQL in a temporary DATA_DIR (with
the demo petition), unless --base points at a running one. Needs `wrk`
(Debian package `wrk`). Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLUG = "free-haft-tapeh-workers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit("the server did not become healthy")


def start_server(workers: int) -> tuple[subprocess.Popen, str, str]:
    data_dir = tempfile.mkdtemp(prefix="petitions-bench-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(DATA_DIR=data_dir, LOG_LEVEL="WARNING")
    subprocess.run(["petitions", "demo"], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        ["petitions", "serve", "--port", str(port), "--workers", str(workers), "--no-worker"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base)
    return server, base, data_dir


def form_token(base: str) -> str:
    with urllib.request.urlopen(f"{base}/p/{SLUG}") as r:
        page = r.read().decode()
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def write_verify_paths(data_dir: str, path: Path) -> None:
    """Confirmation links for every pending signature, as the emails would carry them."""
    import asyncio

    import asyncpg

    from petitions.db import asyncpg_dsn, database_url_for
    from petitions.settings import load_settings
    from petitions.tokens import Tokens

    settings = load_settings({"DATA_DIR": data_dir}, env_file=None)
    tokens = Tokens(settings.secret_key)

    async def fetch(url: str) -> list:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return await conn.fetch("SELECT public_id FROM signatures WHERE status = 'pending'")
        finally:
            await conn.close()

    with database_url_for(settings) as url:
        rows = asyncio.run(fetch(url))
    path.write_text(
        "".join(f"/verify/{tokens.signature_link('verify', r['public_id'])}\n" for r in rows)
    )
    print(f"{len(rows):,} pending signatures to confirm", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("sign", "verify", "page", "count", "list"))
    parser.add_argument("--base", help="a running server (default: start one)")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="app processes when starting one")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")

    server = data_dir = None
    base = args.base
    if base is None:
        server, base, data_dir = start_server(args.workers)
    elif args.scenario == "verify":
        sys.exit("verify needs its own server (it reads the pending signatures from its database)")
    try:
        wrk = [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
        ]
        env = dict(os.environ)
        if args.scenario == "sign":
            env.update(SLUG=SLUG, FORM_TOKEN=form_token(base), RUN=secrets.token_hex(4))
            command = wrk + ["-s", str(HERE / "sign.lua"), base]
        elif args.scenario == "verify":
            env.update(SLUG=SLUG, FORM_TOKEN=form_token(base), RUN=secrets.token_hex(4))
            print("signing first, to have signatures to confirm", flush=True)
            sign = wrk + ["-s", str(HERE / "sign.lua"), base]
            subprocess.run(sign, env=env, check=True, stdout=subprocess.DEVNULL)
            tokens = Path(data_dir) / "verify-paths.txt"
            write_verify_paths(data_dir, tokens)
            env.update(TOKENS=str(tokens))
            command = wrk + ["-s", str(HERE / "verify.lua"), base]
        elif args.scenario == "list":
            command = wrk + [f"{base}/p/{SLUG}/signatures.json"]
        elif args.scenario == "page":
            command = wrk + [f"{base}/p/{SLUG}"]
        else:
            command = wrk + [f"{base}/p/{SLUG}/count.json"]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, env=env, check=True)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
