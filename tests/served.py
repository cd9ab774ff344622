"""A real `petitions serve` process for tests, as in production."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import SECRET, free_port


def serve(
    db_url: str, tmp_path: Path, *options: str, **environ: str
) -> tuple[subprocess.Popen, str]:
    """`petitions serve` on a free loopback port, answering /healthz; (process, address).
    BASE_URL is that address unless `environ` says otherwise."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "SECRET_KEY": SECRET,
        "DATA_DIR": str(tmp_path),
        "BASE_URL": base,
        "LOG_LEVEL": "WARNING",
        **environ,
    }
    env.pop("PETITIONS_HEADER_TIMEOUT", None)
    return start_serving(port, env, tmp_path, *options), base


def start_serving(port: int, env: dict, cwd: Path, *options: str) -> subprocess.Popen:
    """`petitions serve --no-worker` on loopback `port` with `env`, once it answers /healthz."""
    process = subprocess.Popen(
        [sys.executable, "-m", "petitions.cli", "serve", "--port", str(port), "--no-worker",
         *options],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError("serve did not answer /healthz")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
