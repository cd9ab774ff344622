"""The processes a benchmark run needs: the embedded PostgreSQL, `petitions serve`,
the bare Starlette app, and the machine they run on.

One embedded PostgreSQL (pgserver, in DATA_DIR/postgres) serves the whole run and
holds two databases: `bench_small` (the demo petition and a pool of pending
signatures, made afresh each run) and `bench_large` (the demo petition with a
million generated signatures, kept between runs when --data-dir is given). Every
server is started for one figure, on its own free loopback port, and stopped after
it; `petitions serve` reaches the database by DATABASE_URL, with the data dir's
SECRET_KEY.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from petitions.db import asyncpg_dsn, start_embedded_server, with_database_name
from petitions.settings import load_settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PETITIONS = str(Path(sys.executable).with_name("petitions"))  # this venv's console script
SLUG = "free-haft-tapeh-workers"


@dataclass(frozen=True)
class Cluster:
    """The embedded PostgreSQL of the run."""

    data_dir: Path
    server_url: str  # the cluster; database_url() names a database on it
    secret_key: str
    bin_dir: Path  # pgserver's PostgreSQL binaries (psql)

    def database_url(self, name: str) -> str:
        return with_database_name(self.server_url, name)

    def dsn(self, name: str) -> str:
        return asyncpg_dsn(self.database_url(name))


@contextmanager
def embedded_cluster(data_dir: Path | None) -> Iterator[Cluster]:
    """Start (or join) the embedded PostgreSQL in `data_dir` (a temporary directory,
    removed afterwards, when None) and stop it at the end."""
    temporary = data_dir is None
    path = Path(tempfile.mkdtemp(prefix="petitions-bench-")) if temporary else data_dir
    path.mkdir(parents=True, exist_ok=True)
    settings = load_settings({"DATA_DIR": str(path)}, env_file=None)
    handle = start_embedded_server(path)
    try:
        import pgserver

        bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
        yield Cluster(path, handle.get_uri(), settings.secret_key, bin_dir)
    finally:
        handle.cleanup()
        if temporary:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, process: subprocess.Popen, path: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(base + path, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{base}{path} did not answer within {seconds:.0f} s")


@dataclass
class Server:
    process: subprocess.Popen
    base: str
    command: list[str]
    environment: dict[str, str]  # the settings given, for the report

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(LOG_LEVEL="WARNING", **extra)
    return env


@contextmanager
def petitions_server(
    cluster: Cluster,
    database: str,
    settings: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
    workers: int = 1,
) -> Iterator[Server]:
    """`petitions serve --no-worker` on `database`, stopped at the end."""
    port = free_port()
    given = dict(settings or {})
    env = _environment(
        {
            "DATABASE_URL": cluster.database_url(database),
            "SECRET_KEY": cluster.secret_key,
            "DATA_DIR": str(cluster.data_dir),
            **given,
        }
    )
    command = [PETITIONS, "serve", "--port", str(port), "--no-worker", *options]
    if workers != 1:
        command += ["--workers", str(workers)]
    server = Server(subprocess.Popen(command, env=env), f"http://127.0.0.1:{port}", command, given)
    try:
        wait_healthy(server.base, server.process, "/healthz")
        yield server
    finally:
        server.stop()


@contextmanager
def bare_server(options: tuple[str, ...] = ()) -> Iterator[Server]:
    """bench/bare_app.py: a Starlette JSON route on `petitions serve`'s uvicorn settings."""
    port = free_port()
    command = [sys.executable, str(HERE / "bare_app.py"), "--port", str(port), *options]
    server = Server(
        subprocess.Popen(command, env=_environment({})), f"http://127.0.0.1:{port}", command, {}
    )
    try:
        wait_healthy(server.base, server.process, "/count.json")
        yield server
    finally:
        server.stop()


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def machine(cluster: Cluster) -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])

    async def postgres() -> str:
        conn = await asyncpg.connect(cluster.dsn("postgres"))
        try:
            version = await conn.fetchval("SHOW server_version")
            buffers = await conn.fetchval("SHOW shared_buffers")
            sync = await conn.fetchval("SHOW synchronous_commit")
            return f"{version} (embedded, pgserver; shared_buffers {buffers}, synchronous_commit {sync})"
        finally:
            await conn.close()

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "CPU": f"{model}, {os.cpu_count()} logical CPUs",
        "RAM": f"{total_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "PostgreSQL": asyncio.run(postgres()),
        "wrk": (wrk.stdout or wrk.stderr).split("\n")[0].strip(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
