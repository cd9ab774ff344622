"""Admin login: passwords, a second factor, server-side sessions, CSRF tokens, roles.

- Sessions live in a cookie signed with a key derived from SECRET_KEY
  (Starlette's SessionMiddleware, itsdangerous), scoped to `/admin`: HttpOnly,
  SameSite=Lax, Secure when BASE_URL is https. The cookie carries a random
  session id whose hash is a row of `admin_sessions`: logging out deletes the
  row, so a copy of the cookie stops working too. The session also carries a
  fingerprint of the admin's password hash, so a new password (or a disabled
  account) ends every other session at once.
- An admin with a second factor (totp.py) gives a code after the password: the
  session is then only "waiting for a code" for a few minutes, and logged in
  once the code is right.
- Every admin form carries a CSRF token: a random value kept in the session,
  compared in constant time.
- Failed passwords and codes slow the one who fails, never lock the account
  (login_throttle.py; a known browser keeps its own allowance, devices.py).
  An unknown email costs the same Argon2 work as a known one.
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

import asyncpg
from databases import Database
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from . import audit, login_throttle, totp
from .admins import MAX_PASSWORD_LENGTH, hash_password, needs_rehash, password_matches
from .clients import client_network
from .crypto import Cipher
from .db import raw_connection
from .devices import device_of
from .fields import has_forbidden_characters
from .keys import derive_key

SESSION_COOKIE = "petitions_admin"
SESSION_MAX_AGE = 12 * 3600  # seconds without a request before a session ends
SESSION_LIFETIME = 7 * 24 * 3600  # seconds after logging in when it ends anyway
SESSION_REFRESH = 600  # the cookie is renewed at most this often (it carries the idle limit)
CODE_WAIT = 5 * 60  # seconds to give the second factor's code after the password
CSRF_FIELD = "csrf_token"

ROLES = ("owner", "editor")


@dataclass(frozen=True)
class Admin:
    id: int
    email: str
    role: str
    has_totp: bool = False

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
    retry_after: int = 0  # seconds: slowed down, nothing was checked
    disabled: bool = False
    needs_code: bool = False  # the password is right; the second factor's code is next
    device: str | None = None  # this browser's device id, when its cookie is this admin's

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(24))


_ADMIN_COLUMNS = "id, email, role, disabled, password_hash, totp_secret IS NOT NULL AS has_totp"


async def log_in(
    db: Database,
    secret_key: str,
    email: str,
    password: str,
    client_address: str | None,
    device_cookie: str | None = None,
) -> LoginOutcome:
    """Check an email and password, counting failures; slow down whoever failed too often."""
    email = email.strip().lower()[:254]
    if has_forbidden_characters(email):
        email = ""  # counted as a failure like any other; never sent to the database
    async with raw_connection(db) as conn:
        row = None
        if email:
            row = await conn.fetchrow(
                f"SELECT {_ADMIN_COLUMNS} FROM admins WHERE email = $1", email
            )
        device = device_of(secret_key, device_cookie, row["id"] if row else None)
        buckets = login_throttle.buckets_for(
            secret_key, email, client_network(client_address), device
        )
        wait = await login_throttle.begin_attempt(conn, buckets)
    if wait:
        return LoginOutcome(retry_after=wait)

    def check() -> bool:
        dummy = _dummy_hash()  # made on the first attempt, whichever email: no first-time tell
        stored = row["password_hash"] if row else dummy  # the same work for unknown emails
        return password_matches(stored, password)

    matches = len(password) <= MAX_PASSWORD_LENGTH and await asyncio.to_thread(check)
    if row is None or not matches:
        async with raw_connection(db) as conn:
            await login_throttle.attempt_failed(conn)
        return LoginOutcome()

    admin = Admin(row["id"], row["email"], row["role"], row["has_totp"])
    async with raw_connection(db) as conn, conn.transaction():
        # With a second factor to come, the guesses at the code still count.
        await login_throttle.attempt_succeeded(conn, buckets, complete=not admin.has_totp)
        if row["disabled"]:
            return LoginOutcome(disabled=True)
        password_hash = row["password_hash"]
        if needs_rehash(password_hash):
            password_hash = await asyncio.to_thread(hash_password, password)
            await conn.execute(
                "UPDATE admins SET password_hash = $2 WHERE id = $1", row["id"], password_hash
            )
        if not admin.has_totp:
            await _logged_in(conn, admin.id)
    fingerprint = _fingerprint(secret_key, admin.id, password_hash)
    return LoginOutcome(admin, fingerprint, needs_code=admin.has_totp, device=device)


async def check_second_factor(
    db: Database,
    secret_key: str,
    cipher: Cipher,
    admin_id: int,
    fingerprint: str,
    code: str | None,
    client_address: str | None,
    device_cookie: str | None = None,
) -> LoginOutcome:
    """The code after the password; counted and slowed down like passwords."""
    async with raw_connection(db) as conn:
        row = await conn.fetchrow(f"SELECT {_ADMIN_COLUMNS} FROM admins WHERE id = $1", admin_id)
        if row is None or row["disabled"]:
            return LoginOutcome(disabled=True)
        if not hmac.compare_digest(
            fingerprint, _fingerprint(secret_key, admin_id, row["password_hash"])
        ):
            return LoginOutcome()  # the password changed meanwhile: start again
        device = device_of(secret_key, device_cookie, admin_id)
        buckets = login_throttle.buckets_for(
            secret_key, row["email"], client_network(client_address), device
        )
        wait = await login_throttle.begin_attempt(conn, buckets)
        if wait:
            return LoginOutcome(retry_after=wait)
        if code is None or not await totp.check_code(conn, cipher, admin_id, code):
            await login_throttle.attempt_failed(conn)
            return LoginOutcome(needs_code=True)
        async with conn.transaction():
            await login_throttle.attempt_succeeded(conn, buckets, complete=True)
            await _logged_in(conn, admin_id)
    admin = Admin(row["id"], row["email"], row["role"], row["has_totp"])
    return LoginOutcome(admin, fingerprint, device=device)


async def _logged_in(conn: asyncpg.Connection, admin_id: int) -> None:
    await conn.execute("UPDATE admins SET last_login_at = now() WHERE id = $1", admin_id)
    await audit.record(conn, admin_id, "admin.login")


# Sessions -------------------------------------------------------------------------


def _session_row_id(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


async def start_session(
    conn: asyncpg.Connection, session: dict, admin: Admin, fingerprint: str
) -> None:
    """A fresh session (new id, new CSRF token) for a freshly logged-in admin."""
    session.clear()
    session_id = secrets.token_urlsafe(32)
    await conn.execute(
        "DELETE FROM admin_sessions WHERE created_at < now() - $1::interval",
        timedelta(seconds=SESSION_LIFETIME),
    )
    await conn.execute(
        "INSERT INTO admin_sessions (id, admin_id) VALUES ($1, $2)",
        _session_row_id(session_id),
        admin.id,
    )
    now = int(time.time())
    session.update(
        admin=admin.id, sid=session_id, key=fingerprint, csrf=secrets.token_urlsafe(32),
        since=now, seen=now,
    )  # fmt: skip


def await_second_factor(session: dict, admin: Admin, fingerprint: str) -> None:
    """The password was right: this browser may give the code for a few minutes."""
    session.clear()
    session.update(
        pending=admin.id, pending_key=fingerprint, pending_since=int(time.time()),
        csrf=secrets.token_urlsafe(32),
    )  # fmt: skip


def awaiting_second_factor(session: dict) -> tuple[int, str] | None:
    """(admin id, password fingerprint) while this browser may give the code, else None."""
    admin_id, key, since = (session.get(k) for k in ("pending", "pending_key", "pending_since"))
    if not (isinstance(admin_id, int) and isinstance(key, str) and isinstance(since, int)):
        return None
    if not 0 <= int(time.time()) - since <= CODE_WAIT:
        return None
    return admin_id, key


def refresh_session_key(session: dict, secret_key: str, admin_id: int, password_hash: str) -> None:
    """Keep this session after the admin changed their own password (others end)."""
    session["key"] = _fingerprint(secret_key, admin_id, password_hash)


def end_session(session: dict) -> None:
    """Forget the session in this browser (its row, if any, is revoke_session's)."""
    session.clear()


async def revoke_session(conn: asyncpg.Connection, session: dict) -> None:
    """Log out: the session ends on the server, for every copy of its cookie."""
    session_id = session.get("sid")
    if isinstance(session_id, str):
        await conn.execute("DELETE FROM admin_sessions WHERE id = $1", _session_row_id(session_id))
    session.clear()


async def end_other_sessions(conn: asyncpg.Connection, session: dict, admin_id: int) -> None:
    session_id = session.get("sid")
    await conn.execute(
        "DELETE FROM admin_sessions WHERE admin_id = $1 AND id IS DISTINCT FROM $2",
        admin_id,
        _session_row_id(session_id) if isinstance(session_id, str) else None,
    )


async def current_admin(request: Request) -> Admin | None:
    """The logged-in admin, or None (no session, a revoked one, a disabled account, a
    changed password)."""
    session = request.session
    admin_id, since, session_id = session.get("admin"), session.get("since"), session.get("sid")
    now = int(time.time())
    if not isinstance(admin_id, int) or not isinstance(since, int):
        return None
    if not isinstance(session_id, str) or now - since > SESSION_LIFETIME:
        return None
    async with raw_connection(request.app.state.db) as conn:
        row = await conn.fetchrow(
            """
            SELECT a.id, a.email, a.role, a.password_hash, a.totp_secret IS NOT NULL AS has_totp
              FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
             WHERE s.id = $1 AND a.id = $2 AND NOT a.disabled
            """,
            _session_row_id(session_id),
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
    return Admin(row["id"], row["email"], row["role"], row["has_totp"])


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
