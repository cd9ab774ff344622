"""Signed tokens (itsdangerous), one salt per purpose so no token can stand in for another."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeTimedSerializer

FORM_TOKEN_AGE = 12 * 3600  # a sign form stays valid for half a day
VERIFY_TOKEN_AGE = 14 * 24 * 3600  # a confirmation link for two weeks
# A sign form token carries at most this many submissions (sign_limits.admit):
# enough for a signer who goes back and sends again, too few to replay one token in a
# flood. Every page (a cached one too: renew_form_tokens) hands out a token of its own.
FORM_TOKEN_USES = 5


class TokenInvalid(Exception):
    """Forged, damaged, or made for another purpose."""


class TokenExpired(Exception):
    """Genuine but too old; carries what it was issued for."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


@dataclass(frozen=True)
class Tokens:
    secret_key: str

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret_key, salt=f"petitions/{purpose}")

    def make(self, purpose: str, value: str) -> str:
        return self._serializer(purpose).dumps(value)

    def read(self, purpose: str, token: str, max_age: int | None = None) -> str:
        if not token or len(token) > 300:
            raise TokenInvalid
        try:
            value, signed_at = self._serializer(purpose).loads(token, return_timestamp=True)
        except (BadSignature, UnicodeError, ValueError):
            raise TokenInvalid from None
        if not isinstance(value, str):
            raise TokenInvalid
        if max_age is not None and (datetime.now(UTC) - signed_at).total_seconds() > max_age:
            raise TokenExpired(value)
        return value

    # Sign forms: the value is the petition's slug and a random nonce, so that no two
    # pages share a token (the bound on submissions is per token).
    def form_token(self, slug: str) -> str:
        return self.make("sign-form", f"{slug}/{secrets.token_urlsafe(9)}")

    def read_form_token(self, token: str, max_age: int | None = FORM_TOKEN_AGE) -> FormToken:
        value = self.read("sign-form", token, max_age)
        slug, _, nonce = value.rpartition("/")
        if not slug or not nonce:
            raise TokenInvalid
        # Counted by what was signed, not by the token's text (which has equivalent spellings).
        return FormToken(slug, hashlib.sha256(value.encode()).digest()[:16])

    def renew_form_tokens(self, page: bytes) -> bytes:
        """A page served again from the page cache, with a fresh token in each sign form."""
        parts, start = [], 0
        while (found := page.find(_FORM_TOKEN_INPUT, start)) >= 0:
            begin = found + len(_FORM_TOKEN_INPUT)
            end = page.find(b'"', begin, begin + 301)
            if end < 0:
                break
            try:
                fresh = self.form_token(self.read_form_token(page[begin:end].decode(), None).slug)
            except (TokenInvalid, UnicodeError):
                fresh = page[begin:end].decode("utf-8", "replace")
            parts += [page[start:begin], fresh.encode()]
            start = end
        return b"".join(parts) + page[start:]

    # Signature links: the value is the signature's public id.
    def signature_link(self, purpose: str, public_id: uuid.UUID) -> str:
        return self.make(purpose, public_id.hex)

    def read_signature_link(
        self, purpose: str, token: str, max_age: int | None = None
    ) -> uuid.UUID:
        try:
            value = self.read(purpose, token, max_age)
        except TokenExpired as expired:
            raise TokenExpired(_public_id(expired.value).hex) from None
        return _public_id(value)


@dataclass(frozen=True)
class FormToken:
    slug: str
    id: bytes  # a hash of its signed value: what its uses are counted by


_FORM_TOKEN_INPUT = b'name="form_token" value="'


def _public_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=value)
    except ValueError:
        raise TokenInvalid from None
