"""Admin users: creation and password checks (Argon2)."""

from __future__ import annotations

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email

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
