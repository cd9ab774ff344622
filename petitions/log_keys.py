"""Signed tree heads of the transparency log: the Ed25519 key and the signed text.

A head says "the log of this petition has `size` leaves, their Merkle root is
`root`, and they count `count` signatures", signed so that anyone holding the
public key can check it, and anyone keeping a head can later catch a rewrite of
history (docs/integrity.md). The signed bytes are the checkpoint text: seven
lines, each ending in a newline.

The key is `LOG_KEY` (a setting: any text of at least 32 characters) or, unset,
derived from `SECRET_KEY`, so every process of one site signs with the same key
and nothing about the key is stored in the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .keys import derive_key
from .settings import Settings

HEADER = "petitions transparency log v1"
HOUR_FORMAT = "%Y-%m-%dT%HZ"
_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}Z$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
SHORT_HEX = 16  # characters of the root in a head's short form


def hour_text(moment: datetime) -> str:
    """A time rounded down to the hour, in UTC: all the log ever says of when."""
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class LogKey:
    private: Ed25519PrivateKey

    @classmethod
    def from_material(cls, material: bytes) -> LogKey:
        seed = hashlib.sha256(b"petitions transparency log key\x00" + material).digest()
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_raw)

    def __repr__(self) -> str:  # never the key itself in a log or traceback
        return f"LogKey({self.key_id})"


def log_key_for(settings: Settings) -> LogKey:
    if settings.log_key:
        return LogKey.from_material(settings.log_key.encode())
    return LogKey.from_material(derive_key(settings.secret_key, "transparency-log"))


class BadHead(ValueError):
    """A head that is malformed or whose signature does not check; the message says which."""


@dataclass(frozen=True)
class TreeHead:
    origin: str  # the petition's address: BASE_URL/p/slug
    size: int
    root: bytes
    count: int
    time: str  # the hour it was signed in (hour_text)
    key_id: str
    public_key: bytes
    signature: bytes

    @property
    def checkpoint(self) -> str:
        return checkpoint_text(
            self.origin, self.size, self.root, self.count, self.time, self.key_id
        )

    @property
    def short(self) -> str:
        """What emails, pages and the print document show: size and the root's start."""
        return f"{self.size}:{self.root.hex()[:SHORT_HEX]}"

    def signature_valid(self) -> bool:
        if key_id_of(self.public_key) != self.key_id:
            return False
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
            key.verify(self.signature, self.checkpoint.encode())
        except (InvalidSignature, ValueError):
            return False
        return True

    def as_json(self) -> dict:
        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": self.root.hex(),
            "count": self.count,
            "time": self.time,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode(),
            "signature": base64.b64encode(self.signature).decode(),
            "checkpoint": self.checkpoint,
            "short": self.short,
        }

    @classmethod
    def from_json(cls, data: object) -> TreeHead:
        """A head read back from JSON; BadHead naming the field that is wrong."""
        if not isinstance(data, dict):
            raise BadHead("a head must be a JSON object")

        def field(name: str, kind: type):
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise BadHead(f"the head's {name!r} is missing or not a {kind.__name__}")
            return value

        origin, time, key_id = field("origin", str), field("time", str), field("key_id", str)
        size, count = field("size", int), field("count", int)
        root_hex = field("root_hash", str)
        if size < 0 or count < 0 or count > size:
            raise BadHead("the head's size or count is out of range")
        if not _HEX.match(root_hex) or not _KEY_ID.match(key_id) or not _HOUR.match(time):
            raise BadHead("the head's root_hash, key_id or time is malformed")
        if not 0 < len(origin) <= 600 or "\n" in origin:
            raise BadHead("the head's origin is malformed")
        try:
            public_key = base64.b64decode(field("public_key", str), validate=True)
            signature = base64.b64decode(field("signature", str), validate=True)
        except binascii.Error:
            raise BadHead("the head's public_key or signature is not base64") from None
        if len(public_key) != 32 or len(signature) != 64:
            raise BadHead("the head's public_key or signature has the wrong length")
        return cls(
            origin, size, bytes.fromhex(root_hex), count, time, key_id, public_key, signature
        )


def checkpoint_text(origin: str, size: int, root: bytes, count: int, time: str, key_id: str) -> str:
    """The bytes a head's signature covers (as text): docs/integrity.md describes them."""
    return "".join(f"{line}\n" for line in (HEADER, origin, size, root.hex(), count, time, key_id))


def sign_head(key: LogKey, origin: str, size: int, root: bytes, count: int, time: str) -> TreeHead:
    text = checkpoint_text(origin, size, root, count, time, key.key_id)
    signature = key.private.sign(text.encode())
    return TreeHead(origin, size, root, count, time, key.key_id, key.public_raw, signature)
