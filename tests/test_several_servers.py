"""Two `petitions serve --no-worker` processes and one `petitions worker` on one database,
as behind a load balancer: what one server takes in, the other lists, counts and streams;
every email goes out once; limits and throttles count over both
(docs/operations.md, "Several app servers")."""

from __future__ import annotations

import asyncio
import collections
import re

import httpx
import pytest
from fleet import (
    POOLER_TROUBLE,
    SITE,
    SLUG,
    confirmations,
    count_of,
    event_stream,
    form_token,
    sign,
    start_worker,
    stopped_log,
)
from served import serve, stop

from admin_support import make_admin
from conftest import make_petition, wait_until
from petitions.login_throttle import MAX_FAILURES_PER_ACCOUNT_AND_NETWORK
from petitions.tokens import FORM_TOKEN_USES

pytestmark = pytest.mark.slow
SIGN_LIMIT = 4


@pytest.fixture
async def fleet(db_url, conn, mail_server, tmp_path):
    """(server A's address, server B's address, the database connection)."""
    await make_petition(conn)
    environ = {"BASE_URL": SITE, "SIGN_LIMIT_PER_HOUR": str(SIGN_LIMIT),
               "TRUSTED_PROXIES": "127.0.0.1"}  # fmt: skip
    worker_log = tmp_path / "worker.log"
    started = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            started.append(serve(db_url, tmp_path / name, **environ))
        worker = start_worker(
            db_url, tmp_path, worker_log, SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(mail_server.port), **environ,
        )  # fmt: skip
        try:
            yield started[0][1], started[1][1], conn
        finally:
            stop(worker)
    finally:
        logs = "".join(stopped_log(process) for process, _ in started)
    logs += worker_log.read_text(errors="replace") if worker_log.exists() else ""
    assert not [t for t in POOLER_TROUBLE if t in logs], logs[-3000:]


def client(base: str, network: str = "192.0.2.1") -> httpx.AsyncClient:
    """A visitor at `network`, as the load balancer in front reports it."""
    return httpx.AsyncClient(base_url=base, timeout=30, headers={"X-Forwarded-For": network})


async def test_what_one_server_takes_in_the_other_lists_counts_and_streams(fleet, mail_server):
    a, b, conn = fleet
    async with client(a) as at_a, client(b) as at_b, event_stream(b) as seen_by_b:
        assert (await sign(at_a, "leyla@example.org", "Leyla Ahmadi")).status_code == 303
        [link] = await confirmations(mail_server, 1)
        assert (await at_a.get(link)).status_code == 200
        await wait_until(
            lambda: any(k == "signature" for k, _ in seen_by_b), what="B's stream to see it"
        )
        for http in (at_a, at_b):
            assert "Leyla Ahmadi" in (await http.get(f"/p/{SLUG}/signatures")).text
            await wait_until(lambda http=http: _counts(http, 1), what="a count of 1")

    # A burst through both, each signer from a network of their own: one email each.
    async def signed(i: int) -> int:
        async with client(a if i % 2 else b, f"10.{i}.0.7") as http:
            return (await sign(http, f"s{i}@union{i}.example", f"Signer {i}")).status_code

    assert await asyncio.gather(*(signed(i) for i in range(30))) == [303] * 30
    links = await confirmations(mail_server, 31)
    async with client(a) as at_a, client(b) as at_b:
        pages = await asyncio.gather(
            *((at_a if n % 2 else at_b).get(link) for n, link in enumerate(links[1:]))
        )
        assert {p.status_code for p in pages} == {200}
        for http in (at_a, at_b):
            await wait_until(lambda http=http: _counts(http, 31), what="a count of 31")

    # Every email the outbox holds went out, and once: receipts, if any, included.
    async def all_sent() -> bool:
        return not await conn.fetchval("SELECT count(*) FROM outbox WHERE status <> 'sent'")

    await wait_until(all_sent, 30, what="the outbox to be delivered")
    outbox = await conn.fetchval("SELECT count(*) FROM outbox")
    received = collections.Counter(m["Message-ID"] for m in mail_server.messages)
    assert len(mail_server.messages) == outbox and set(received.values()) == {1}


async def test_limits_and_throttles_count_over_both_servers(fleet, mail_server):
    a, b, conn = fleet
    # One office network signing through both: past SIGN_LIMIT, signatures are held.
    office = "203.0.113.{}"
    for i in range(SIGN_LIMIT + 2):
        async with client(a if i % 2 else b, office.format(10 + i)) as http:
            response = await sign(http, f"w{i}@branch{i}.example", f"Worker {i}")
            assert response.status_code == 303
    links = await confirmations(mail_server, SIGN_LIMIT + 2)
    async with client(a) as at_a:
        for link in links:
            assert (await at_a.get(link)).status_code == 200
    statuses = [r["status"] for r in await conn.fetch("SELECT status FROM signatures ORDER BY id")]
    assert statuses == ["verified"] * SIGN_LIMIT + ["held"] * 2

    # A form token's submissions are counted over both servers.
    async with client(a, "198.51.100.1") as at_a, client(b, "198.51.100.2") as at_b:
        token = await form_token(at_a)
        for n in range(FORM_TOKEN_USES):
            http = at_b if n % 2 else at_a
            response = await sign(http, f"t{n}@tokens{n}.example", "Token User", form_token=token)
            assert response.status_code == 303
        refused = await sign(at_b, "last@tokens.example", "Token User", form_token=token)
        assert refused.status_code == 400
        assert "This form was already sent several times" in refused.text

    # Wrong passwords for one account from one network, spread over both servers.
    await make_admin(conn, "owner@example.org")
    async with client(a, "198.51.100.9") as at_a, client(b, "198.51.100.9") as at_b:
        answers = []
        for n in range(MAX_FAILURES_PER_ACCOUNT_AND_NETWORK + 1):
            http = at_b if n % 2 else at_a
            page = await http.get("/admin/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            response = await http.post(
                "/admin/login",
                data={"email": "owner@example.org", "password": "wrong", "csrf_token": csrf},
            )
            answers.append(response.status_code)
    assert 429 not in answers[:-1] and answers[-1] == 429, answers


async def _counts(http: httpx.AsyncClient, expected: int) -> bool:
    return await count_of(http) == expected
