"""How `petitions serve` holds up against slow and oversized requests.

uvicorn bounds keep-alive and concurrency by itself, but with httptools it reads a
request's headers for as long as the client cares to send them, however large: one
connection sending a 64 MiB header stalled a process for seconds, and thousands of
connections that never finish their headers held file descriptors until real visitors
could no longer connect. `GuardedHttpToolsProtocol` adds what nginx calls
`client_header_timeout` and `large_client_header_buffers`:

- a request's headers must arrive within `header_timeout` seconds of its first byte
  (of the connection, for the first request), or the connection is closed;
- headers larger than `max_header_bytes` are answered 431 and the connection closed,
  as soon as that many bytes have come;
- at most a quarter of `max_connections` connections may be half-way through their
  headers at once: a new one closes the oldest. A browser sends its headers in one
  packet and leaves this state within milliseconds; a slowloris never does.

It also holds what `serve` does around that: the warnings at start when BASE_URL and
the address served disagree (`address_warnings`), and the start of a graceful
shutdown, which the protocol passes to the app (`SHUTDOWN_HOOK`) so that event
streams end with a reconnect hint instead of holding the shutdown up.
"""

from __future__ import annotations

import logging
import os
import resource
from collections import OrderedDict
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import in_flight
from .events import MAX_SUBSCRIBERS
from .settings import Settings

PROTOCOL = "petitions.serving:GuardedHttpToolsProtocol"
# The key of the app's lifespan state holding what to call once when a graceful shutdown
# begins (SIGTERM, Ctrl-C): before uvicorn waits for the open responses to end, so that
# event streams, which never end by themselves, can say goodbye and end (app.py).
SHUTDOWN_HOOK = "petitions.begin_shutdown"
# How long open responses may take to finish once a shutdown begins; then they are cut.
# Under `docker stop`'s default of 10 s, with time left for the lifespan's own end.
SHUTDOWN_GRACE_SECONDS = 8
# Worker processes (and the protocol in this one) read the header timeout from here.
HEADER_TIMEOUT_VARIABLE = "PETITIONS_HEADER_TIMEOUT"
# File descriptors kept for the database pool, the listener, logs and the embedded server.
RESERVED_FILES = 100


ALL_INTERFACES = ("0.0.0.0", "::", "")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def address_warnings(settings: Settings, host: str, port: int) -> list[tuple[int, str]]:
    """What to tell the operator at start about BASE_URL and the address served, as
    (log level, message): links and emails name BASE_URL, so one that names another
    port, or a host this server cannot be reached at, sends every signer elsewhere.

    A reverse proxy in front is a legitimate difference (TRUSTED_PROXIES set, or
    BASE_URL on its scheme's own port, 80 or 443, which an app server seldom listens
    on itself): then one INFO line says where links point, and nothing is warned."""
    if not settings.base_url_given:
        return []  # links name the served address (cli._with_served_address)
    base = urlsplit(settings.base_url)
    base_host = (base.hostname or "").lower()
    base_port = base.port or (443 if base.scheme == "https" else 80)
    if (settings.trusted_proxies or base.port is None) and base_port != port:
        return [(logging.INFO, f"links and emails name {settings.base_url} (BASE_URL); "
                 f"this server listens on {host or '*'}:{port}, behind a proxy")]  # fmt: skip
    if base_port != port:
        return [(logging.WARNING,
                 f"BASE_URL {settings.base_url} names port {base_port} but this server "
                 f"listens on port {port}: every link and email will point at port "
                 f"{base_port}. Set BASE_URL to the address visitors use (here "
                 f"BASE_URL={base.scheme}://{base.netloc.rsplit(':', 1)[0]}:{port}), or put "
                 "a proxy on that port and set TRUSTED_PROXIES")]  # fmt: skip
    if settings.trusted_proxies:
        return []
    if host in LOOPBACK_HOSTS and base_host not in LOOPBACK_HOSTS:
        return [(logging.WARNING,
                 f"this server listens on {host} only, but BASE_URL names {base_host}: "
                 "other machines following links cannot reach it. Serve with "
                 "--host 0.0.0.0, or put a proxy in front and set TRUSTED_PROXIES")]  # fmt: skip
    if host in ALL_INTERFACES and base_host in LOOPBACK_HOSTS:
        return [(logging.WARNING,
                 f"serving on all interfaces, but BASE_URL names {base_host}: links and "
                 "emails point at each reader's own machine, and requests for other host "
                 "names are refused. Set BASE_URL to the address visitors use")]  # fmt: skip
    return []


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = 32 * 1024  # request line and headers; cookies included
    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000  # per process, event streams apart; above, 503
    backlog: int = 2048
    stream_connections: int = MAX_SUBSCRIBERS  # per process, on top of max_connections

    def uvicorn_options(self) -> dict:
        """uvicorn.run's options; sets the header timeout in the environment, where the
        protocol of this process and of its worker processes reads it."""
        os.environ[HEADER_TIMEOUT_VARIABLE] = str(self.header_timeout)
        os.environ[in_flight.LIMIT_VARIABLE] = str(self.max_connections)
        return dict(
            http=PROTOCOL,
            # uvicorn hands its config to the protocol: this carries the header limit.
            h11_max_incomplete_event_size=self.max_header_bytes,
            timeout_keep_alive=self.keep_alive_timeout,
            # Event streams come on top of the other connections (in_flight.py).
            limit_concurrency=self.max_connections + self.stream_connections,
            backlog=self.backlog,
        )


