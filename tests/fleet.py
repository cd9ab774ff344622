"""Driving real `petitions serve` and `petitions worker` processes as a visitor, an
admin and a mail reader do: for the pooler and several-servers tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from admin_support import PASSWORD, csrf_from
from conftest import SECRET, wait_until

SLUG = "release-them"
# Signs in the tests' own names. BASE_URL is what a load balancer in front of every
# app server would answer to: the links in emails work on any of them.
SITE = "http://127.0.0.1"
# Errors that say a pooler broke a session-scoped thing (prepared statements, LISTEN).
POOLER_TROUBLE = (
    "prepared statement",
    "portal",
    "unhandled error",
    "Traceback",
)


def start_worker(db_url: str, tmp_path: Path, log: Path, **environ: str) -> subprocess.Popen:
    """`petitions worker` delivering to the test's SMTP server; its log goes to `log`."""
    env = {
        **os.environ, "DATABASE_URL": db_url, "SECRET_KEY": SECRET, "DATA_DIR": str(tmp_path),
        "BASE_URL": SITE, "LOG_LEVEL": "WARNING", **environ,
    }  # fmt: skip
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "petitions.cli", "worker"],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip


def stopped_log(process: subprocess.Popen) -> str:
    """Stop a `served.serve` process and return what it wrote to standard error."""
    from served import stop

    stop(process)
    return process.stderr.read() if process.stderr else ""


async def form_token(http: httpx.AsyncClient) -> str:
    page = await http.get(f"/p/{SLUG}")
    assert page.status_code == 200, page.text
    return re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)


async def sign(http: httpx.AsyncClient, email: str, name: str, **extra: str) -> httpx.Response:
    data = {"kind": "individual", "name": name, "email": email, "country": "IR",
            "display": "public", "updates": "1", "form_token": await form_token(http),
            **extra}  # fmt: skip
    return await http.post(f"/p/{SLUG}/sign", data=data)


def verify_path(message) -> str:
    """The confirmation link of a confirmation email, as a path any server answers."""
    text = message.get_body(("plain",)).get_content()
    return "/verify/" + re.search(r"/verify/(\S+)", text).group(1)


async def confirmations(mail_server, count: int) -> list[str]:
    """Wait for `count` confirmation emails (receipts come too) and return their links' paths."""

    def links() -> list[str]:
        return [verify_path(m) for m in mail_server.messages if "/verify/" in str(m)]

    await wait_until(lambda: len(links()) >= count, 30, what=f"{count} confirmation emails")
    return links()


async def count_of(http: httpx.AsyncClient) -> int:
    return (await http.get(f"/p/{SLUG}/count.json")).json()["count"]


@asynccontextmanager
async def event_stream(base: str):
    """An open `/p/SLUG/events` stream; yields a list that fills with (event, data)."""
    seen: list[tuple[str, dict]] = []
    opened = asyncio.Event()

    async def read() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=None) as http:
            async with http.stream("GET", f"/p/{SLUG}/events") as response:
                assert response.status_code == 200
                kind = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind:
                        seen.append((kind, json.loads(line[6:])))
                        opened.set()

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(opened.wait(), 10)  # the opening count event
        yield seen
    finally:
        reader.cancel()
        try:
            await reader
        except (asyncio.CancelledError, httpx.HTTPError):
            pass


async def admin_session(http: httpx.AsyncClient, email: str) -> str:
    """Log `http` in as the admin `email`; return the session's CSRF token."""
    page = await http.get("/admin/login")
    response = await http.post(
        "/admin/login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 303, response.text
    return csrf_from((await http.get("/admin")).text)
