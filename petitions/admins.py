"""Admin users: creation, password checks (Argon2), and their management by owners."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email

from . import totp

ROLES = ("owner", "editor")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


class AdminError(ValueError):
    """Bad admin input; the message is safe to show."""


def normalise_admin_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise AdminError(f"Not a valid email address: {error}") from None


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AdminError(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AdminError(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with older Argon2 parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return False


async def create_or_reset_admin(
    conn: asyncpg.Connection, email: str, password: str, role: str = "owner"
) -> bool:
    """Create an admin, or set a new password and role for an existing one.

    Returns True when a new admin was created.
    """
    email = normalise_admin_email(email)
    check_password_rules(password)
    if role not in ROLES:
        raise AdminError(f"The role must be one of {', '.join(ROLES)}.")
    created = await conn.fetchval(
        """
        INSERT INTO admins (email, password_hash, role) VALUES ($1, $2, $3)
        ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash,
                                          role = excluded.role, disabled = false
        RETURNING xmax = 0
        """,
        email,
        hash_password(password),
        role,
    )
    return bool(created)


# Management by owners ------------------------------------------------------------


@dataclass(frozen=True)
class AdminUser:
    id: int
    email: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


async def list_admins(conn: asyncpg.Connection) -> list[AdminUser]:
    rows = await conn.fetch(
        "SELECT id, email, role, disabled, created_at, last_login_at FROM admins "
        "ORDER BY disabled, role = 'owner' DESC, email"
    )
    return [AdminUser(**dict(r)) for r in rows]


async def add_admin(conn: asyncpg.Connection, email: str, password: str, role: str) -> int:
    """A new admin; AdminError when the email is taken or an input is bad."""
    email = normalise_admin_email(email)
    check_password_rules(password)
    if role not in ROLES:
        raise AdminError(f"The role must be one of {', '.join(ROLES)}.")
    admin_id = await conn.fetchval(
        "INSERT INTO admins (email, password_hash, role) VALUES ($1, $2, $3) "
        "ON CONFLICT (email) DO NOTHING RETURNING id",
        email,
        await asyncio.to_thread(hash_password, password),
        role,
    )
    if admin_id is None:
        raise AdminError("There is already an admin with this email.")
    return admin_id


async def _other_active_owners(conn: asyncpg.Connection, admin_id: int) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM admins WHERE role = 'owner' AND NOT disabled AND id <> $1",
        admin_id,
    )


async def change_admin(
    conn: asyncpg.Connection,
    acting_id: int,
    admin_id: int,
    *,
    disabled: bool | None = None,
    role: str | None = None,
) -> AdminUser:
    """Disable, enable or change the role of another admin; there always stays an active owner."""
    if role is not None and role not in ROLES:
        raise AdminError(f"The role must be one of {', '.join(ROLES)}.")
    async with conn.transaction():
        # One change of owners at a time, so two owners cannot demote each other at once.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('petitions/admins'))")
        row = await conn.fetchrow("SELECT * FROM admins WHERE id = $1 FOR UPDATE", admin_id)
        if row is None:
            raise AdminError("There is no such admin.")
        if admin_id == acting_id:
            raise AdminError("You cannot disable yourself or change your own role.")
        loses_owner = (
            row["role"] == "owner"
            and not row["disabled"]
            and (disabled or (role is not None and role != "owner"))
        )
        if loses_owner and await _other_active_owners(conn, admin_id) == 0:
            raise AdminError("There must always be at least one active owner.")
        updated = await conn.fetchrow(
            """
            UPDATE admins SET disabled = coalesce($2, disabled), role = coalesce($3, role)
             WHERE id = $1
            RETURNING id, email, role, disabled, created_at, last_login_at
            """,
            admin_id,
            disabled,
            role,
        )
    return AdminUser(**dict(updated))


async def reset_second_factor(conn: asyncpg.Connection, email: str) -> None:
    """Recovery (`petitions reset-totp`): remove an admin's second factor and end their
    sessions, so that they log in with their password and set up a new one."""
    email = normalise_admin_email(email)
    async with conn.transaction():
        admin_id = await conn.fetchval("SELECT id FROM admins WHERE email = $1", email)
        if admin_id is None:
            raise AdminError(f"There is no admin with the email {email}.")
        await totp.remove(conn, admin_id)
        await conn.execute("DELETE FROM admin_sessions WHERE admin_id = $1", admin_id)
        await conn.execute(
            "INSERT INTO audit_log (admin_id, action, details) "
            "VALUES ($1, 'admin.totp.reset', '{\"by\": \"command line\"}')",
            admin_id,
        )


async def change_password(conn: asyncpg.Connection, admin_id: int, current: str, new: str) -> str:
    """Set a new password after checking the current one; return the new hash."""
    stored = await conn.fetchval("SELECT password_hash FROM admins WHERE id = $1", admin_id)
    if (
        stored is None
        or len(current) > MAX_PASSWORD_LENGTH
        or not await asyncio.to_thread(password_matches, stored, current)
    ):
        raise AdminError("The current password is not right.")
    check_password_rules(new)
    new_hash = await asyncio.to_thread(hash_password, new)
    await conn.execute("UPDATE admins SET password_hash = $2 WHERE id = $1", admin_id, new_hash)
    return new_hash
