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
"""

from __future__ import annotations

import os
import resource
from collections import OrderedDict
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "petitions.serving:GuardedHttpToolsProtocol"
# Worker processes (and the protocol in this one) read the header timeout from here.
HEADER_TIMEOUT_VARIABLE = "PETITIONS_HEADER_TIMEOUT"
# File descriptors kept for the database pool, the listener, logs and the embedded server.
RESERVED_FILES = 100


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = 32 * 1024  # request line and headers; cookies included
    header_timeout: float = 10.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000  # per process; above it requests get 503
    backlog: int = 2048

    def uvicorn_options(self) -> dict:
        """uvicorn.run's options; sets the header timeout in the environment, where the
        protocol of this process and of its worker processes reads it."""
        os.environ[HEADER_TIMEOUT_VARIABLE] = str(self.header_timeout)
        return dict(
            http=PROTOCOL,
            # uvicorn hands its config to the protocol: this carries the header limit.
            h11_max_incomplete_event_size=self.max_header_bytes,
            timeout_keep_alive=self.keep_alive_timeout,
            limit_concurrency=self.max_connections,
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
    """`limits` with max_connections lowered, if need be, to what the open-file limit allows."""
    files = raise_file_limit(limits.max_connections + RESERVED_FILES)
    if limits.max_connections + RESERVED_FILES <= files:
        return limits
    return ServerLimits(
        limits.max_header_bytes,
        limits.header_timeout,
        limits.keep_alive_timeout,
        max(16, files - RESERVED_FILES),
        limits.backlog,
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
