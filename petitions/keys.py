"""Keys derived from SECRET_KEY, and the keyed hashes built on them."""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from .lookalikes import organisation_fold


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


# Domains whose mailboxes ignore dots in the local part, and the name they deliver as.
DOTLESS_MAIL_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def normalise_mailbox(email: str) -> str:
    """The mailbox an email is delivered to, as mail providers fold addresses: lower
    case, no `+tag`, and for Gmail no dots and googlemail.com as gmail.com. For
    counting emails per mailbox (mail caps), never for "same signer"."""
    local, _, domain = normalise_email(email).rpartition("@")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_MAIL_DOMAINS:
        local, domain = local.replace(".", ""), DOTLESS_MAIL_DOMAINS[domain]
    return f"{local}@{domain}"


def mailbox_hash(secret_key: str, email: str) -> bytes:
    """Keyed hash of the mailbox `email` is delivered to (normalise_mailbox)."""
    key = derive_key(secret_key, "mailbox-hash")
    return hmac.new(key, normalise_mailbox(email).encode(), hashlib.sha256).digest()


def network_hash(secret_key: str, network: str) -> bytes:
    """Keyed hash of a client network (an IPv4 /24 or IPv6 /48) for abuse detection."""
    key = derive_key(secret_key, "network-hash")
    return hmac.new(key, network.encode(), hashlib.sha256).digest()


def domain_hash(secret_key: str, domain: str) -> bytes:
    """Keyed hash of an email's domain (lower case): the trending view and bulk
    invalidation group and find signatures by it, never by the domain itself."""
    key = derive_key(secret_key, "domain-hash")
    return hmac.new(key, domain.encode(), hashlib.sha256).digest()


def organisation_hash(secret_key: str, organisation: str, country: str) -> bytes:
    """Keyed hash of an organisation as "the same organisation" decides it: the name
    folded (case, spacing, Unicode form, invisible characters, look-alike letters)
    and the country. Uniqueness and look-ups use it; the name itself is encrypted."""
    key = derive_key(secret_key, "organisation-hash")
    message = f"{organisation_fold(organisation)}\x00{country}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


SEARCH_HASH_BYTES = 8  # a search term's hash: short, since a rare false match costs nothing


def search_hash_key(secret_key: str) -> bytes:
    return derive_key(secret_key, "search-hash")


def search_hash(key: bytes, term: str) -> bytes:
    """Keyed hash of one search term (see personal.search_terms): the blind index.
    Keyed BLAKE2b (a PRF, like HMAC), for a signature hashes a few dozen terms."""
    return hashlib.blake2b(term.encode(), key=key, digest_size=SEARCH_HASH_BYTES).digest()
