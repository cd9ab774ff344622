"""SIGTERM, as systemd and `docker stop` send it: `petitions serve` lets in-flight
requests finish, ends event streams with a reconnect hint, stops the embedded
PostgreSQL it started and exits with 0; `petitions worker` gives back its claims.
And the warnings `serve` gives at start about BASE_URL and the address served."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
import pytest
from served import serve, stop

from conftest import SECRET, MailServer, free_port, make_petition, wait_until
from petitions.serving import address_warnings
from petitions.settings import load_settings

SIGN_FORM = {"kind": "individual", "name": "Leyla Ahmadi", "email": "leyla@example.org",
             "country": "SE", "display": "public"}  # fmt: skip


async def refuses_connections(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await reader.read(4096)
        assert chunk, f"the connection ended before {marker!r}: {data!r}"
        data += chunk
    return data


@pytest.mark.slow  # a `petitions serve` process
async def test_sigterm_finishes_a_request_in_flight_and_ends_event_streams(conn, db_url, tmp_path):
    await make_petition(conn)
    process, base = serve(db_url, tmp_path)
    port = int(base.rsplit(":", 1)[1])
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/p/release-them")
        token = re.findall(r'name="form_token" value="([^"]+)"', page.text)[0]
        body = str(httpx.QueryParams({**SIGN_FORM, "form_token": token})).encode()

        # An event stream, open and past its first event.
        stream_reader, stream_writer = await asyncio.open_connection("127.0.0.1", port)
        stream_writer.write(
            f"GET /p/release-them/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        )
        opening = await asyncio.wait_for(read_until(stream_reader, b"event: count"), 20)

        # A sign request whose body is still on its way.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /p/release-them/sign HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: {base}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        # A whole request on another connection: once it is answered, the server has
        # read what reached it before, so the sign request is under way.
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/healthz")).status_code == 200

        process.send_signal(signal.SIGTERM)
        await wait_until(lambda: refuses_connections(port), seconds=20)

        # The stream ends by itself, telling its client to come back soon.
        rest = await asyncio.wait_for(stream_reader.read(), 20)
        assert b"event: count" in opening
        assert re.search(rb"retry: \d+\n: server restarting", rest), rest
        stream_writer.close()

        # The request in flight completes, and its signature is stored.
        writer.write(body[10:])
        answer = await asyncio.wait_for(reader.read(), 20)
        assert answer.startswith(b"HTTP/1.1 303"), answer[:200]
        writer.close()
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert await conn.fetchval("SELECT count(*) FROM signatures") == 1
    finally:
        stop(process)


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def embedded_data_dir():
    """A DATA_DIR of the test's own, with a short path (the server's socket lives in it);
    whatever PostgreSQL is left running in it at the end is stopped."""
    data_dir = Path(tempfile.mkdtemp(prefix="petitions-stop-"))
    try:
        yield data_dir
    finally:
        pid_file = data_dir / "postgres" / "postmaster.pid"
        if pid_file.exists() and running(pid := postmaster_pid(data_dir)):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            psutil.Process(pid).wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


async def serve_embedded(data_dir: Path, *options: str) -> subprocess.Popen:
    """`petitions serve` with no DATABASE_URL, once it answers."""
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(data_dir), "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING"}
    for name in ("DATABASE_URL", "BASE_URL", "PETITIONS_HEADER_TIMEOUT"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "petitions.cli", "serve", "--port", str(port), "--no-worker",
         *options],
        env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    async def answers() -> bool:
        assert process.poll() is None, process.stderr.read()
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return response.status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_until(answers, seconds=90, interval=0.2)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


async def terminated(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow  # starts an embedded PostgreSQL of its own
async def test_sigterm_stops_the_embedded_postgres_serve_started(embedded_data_dir):
    # Several app processes (one serve alone: the test below).
    process = await serve_embedded(embedded_data_dir, "--workers", "2")
    pid = postmaster_pid(embedded_data_dir)
    assert running(pid)
    assert await terminated(process) == 0, process.stderr.read()
    assert not running(pid)


@pytest.mark.slow  # starts an embedded PostgreSQL of its own
async def test_the_embedded_postgres_is_stopped_by_its_last_user_even_after_a_kill(
    embedded_data_dir,
):
    first = await serve_embedded(embedded_data_dir)
    pid = postmaster_pid(embedded_data_dir)
    first.kill()  # leaves its name in pgserver's list of users
    first.wait()
    second = await serve_embedded(embedded_data_dir)
    third = await serve_embedded(embedded_data_dir)  # joins the same server
    assert postmaster_pid(embedded_data_dir) == pid
    assert await terminated(second) == 0
    assert running(pid)  # the third still uses it
    assert await terminated(third) == 0
    assert not running(pid)


@pytest.mark.slow  # a `petitions worker` process
async def test_sigterm_makes_the_worker_give_back_the_email_it_could_not_finish(
    conn, db_url, tmp_path
):
    class Stuck:
        """An SMTP server that takes each email and never answers."""

        async def handle_DATA(self, server, session, envelope):
            await asyncio.sleep(3600)

    smtp = MailServer(free_port())
    smtp.inbox = Stuck()
    smtp.start()
    await conn.execute(
        "INSERT INTO outbox (purpose, recipient, subject, body_text, message_id) "
        "SELECT 'notice', 'r' || i || '@example.org', 'Hello', 'text', '<' || i || '@t>' "
        "FROM generate_series(1, 2) AS i"
    )
    env = {**os.environ, "DATABASE_URL": db_url, "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING",
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port)}  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "petitions.cli", "worker"], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        claimed = "SELECT count(*) FROM outbox WHERE claimed_by IS NOT NULL"
        await wait_until(lambda: conn.fetchval(claimed), seconds=60, interval=0.1)
        assert await conn.fetchval(claimed) == 1  # one email at a time
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        rows = await conn.fetch("SELECT status, attempts, claimed_by, claimed_until FROM outbox")
        assert [(r["status"], r["attempts"]) for r in rows] == [("waiting", 0)] * 2
        assert all(r["claimed_by"] is None and r["claimed_until"] is None for r in rows)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        smtp.stop()


# Warnings at start --------------------------------------------------------------


def settings_with(**environ: str):
    environ = {"DATABASE_URL": "postgresql://localhost/petitions", "SECRET_KEY": SECRET,
               **environ}  # fmt: skip
    return load_settings(environ, env_file=None)


def test_a_base_url_on_another_port_is_warned_about():
    warnings = address_warnings(settings_with(BASE_URL="http://127.0.0.1:8000"), "127.0.0.1", 8766)
    assert [level for level, _ in warnings] == [logging.WARNING]
    assert "port 8000" in warnings[0][1] and "BASE_URL=http://127.0.0.1:8766" in warnings[0][1]


def test_a_base_url_this_server_cannot_be_reached_at_is_warned_about():
    public = settings_with(BASE_URL="http://petitions.example.org:8000")
    assert [level for level, _ in address_warnings(public, "127.0.0.1", 8000)] == [logging.WARNING]
    loopback = settings_with(BASE_URL="http://127.0.0.1:8000")
    (level, message), *_ = address_warnings(loopback, "0.0.0.0", 8000)
    assert level == logging.WARNING and "all interfaces" in message


def test_matching_addresses_and_a_proxy_in_front_are_not_warned_about():
    assert (
        address_warnings(settings_with(BASE_URL="http://127.0.0.1:8000"), "127.0.0.1", 8000) == []
    )
    assert address_warnings(settings_with(BASE_URL="http://10.0.0.5:8000"), "0.0.0.0", 8000) == []
    # A proxy on 443 in front of port 8000, or one named by TRUSTED_PROXIES: one INFO line.
    for proxied in (
        settings_with(BASE_URL="https://petitions.example.org"),
        settings_with(BASE_URL="http://10.0.0.5:8080", TRUSTED_PROXIES="10.0.0.1"),
    ):
        assert [level for level, _ in address_warnings(proxied, "127.0.0.1", 8000)] == [
            logging.INFO
        ]
    # Without BASE_URL, serve names its own address (and warns about 0.0.0.0 itself).
    assert address_warnings(settings_with(), "127.0.0.1", 8766) == []


@pytest.mark.slow  # a `petitions serve` process
async def test_serve_logs_the_port_mismatch(db_url, tmp_path):
    process, base = serve(db_url, tmp_path, BASE_URL="http://127.0.0.1:8000")
    port = base.rsplit(":", 1)[1]
    stop(process)
    log = process.stderr.read()
    assert f"names port 8000 but this server listens on port {port}" in log, log
