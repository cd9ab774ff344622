"""Logs (logs.py): JSON lines with a request id, access lines by route pattern, and no
signer's email, name, address, link token or receipt in any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import httpx
import pytest
from served import serve, stop
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from conftest import make_petition
from petitions.delivery import deliver_due
from petitions.logs import ACCESS_LOGGER, configure_logging
from petitions.settings import SettingsError, load_settings

SIGNER_ADDRESS = "198.51.100.23"
SIGNER = {
    "kind": "individual",
    "name": "Leyla Ahmadi",
    "email": "leyla.ahmadi@example.org",
    "country": "SE",
    "city": "Malmö",
    "occupation": "Bus driver",
    "comment": "Solidarity from Malmö!",
    "display": "public",
    "updates": "1",
}
RECEIPT = re.compile(r"[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}")
REQUEST_ID = re.compile(r"[0-9a-f]{16}")


# What the test itself runs beside the app (its HTTP client, its SMTP server) logs too.
TEST_SIDE = ("httpx", "httpcore", "mail.log")


class JsonLogs:
    """What the root logger wrote, one JSON object per line, the app's lines only."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def lines(self) -> list[dict]:
        lines = [json.loads(line) for line in self.stream.getvalue().splitlines()]
        return [e for e in lines if not e["logger"].startswith(TEST_SIDE)]

    @property
    def text(self) -> str:
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in self.lines)

    def access(self, route: str) -> list[dict]:
        return [e for e in self.lines if e["logger"] == ACCESS_LOGGER and e["route"] == route]


