"""Keys derived from SECRET_KEY, and the keyed hashes built on them."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def derive_key(secret_key: str, purpose: str) -> bytes:
    """One independent key per purpose, so no hash or token can stand in for another."""
    return hmac.new(secret_key.encode(), f"petitions/{purpose}".encode(), hashlib.sha256).digest()


def normalise_email(email: str) -> str:
    """The form that decides "same email": trimmed, Unicode NFC, lower case."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", email.strip()).lower())


def email_hash(secret_key: str, normalised_email: str) -> bytes:
    """Keyed hash of a normalised email: uniqueness and look-ups without reading the email."""
    key = derive_key(secret_key, "email-hash")
    return hmac.new(key, normalised_email.encode(), hashlib.sha256).digest()


def network_hash(secret_key: str, network: str) -> bytes:
    """Keyed hash of a client network (an IPv4 /24 or IPv6 /48) for abuse detection."""
    key = derive_key(secret_key, "network-hash")
    return hmac.new(key, network.encode(), hashlib.sha256).digest()
