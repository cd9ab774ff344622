"""Read-after-write with read replicas: who just changed a public page sees the change.

A request that changes what public pages show (a confirmation link, a withdrawal, an
admin's POST) is answered with a short-lived cookie holding the primary's WAL position
after its commit, signed (tokens.py) so no one can make one up. A public read carrying
it goes to a replica only if that replica has replayed the position, else to the
primary (replicas.py). The cookie names nobody: a position in the WAL, nothing about
the signer or the signature. It lasts REPLICA_MAX_LAG and a few seconds: by then every
replica still in use has replayed the change anyway.

Why a position rather than "the primary for N seconds": the replica is usually a few
milliseconds behind, so the read after a confirmation stays on the replica, and the
rule holds however far behind a replica is. Without replicas nothing here runs.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .db import raw_connection
from .tokens import TokenExpired, TokenInvalid

log = logging.getLogger(__name__)

COOKIE = "petitions_read_after"
PURPOSE = "read-after-write"  # the tokens' salt
MARGIN_SECONDS = 5
# The insert position: at or past the end of every commit made so far, also with
# synchronous_commit off (where a commit may return before its WAL is flushed).
COMMITTED_SQL = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"


def changes_public_pages(method: str, path: str) -> bool:
    """Requests whose success may change a list, a count or a petition page. Signing
    does not: a new signature is listed only once confirmed."""
    if method == "GET":
        return path.startswith("/verify/")
    return method == "POST" and path.startswith(("/withdraw/", "/admin/"))


def cookie_seconds(max_lag: int) -> int:
    return max_lag + MARGIN_SECONDS


def written_position(request: Request) -> int | None:
    """The WAL position this visitor's last change was at, if recent; else None."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    state = request.app.state
    try:
        text = state.tokens.read(
            PURPOSE, value, max_age=cookie_seconds(state.settings.replica_max_lag)
        )
    except (TokenInvalid, TokenExpired):
        return None
    return int(text) if text.isdigit() and len(text) < 20 else None


class ReadYourWrites:
    """Adds the cookie to a successful answer to a request that changes public pages,
    when read replicas are in use."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not changes_public_pages(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        if getattr(state, "replicas", None) is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                cookie = await _cookie(state)
                if cookie is not None:
                    message = {**message, "headers": [*message["headers"], (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _cookie(state) -> bytes | None:
    """The Set-Cookie value: the primary's WAL position now, after the request's commit."""
    try:
        async with raw_connection(state.db) as conn:
            position = await conn.fetchval(COMMITTED_SQL)
    except Exception as error:  # the answer stands; only the next read may miss the change
        log.warning("read-after-write: the primary's WAL position is unknown (%r)", error)
        return None
    settings = state.settings
    value = state.tokens.make(PURPOSE, str(position))
    secure = "; Secure" if settings.base_url.startswith("https://") else ""
    seconds = cookie_seconds(settings.replica_max_lag)
    return (f"{COOKIE}={value}; Max-Age={seconds}; Path=/; HttpOnly; SameSite=Lax{secure}").encode()