@pytest.fixture
def json_logs():
    """LOG_FORMAT=json at DEBUG for one test; the logging set-up is put back after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    loggers = [logging.getLogger(name) for name in (ACCESS_LOGGER, "pgserver", "markdown_it")]
    levels = [logger.level for logger in loggers]
    logs = JsonLogs()
    configure_logging("DEBUG", "json", stream=logs.stream)
    try:
        yield logs
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def client_from(app, address: str = SIGNER_ADDRESS) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_access_lines_are_json_with_the_request_id_sent_back(app, conn, json_logs):
    await make_petition(conn)
    async with client_from(app) as client:
        page = await client.get("/p/release-them/signatures?q=Leyla")
        missing = await client.get("/p/no-such-petition")
    assert page.status_code == 200 and missing.status_code == 404
    request_id = page.headers["x-request-id"]
    assert REQUEST_ID.fullmatch(request_id)
    assert missing.headers["x-request-id"] != request_id
    [line] = json_logs.access("/p/{slug}/signatures")
    assert line["request_id"] == request_id
    assert (line["method"], line["status"], line["level"]) == ("GET", 200, "INFO")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert line["message"] == f"GET /p/{{slug}}/signatures 200 {line['duration_ms']:.1f} ms"
    [gone] = json_logs.access("/p/{slug}")
    assert gone["status"] == 404 and gone["request_id"] == missing.headers["x-request-id"]
    # The pattern, never the path or its query string.
    assert "no-such-petition" not in json_logs.text and "Leyla" not in json_logs.text


async def test_an_incoming_request_id_is_kept_only_when_short_and_plain(app, conn, json_logs):
    await make_petition(conn)
    async with client_from(app) as client:
        for sent, kept in (
            ("lb-7f3a.2_B", True),
            ("x" * 64, True),
            ("x" * 65, False),
            ("two words", False),
            ("<script>", False),
            ('a"}, "level": "ERROR', False),
        ):
            answer = await client.get("/p/release-them", headers={"X-Request-ID": sent})
            echoed = answer.headers["x-request-id"]
            assert (echoed == sent) == kept, sent
            if not kept:
                assert REQUEST_ID.fullmatch(echoed) and sent not in json_logs.text
            assert json_logs.access("/p/{slug}")[-1]["request_id"] == echoed


async def test_answers_a_shared_cache_may_keep_carry_no_request_id(app, conn, json_logs):
    await make_petition(conn)
    async with client_from(app) as client:
        for _ in range(2):  # from the route, then from memory (counter_fast_path.py)
            count = await client.get("/p/release-them/count.json")
            assert count.headers["cache-control"].startswith("public")
            assert "x-request-id" not in count.headers
        assert "x-request-id" in (await client.get("/p/release-them")).headers


async def test_lines_logged_while_answering_carry_the_requests_id(app, conn, json_logs):
    work = logging.getLogger("petitions.test_work")

    async def in_a_task(request):
        async def later():
            work.info("working for the request")

        await asyncio.create_task(later())
        return PlainTextResponse("done")

    async def failing(request):
        raise RuntimeError("it broke")

    app.router.routes.append(Route("/test/work", in_a_task))
    app.router.routes.append(Route("/test/broken/{token}", failing))
    async with client_from(app) as client:
        done = await client.get("/test/work")
        broken = await client.get("/test/broken/s3cret-link-token")
    assert done.status_code == 200 and broken.status_code == 500
    [worked] = [e for e in json_logs.lines if e["logger"] == "petitions.test_work"]
    assert worked["request_id"] == done.headers["x-request-id"]
    [error] = [e for e in json_logs.lines if e["level"] == "ERROR"]
    [access] = json_logs.access("/test/broken/{token}")
    assert access["status"] == 500 and error["request_id"] == access["request_id"] != "-"
    assert "RuntimeError: it broke" in error["exception"]
    assert "/test/broken/{token}" in error["message"]
    assert "s3cret-link-token" not in json_logs.text


async def test_a_sign_and_confirm_leaves_no_signer_data_in_the_logs(
    app, conn, json_logs, mail_settings, mail_server
):
    await make_petition(conn)
    async with client_from(app) as client:
        page = await client.get("/p/release-them")
        token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
        signed = await client.post("/p/release-them/sign", data={**SIGNER, "form_token": token})
        assert signed.status_code == 303
        assert await deliver_due(app.state.db, mail_settings) == 1
        [message] = mail_server.messages
        text = message.get_body(("plain",)).get_content()
        links = dict(re.findall(r"http://\S+/(verify|withdraw)/([^?\s]+)", text))
        confirmed = await client.get(f"/verify/{links['verify']}")
        assert confirmed.status_code == 200
        [receipt] = set(RECEIPT.findall(confirmed.text))
        checked = await client.post("/p/release-them/receipt", data={"receipt": receipt})
        assert checked.status_code == 200
        assert await deliver_due(app.state.db, mail_settings) >= 1  # the receipt's email
        withdraw = await client.get(f"/withdraw/{links['withdraw']}")
        assert withdraw.status_code == 200
    logged = json_logs.text
    for route in ("/p/{slug}/sign", "/verify/{token}", "/p/{slug}/receipt", "/withdraw/{token}"):
        assert json_logs.access(route), route  # the logs were on
    secrets = [SIGNER["email"], "leyla", "ahmadi", "Malmö", "Bus driver", SIGNER_ADDRESS,
               links["verify"], links["withdraw"], receipt, receipt.replace("-", "")]  # fmt: skip
    for secret in secrets:
        assert secret.lower() not in logged.lower(), secret


def test_log_format_is_text_unless_json_is_asked_for():
    environ = {"SECRET_KEY": "k" * 40, "DATABASE_URL": "postgresql://db/p"}
    assert load_settings(environ, None).log_format == "text"
    assert load_settings({**environ, "LOG_FORMAT": "JSON"}, None).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings({**environ, "LOG_FORMAT": "xml"}, None)


@pytest.mark.slow  # a `petitions serve` process
async def test_serve_with_json_logs_writes_only_json_lines(db_url, conn, tmp_path):
    await make_petition(conn)
    process, base = serve(db_url, tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO")
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            page = await client.get("/p/release-them", headers={"X-Request-ID": "edge-42"})
            assert page.headers["x-request-id"] == "edge-42"
            assert (await client.get("/verify/not-a-real-token")).status_code == 400
    finally:
        stop(process)
    lines = [json.loads(line) for line in process.stderr.read().splitlines()]
    assert any(e["logger"].startswith("uvicorn") for e in lines)  # uvicorn's own, as JSON
    [access] = [e for e in lines if e["request_id"] == "edge-42"]
    assert (access["route"], access["status"]) == ("/p/{slug}", 200)
    assert [e["route"] for e in lines if e["logger"] == ACCESS_LOGGER][-1] == "/verify/{token}"
    assert "not-a-real-token" not in json.dumps(lines)
