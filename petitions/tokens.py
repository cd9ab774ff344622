"""Signed tokens (itsdangerous), one salt per purpose so no token can stand in for another."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeTimedSerializer

FORM_TOKEN_AGE = 12 * 3600  # a sign form stays valid for half a day
VERIFY_TOKEN_AGE = 14 * 24 * 3600  # a confirmation link for two weeks


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


def _public_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=value)
    except ValueError:
        raise TokenInvalid from None
