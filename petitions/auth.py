"""Admin login: passwords, sessions in signed cookies, CSRF tokens, login throttling, roles.

- Sessions live in a cookie signed with a key derived from SECRET_KEY
  (Starlette's SessionMiddleware, itsdangerous), scoped to `/admin`: HttpOnly,
  SameSite=Lax, Secure when BASE_URL is https. The session names the admin and
  carries a fingerprint of their password hash, so a new password (or a
  disabled account) ends every session at once.
- Every admin form carries a CSRF token: a random value kept in the session,
  compared in constant time.
- Failed logins are counted per email and per client network (IPv4 /24, IPv6
  /48) in `throttle_counters`; past the limit, further attempts are refused
  for the rest of the period without checking the password.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from urllib.parse import urlsplit

from databases import Database
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from . import audit, throttle
from .admins import MAX_PASSWORD_LENGTH, hash_password, needs_rehash, password_matches
from .clients import client_network
from .db import raw_connection
from .fields import has_forbidden_characters
from .keys import derive_key

SESSION_COOKIE = "petitions_admin"
SESSION_MAX_AGE = 12 * 3600  # seconds without a request before a session ends
SESSION_LIFETIME = 7 * 24 * 3600  # seconds after logging in when it ends anyway
SESSION_REFRESH = 600  # the cookie is renewed at most this often (it carries the idle limit)
CSRF_FIELD = "csrf_token"

LOGIN_PERIOD = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_NETWORK = 20  # an office of admins shares one network

ROLES = ("owner", "editor")


@dataclass(frozen=True)
class Admin:
    id: int
    email: str
    role: str

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class AdminSessions:
    """Starlette's SessionMiddleware, for `/admin` only: public pages never read or set a cookie."""

    def __init__(self, app: ASGIApp, secret_key: str, https_only: bool) -> None:
        self.app = app
        self.with_session = SessionMiddleware(
            app,
            secret_key=secret_key,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            path="/admin",
            same_site="lax",
            https_only=https_only,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_admin_path(scope["path"]):
            await self.with_session(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def session_key(secret_key: str) -> str:
    return derive_key(secret_key, "session").hex()


def _fingerprint(secret_key: str, admin_id: int, password_hash: str) -> str:
    key = derive_key(secret_key, "admin-session")
    return hmac.new(key, f"{admin_id}:{password_hash}".encode(), hashlib.sha256).hexdigest()[:32]


# Logging in ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoginOutcome:
    admin: Admin | None = None
    fingerprint: str = ""
    throttled: bool = False
    disabled: bool = False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(24))


def _bucket(secret_key: str, kind: str, value: str) -> str:
    key = derive_key(secret_key, "login-throttle")
    return f"login:{kind}:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


async def log_in(
    db: Database, secret_key: str, email: str, password: str, client_address: str | None
) -> LoginOutcome:
    """Check an email and password, counting failures; refuse when there were too many."""
    email = email.strip().lower()[:254]
    if has_forbidden_characters(email):
        email = ""  # counted as a failure like any other; never sent to the database
    buckets = [(_bucket(secret_key, "email", email), MAX_FAILURES_PER_EMAIL)]
    network = client_network(client_address)
    if network:
        buckets.append((_bucket(secret_key, "net", network), MAX_FAILURES_PER_NETWORK))

    async with raw_connection(db) as conn:
        for bucket, limit in buckets:
            if await throttle.recent_hits(conn, bucket, LOGIN_PERIOD) >= limit:
                return LoginOutcome(throttled=True)
        # Count the attempt before checking it, so that many attempts at once
        # cannot all slip under the limit; a success takes it back.
        for bucket, _ in buckets:
            await throttle.add_hit(conn, bucket)
        for bucket, limit in buckets:
            if await throttle.recent_hits(conn, bucket, LOGIN_PERIOD) > limit:
                return LoginOutcome(throttled=True)
        row = await conn.fetchrow(
            "SELECT id, email, role, disabled, password_hash FROM admins WHERE email = $1", email
        )

    def check() -> bool:
        stored = row["password_hash"] if row else _dummy_hash()  # same work for unknown emails
        return password_matches(stored, password)

    matches = len(password) <= MAX_PASSWORD_LENGTH and await asyncio.to_thread(check)
    if row is None or not matches:
        async with raw_connection(db) as conn:
            await throttle.drop_old(conn, "login:", timedelta(days=1))
        return LoginOutcome()

    async with raw_connection(db) as conn, conn.transaction():
        await throttle.forget(conn, buckets[0][0])
        for bucket, _ in buckets[1:]:
            await throttle.remove_hit(conn, bucket)
        if row["disabled"]:
            return LoginOutcome(disabled=True)
        password_hash = row["password_hash"]
        if needs_rehash(password_hash):
            password_hash = await asyncio.to_thread(hash_password, password)
            await conn.execute(
                "UPDATE admins SET password_hash = $2 WHERE id = $1", row["id"], password_hash
            )
        await conn.execute("UPDATE admins SET last_login_at = now() WHERE id = $1", row["id"])
        await audit.record(conn, row["id"], "admin.login")
    admin = Admin(row["id"], row["email"], row["role"])
    return LoginOutcome(admin, _fingerprint(secret_key, admin.id, password_hash))


# Sessions -------------------------------------------------------------------------


def start_session(session: dict, admin: Admin, fingerprint: str) -> None:
    """A fresh session (new CSRF token) for a freshly logged-in admin."""
    session.clear()
    now = int(time.time())
    session.update(
        admin=admin.id, key=fingerprint, csrf=secrets.token_urlsafe(32), since=now, seen=now
    )


def refresh_session_key(session: dict, secret_key: str, admin_id: int, password_hash: str) -> None:
    """Keep this session after the admin changed their own password (others end)."""
    session["key"] = _fingerprint(secret_key, admin_id, password_hash)


def end_session(session: dict) -> None:
    session.clear()


async def current_admin(request: Request) -> Admin | None:
    """The logged-in admin, or None (no session, a disabled account, a changed password)."""
    session = request.session
    admin_id, since = session.get("admin"), session.get("since")
    now = int(time.time())
    if not isinstance(admin_id, int) or not isinstance(since, int):
        return None
    if now - since > SESSION_LIFETIME:
        return None
    async with raw_connection(request.app.state.db) as conn:
        row = await conn.fetchrow(
            "SELECT id, email, role, password_hash FROM admins WHERE id = $1 AND NOT disabled",
            admin_id,
        )
    secret_key = request.app.state.settings.secret_key
    if row is None or not hmac.compare_digest(
        str(session.get("key", "")), _fingerprint(secret_key, row["id"], row["password_hash"])
    ):
        return None
    seen = session.get("seen")
    if not isinstance(seen, int) or now - seen >= SESSION_REFRESH:
        session["seen"] = now  # renews the cookie: idle time counts from here
    return Admin(row["id"], row["email"], row["role"])


def csrf_token(session: dict) -> str:
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_valid(session: dict, submitted: object) -> bool:
    expected = session.get("csrf")
    return (
        isinstance(expected, str)
        and isinstance(submitted, str)
        and len(expected) >= 32
        and hmac.compare_digest(expected.encode(), submitted.encode())
    )


def safe_next(target: str | None) -> str | None:
    """Where to go after logging in: only an admin page of this site."""
    if not target or len(target) > 2000:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or target.startswith("//"):
        return None
    return target if is_admin_path(parts.path) else None
