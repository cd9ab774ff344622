"""Device cookies: a browser an admin has logged in from keeps its own login allowance.

After a successful login the browser gets a long-lived cookie, signed with a
key derived from SECRET_KEY (itsdangerous), naming the admin and a random
device id. It opens nothing by itself: it only makes that browser's failed
attempts count for the device rather than for the account and network
(login_throttle.py), so an attacker guessing the owner's password elsewhere,
or on the same office network, does not slow the owner's own browser. This is
OWASP's "device cookies" approach to brute-force protection.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadData, URLSafeTimedSerializer

from .keys import derive_key

DEVICE_COOKIE = "petitions_device"
DEVICE_MAX_AGE = 365 * 24 * 3600
MAX_COOKIE_LENGTH = 300


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        derive_key(secret_key, "admin-device").hex(), salt="petitions/admin-device"
    )


def issue(secret_key: str, admin_id: int, device: str | None = None) -> str:
    """A cookie value for this admin on this browser (keeping its device id when known)."""
    return _serializer(secret_key).dumps({"a": admin_id, "d": device or secrets.token_urlsafe(16)})


def device_of(secret_key: str, cookie: str | None, admin_id: int | None) -> str | None:
    """The device id the cookie names, when it is genuine, recent enough and this admin's."""
    if not cookie or admin_id is None or len(cookie) > MAX_COOKIE_LENGTH:
        return None
    try:
        value = _serializer(secret_key).loads(cookie, max_age=DEVICE_MAX_AGE)
    except BadData:
        return None
    if not isinstance(value, dict) or value.get("a") != admin_id:
        return None
    device = value.get("d")
    return device if isinstance(device, str) and 16 <= len(device) <= 64 else None


def set_cookie(response, secret_key: str, admin_id: int, device: str | None, https: bool) -> None:
    response.set_cookie(
        DEVICE_COOKIE,
        issue(secret_key, admin_id, device),
        max_age=DEVICE_MAX_AGE,
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=https,
    )
