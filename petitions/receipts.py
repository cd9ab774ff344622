"""A signer's receipt: a random secret, shown once and mailed once, never stored.

The log's add leaf holds only its commitment (transparency.receipt_commitment), so
the receipt proves to its holder that their signature is in the log, and tells
nobody else anything. Written in base32 (no 0/1/8/9 to misread) in groups of four,
read back ignoring case, spaces and dashes, so it survives being copied by hand.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass

from .transparency import receipt_commitment

SECRET_BYTES = 20  # 160 bits: 32 base32 characters
_GROUP = 4
_SEPARATORS = re.compile(r"[\s\-‐-―_.]+")
_BASE32 = re.compile(r"^[A-Z2-7]{32}$")
MAX_RECEIPT_LENGTH = 200  # what a form or an address may bring before it is even read


class BadReceipt(ValueError):
    """Not a receipt: wrong length or letters."""


@dataclass(frozen=True)
class Receipt:
    secret: bytes

    @classmethod
    def new(cls) -> Receipt:
        return cls(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def parse(cls, text: str) -> Receipt:
        if len(text) > MAX_RECEIPT_LENGTH:
            raise BadReceipt("too long")
        compact = _SEPARATORS.sub("", text).upper()
        if not _BASE32.match(compact):
            raise BadReceipt("not 32 letters and digits")
        return cls(base64.b32decode(compact))

    @property
    def text(self) -> str:
        compact = base64.b32encode(self.secret).decode()
        return "-".join(compact[i : i + _GROUP] for i in range(0, len(compact), _GROUP))

    @property
    def commitment(self) -> bytes:
        return receipt_commitment(self.secret)

    def __repr__(self) -> str:  # never the secret in a log or traceback
        return "Receipt(…)"
