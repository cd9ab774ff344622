"""Admins' optional second factor: time-based one-time codes (TOTP, RFC 6238, `pyotp`).

- Enrolment: a new secret is kept as `totp_pending` until a first code from the
  admin's app confirms it; it then becomes `totp_secret`.
- Secrets are sealed with the data key (crypto.py), bound to the admin's id.
- A code is accepted for the current 30-second step or one either side (clock
  drift), and never twice: the step it was accepted for is stored, and only a
  later step is accepted after it (an atomic UPDATE, so two requests with one
  code cannot both pass).
- Recovery: `petitions reset-totp EMAIL` removes an admin's second factor.
"""

from __future__ import annotations

import hmac
import time
from urllib.parse import urlsplit

import asyncpg
import pyotp
import segno

from .crypto import Cipher

DRIFT_STEPS = 1
CODE_DIGITS = 6


def _context(admin_id: int) -> bytes:
    return b"petitions/admin-totp/" + str(admin_id).encode()


def issuer_for(base_url: str) -> str:
    return f"Petitions ({urlsplit(base_url).hostname or 'admin'})"


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The otpauth:// URI as a QR code, inline SVG (nothing loaded from elsewhere)."""
    return segno.make(uri, error="m").svg_inline(scale=4, title="QR code of the secret")


def normalise_code(code: object) -> str | None:
    """Six digits (spaces allowed, as apps show them), or None."""
    if not isinstance(code, str) or len(code) > 20:
        return None
    digits = "".join(code.split())
    return digits if len(digits) == CODE_DIGITS and digits.isascii() and digits.isdigit() else None


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step (of the current one and its neighbours) this code is right for."""
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    current = int(now // totp.interval)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


# Stored secrets ---------------------------------------------------------------------


async def start_enrolment(conn: asyncpg.Connection, cipher: Cipher, admin_id: int) -> str:
    secret = pyotp.random_base32()
    await conn.execute(
        "UPDATE admins SET totp_pending = $2 WHERE id = $1",
        admin_id,
        cipher.seal(secret.encode(), _context(admin_id)),
    )
    return secret


async def pending_secret(conn: asyncpg.Connection, cipher: Cipher, admin_id: int) -> str | None:
    sealed = await conn.fetchval("SELECT totp_pending FROM admins WHERE id = $1", admin_id)
    return None if sealed is None else cipher.open(sealed, _context(admin_id)).decode()


async def confirm_enrolment(
    conn: asyncpg.Connection, cipher: Cipher, admin_id: int, code: str
) -> bool:
    """Make the pending secret the admin's second factor when the code is right for it."""
    secret = await pending_secret(conn, cipher, admin_id)
    step = None if secret is None else matching_step(secret, code)
    if step is None:
        return False
    await conn.execute(
        """
        UPDATE admins SET totp_secret = totp_pending, totp_pending = NULL,
                          totp_last_step = $2, totp_enabled_at = now()
         WHERE id = $1
        """,
        admin_id,
        step,
    )
    return True


async def check_code(conn: asyncpg.Connection, cipher: Cipher, admin_id: int, code: str) -> bool:
    """True when the code is right and was not used before (it is then used up)."""
    sealed = await conn.fetchval("SELECT totp_secret FROM admins WHERE id = $1", admin_id)
    if sealed is None:
        return False
    step = matching_step(cipher.open(sealed, _context(admin_id)).decode(), code)
    if step is None:
        return False
    used = await conn.fetchval(
        """
        UPDATE admins SET totp_last_step = $2
         WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)
        RETURNING id
        """,
        admin_id,
        step,
    )
    return used is not None


async def remove(conn: asyncpg.Connection, admin_id: int) -> None:
    await conn.execute(
        "UPDATE admins SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL, "
        "totp_enabled_at = NULL WHERE id = $1",
        admin_id,
    )


async def reseal(conn: asyncpg.Connection, cipher: Cipher) -> int:
    """Re-seal the admins' secrets under the current data key (`petitions rotate-key`)."""
    rows = await conn.fetch(
        "SELECT id, totp_secret, totp_pending FROM admins "
        "WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL FOR UPDATE"
    )
    changed = 0
    for row in rows:
        values = []
        for sealed in (row["totp_secret"], row["totp_pending"]):
            if sealed is None or cipher.is_current(sealed):
                values.append(sealed)
            else:
                context = _context(row["id"])
                values.append(cipher.seal(cipher.open(sealed, context), context))
        if values != [row["totp_secret"], row["totp_pending"]]:
            await conn.execute(
                "UPDATE admins SET totp_secret = $2, totp_pending = $3 WHERE id = $1",
                row["id"], *values,
            )  # fmt: skip
            changed += 1
    return changed
