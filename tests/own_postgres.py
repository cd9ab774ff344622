"""A PostgreSQL server of a test's own, from the binaries the embedded server ships, that
the test may stop, restart (fast or immediate) and put on small disks that fill up.

It listens on a loopback TCP port (no Unix socket that disappears while it restarts),
runs as the `pgserver` system user when the tests run as root (PostgreSQL refuses
root, as pgserver does), and is stopped, its disks unmounted and its directory
removed by `close()`, whatever state the test left it in.

A small disk is a tmpfs mounted for the test, which needs root and a `mount` the
machine allows (MountUnavailable otherwise: the test skips). A ballast file takes its
free space (`fill`) and is removed to give the space back (`give_back`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pgserver

from conftest import free_port

BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",  # nothing here survives the test; a restart is not a power cut
    "shared_buffers": "16MB",
    "max_connections": "60",
    "log_min_messages": "warning",
    "restart_after_crash": "on",
}


class MountUnavailable(Exception):
    pass


class OwnPostgres:
    def __init__(
        self, data_disk_mb: int | None = None, wal_disk_mb: int | None = None,
        wal_segment_mb: int = 16,
    ) -> None:  # fmt: skip
        """`data_disk_mb`, `wal_disk_mb`: the data directory, or its WAL (pg_wal), each on
        a disk of its own of that size."""
        self.base = Path(tempfile.mkdtemp(prefix="petitions-own-pg-"))
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.user = None
        self.disks: dict[str, Path] = {}  # "data", "wal": the mount points
        self.data = self.base / "data" / "data"
        if os.geteuid() == 0:
            from pgserver.utils import ensure_user_exists

            self.user = ensure_user_exists("pgserver").pw_name
            self.base.chmod(0o755)
            shutil.chown(self.base, self.user, self.user)
        try:
            self.data = self._directory("data", data_disk_mb) / "data"
            wal = self._directory("wal", wal_disk_mb) / "pg_wal"
            self._run(
                "initdb", "-D", self.data, f"--waldir={wal}", "--auth=trust", "--encoding=utf8",
                "-U", "postgres", f"--wal-segsize={wal_segment_mb}",
            )  # fmt: skip
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/petitions"

    # Starting and stopping ------------------------------------------------------------

    def start(self) -> None:
        options = " ".join(f"-c {name}={value!r}" for name, value in SETTINGS.items())
        options += f" -p {self.port}"
        self._pg_ctl("-l", self.log, "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-l", self.log, "-m", mode, "restart")

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid while it runs (from postmaster.pid, as pg_ctl reads it)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    # Full disks -----------------------------------------------------------------------

    def fill(self, disk: str, leave_bytes: int = 0) -> None:
        """Take all the free space of `disk` ("data" or "wal") but `leave_bytes`."""
        free = shutil.disk_usage(self.disks[disk]).free - leave_bytes
        if free > 0:
            with open(self.disks[disk] / "ballast", "ab") as ballast:
                os.posix_fallocate(ballast.fileno(), ballast.tell(), free)

    def give_back(self, disk: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.disks[disk] / "ballast").unlink()

    # Setup and cleanup ----------------------------------------------------------------

    def _directory(self, name: str, disk_mb: int | None) -> Path:
        """A folder for the server's `name` files: on a disk of its own, with `disk_mb`."""
        folder = self.base / name
        folder.mkdir()
        if disk_mb is not None:
            self._mount(folder, disk_mb)
            self.disks[name] = folder
        if self.user is not None:
            shutil.chown(folder, self.user, self.user)
        return folder

    def _mount(self, folder: Path, size_mb: int) -> None:
        mount = shutil.which("mount")
        if mount is None or os.geteuid() != 0:
            raise MountUnavailable("a small disk is a tmpfs, mounted as root with `mount`")
        done = subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(folder)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise MountUnavailable(f"mount refused a tmpfs: {done.stderr.strip()}")

    def _pg_ctl(self, *args) -> None:
        self._run("pg_ctl", "-D", self.data, "-w", "-t", "60", *args)

    def _run(self, program: str, *args) -> None:
        # Output to a file, not a pipe: a server pg_ctl starts inherits it and would
        # hold a pipe open for as long as it runs.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(
                [str(BIN / program), *map(str, args)], user=self.user, stdout=output,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120, cwd=self.base,
            )  # fmt: skip
            if done.returncode != 0:
                output.seek(0)
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"{program} failed: {output.read()}\n{log[-3000:]}")

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        pid = self.postmaster_pid()
        if pid is not None:  # pg_ctl could not stop it: end it
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        for folder in self.disks.values():
            subprocess.run(["umount", "-l", str(folder)], check=False)
        self.disks.clear()
        shutil.rmtree(self.base, ignore_errors=True)