def raise_file_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards `wanted` (within the hard
    limit; many systems start processes at 1,024); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def fitting_connections(limits: ServerLimits) -> ServerLimits:
    """`limits` with fewer event streams, then fewer other connections, if need be, to
    fit the open-file limit."""
    files = raise_file_limit(limits.max_connections + limits.stream_connections + RESERVED_FILES)
    room = files - RESERVED_FILES
    if limits.max_connections + limits.stream_connections <= room:
        return limits
    connections = max(16, min(limits.max_connections, room))
    return replace(
        limits, max_connections=connections, stream_connections=max(0, room - connections)
    )


class _Unfinished:
    """This process's connections that are still sending a request's headers, oldest first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.connections: OrderedDict[int, GuardedHttpToolsProtocol] = OrderedDict()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = config.h11_max_incomplete_event_size or 32 * 1024
        self.header_timeout = float(os.environ.get(HEADER_TIMEOUT_VARIABLE) or 10)
        unfinished = getattr(server_state, "petitions_unfinished", None)
        if unfinished is None:
            cap = max(16, (config.limit_concurrency or 1000) // 4)
            unfinished = server_state.petitions_unfinished = _Unfinished(cap)
        self.unfinished: _Unfinished = unfinished
        self.reading_headers = False
        self.header_bytes = 0
        self.header_timer = None

    # The connection --------------------------------------------------------------

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._begin_headers()

    def data_received(self, data: bytes) -> None:
        if self.reading_headers:
            self.header_bytes += len(data)
        super().data_received(data)
        # Counted before parsing, judged after: a chunk that also carries the body of a
        # request whose headers ended inside it is no offence.
        if self.reading_headers and self.header_bytes > self.max_header_bytes:
            self._refuse_large_headers()

    def connection_lost(self, exc) -> None:
        self._end_headers()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn asks every open connection to finish, once, as it shuts down."""
        begin_shutdown = self.app_state.get(SHUTDOWN_HOOK)
        if begin_shutdown is not None:
            begin_shutdown()
        super().shutdown()

    # httptools' parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self.reading_headers:  # the next request on a kept-alive connection
            self._begin_headers()

    def on_headers_complete(self) -> None:
        self._end_headers()
        # Headers that came in one piece with the request are measured here.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self._refuse_large_headers()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():  # closing: a request refused above
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.transport.is_closing():
            super().on_message_complete()

    # -------------------------------------------------------------------------------

    def _begin_headers(self) -> None:
        self.reading_headers = True
        self.header_bytes = 0
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        connections = self.unfinished.connections
        connections[id(self)] = self
        while len(connections) > self.unfinished.cap:
            _, oldest = connections.popitem(last=False)
            oldest._close()

    def _end_headers(self) -> None:
        self.reading_headers = False
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self.unfinished.connections.pop(id(self), None)

    def _headers_too_slow(self) -> None:
        self.header_timer = None
        if self.reading_headers:
            self._close()

    def _close(self) -> None:
        self._end_headers()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _refuse_large_headers(self) -> None:
        self._end_headers()
        if self.transport.is_closing():
            return
        body = b"Request headers too large.\n"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()  # it reads nothing more
