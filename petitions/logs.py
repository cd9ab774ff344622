"""Logging: plain text for development, one JSON object per line for production, and
a request id that follows every line a request causes.

`LOG_FORMAT=json` writes each record as one JSON object (time, level, logger, message,
request_id, and for access lines method, route, status and duration_ms). The request id
comes from an incoming `X-Request-ID` when it is short and plain, else it is made here;
`RequestLog` puts it in a context variable, so the lines logged by tasks the request
starts carry it too, and sends it back in the response's `X-Request-ID`.

Nothing a signer typed or is reached by goes into a log line here: access lines name
the route's pattern (`/verify/{token}`), never the path or its query string, and no
client address. In JSON lines, anything shaped like an email address is masked as well,
as a last guard for messages written elsewhere (an SMTP error quoting its recipient).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "petitions.access"

# The id of the request being answered; "-" outside requests (the worker, start-up).
request_id: ContextVar[str] = ContextVar("request_id", default="-")
# Its route's pattern, once answered: for the error page of an unhandled exception,
# which Starlette logs outside the router's scope.
request_route: ContextVar[str] = ContextVar("request_route", default="unmatched")

_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# Methods named as such in logs and metrics; any other is "other" (a bounded label).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


_HANDLER_NAME = "petitions"


class _Stderr(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (as logging's last resort does),
    not to the stream it was when logging was set up."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger's one handler, on stderr (or `stream`), in the chosen format.
    Called once per process (the `petitions` command, and each uvicorn worker process)."""
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call; others' stay
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if level != "DEBUG":
        logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every start
    logging.getLogger("markdown_it").setLevel(logging.INFO)  # a line per parsing rule
    # Access lines: in JSON logs at INFO; in text logs only at DEBUG, as before.
    shown = log_format == "json" or level == "DEBUG"
    logging.getLogger(ACCESS_LOGGER).setLevel(level if shown else logging.WARNING)


def uvicorn_log_options(log_format: str) -> dict:
    """uvicorn.run's logging options. Its own access log names the client's address and
    the raw path (a confirmation token): it stays off, `RequestLog` writes ours. In JSON
    logs uvicorn's lines go through the root handler instead of its own."""
    options: dict = {"access_log": False}
    if log_format == "json":
        options["log_config"] = None
    return options


class RequestIdFilter(logging.Filter):
    """Stamps each record with the request id of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    FIELDS = ("method", "route", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_emails(record.getMessage()),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        for field in self.FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = mask_emails(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def mask_emails(text: str) -> str:
    """`text` with anything shaped like an email address replaced by <email>."""
    return _EMAIL.sub("<email>", text) if "@" in text else text


def new_request_id() -> str:
    return os.urandom(8).hex()


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's (or the proxy's) X-Request-ID, if it is short and plain."""
    for name, value in headers:
        if name == b"x-request-id":
            return value.decode("ascii") if _SAFE_REQUEST_ID.fullmatch(value) else None
    return None


def route_pattern(scope: Scope) -> str:
    """The matched route's path pattern (`/verify/{token}`, never the token itself);
    "unmatched" when no route matched. The router records the route in the scope."""
    return getattr(scope.get("route"), "path", "unmatched")


def logged_path(request) -> str:
    """What a log line may say of a request's address: its route's pattern."""
    if "route" in request.scope:
        return route_pattern(request.scope)
    return request_route.get()


class RequestLog:
    """Gives each HTTP request its id, sends it back in `X-Request-ID`, and writes one
    access line when the request ends.

    A response a shared cache may keep (`Cache-Control: public`: counts, badges, the
    transparency log) gets no `X-Request-ID`, or a CDN would hand one visitor's id to
    the next; such responses are then also the same from the count.json fast path
    (counter_fast_path.py), which sits outside this middleware and logs nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.access = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope["headers"]) or new_request_id()
        # Not reset afterwards: each request runs in a task of its own, and the error
        # page of an unhandled exception is logged after this middleware returns.
        request_id.set(rid)
        header = (b"x-request-id", rid.encode("ascii"))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers") or []
                if not _publicly_cached(headers):
                    message["headers"] = [*headers, header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = route_pattern(scope)
            request_route.set(route)
            if self.access.isEnabledFor(logging.INFO):
                method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                self.access.info(
                    "%s %s %d %.1f ms", method, route, status, duration_ms,
                    extra={"method": method, "route": route, "status": status,
                           "duration_ms": duration_ms},
                )  # fmt: skip


def _publicly_cached(headers) -> bool:
    for name, value in headers:
        if name.lower() == b"cache-control":
            return b"public" in value
    return False
