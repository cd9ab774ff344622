"""Encryption at rest: AES-256-GCM under a data key kept outside the database.

Every sealed value is one `bytea`:

    version (1 byte, 0x01) | key id (4 bytes) | nonce (12 bytes) | ciphertext and GCM tag

The key id is the first four bytes of an HMAC of the key itself: it names the
key a value was sealed with without revealing anything about it, so a value
sealed under an older key is recognised and opened with that key (rotation),
and a value sealed under a key this process does not have fails with a message
that says so instead of a bare authentication error. Nonces are random (96
bits): safe for far more values than a petition site ever seals under one key.

Each value is also bound to what it belongs to (GCM's associated data): a
signature's blob to its public id, an outbox row's to the outbox. A blob copied
onto another signature does not open.

The keys:

- `DATA_KEY` (a setting, at least 32 characters, kept outside the database):
  the AES key is HKDF-SHA256 of it.
- When `DATA_KEY` is unset, the key is derived from `SECRET_KEY` (HKDF of
  `keys.derive_key(SECRET_KEY, "data-key")`). That key is also always accepted
  for reading once `DATA_KEY` is set, so moving from the default to a key of
  one's own is: set `DATA_KEY`, run `petitions rotate-key`.
- `DATA_KEY_PREVIOUS` (comma-separated): older keys, accepted for reading
  only, while `petitions rotate-key` re-seals everything under `DATA_KEY`.

See docs/operations.md for the rotation procedure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .keys import derive_key

VERSION = b"\x01"
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES
MIN_KEY_LENGTH = 32

# What a signature's sealed blob holds (the signer's personal fields); the keys of
# its JSON. The privacy page lists these as encrypted (privacy.py reads this name).
ENCRYPTED_FIELDS = (
    "name", "email", "city", "occupation", "organisation", "organisation_type", "website",
    "members", "comment",
)  # fmt: skip
# What an outbox row's sealed blob holds: who it goes to and everything with a link.
ENCRYPTED_OUTBOX_FIELDS = ("recipient", "body_text", "body_html", "headers")

OUTBOX_CONTEXT = b"petitions/outbox"


def signature_context(public_id) -> bytes:
    """The associated data of a signature's blob: its public id (a uuid.UUID)."""
    return b"petitions/signature/" + public_id.bytes


class DataKeyError(RuntimeError):
    """A sealed value cannot be opened with the keys this process has: the wrong
    DATA_KEY, a missing DATA_KEY_PREVIOUS, or damaged data. The message says which."""


@dataclass(frozen=True, repr=False)
class DataKey:
    key: bytes
    id: bytes
    origin: str  # where it came from, for messages ("DATA_KEY", "SECRET_KEY", ...)

    @classmethod
    def from_material(cls, material: bytes, origin: str) -> DataKey:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"petitions/data-key/v1"
        ).derive(material)
        key_id = hmac.new(key, b"petitions/key-id", hashlib.sha256).digest()[:KEY_ID_BYTES]
        return cls(key, key_id, origin)

    @classmethod
    def from_setting(cls, value: str, origin: str = "DATA_KEY") -> DataKey:
        return cls.from_material(value.encode(), origin)

    @classmethod
    def from_secret_key(cls, secret_key: str) -> DataKey:
        return cls.from_material(derive_key(secret_key, "data-key"), "SECRET_KEY")

    @property
    def hex_id(self) -> str:
        return self.id.hex()

    def __repr__(self) -> str:  # never the key itself in a log or traceback
        return f"DataKey(id={self.hex_id}, from {self.origin})"


class Cipher:
    """Seals under the current key; opens with the current key or any older one."""

    def __init__(self, current: DataKey, previous: Iterable[DataKey] = ()) -> None:
        self.current = current
        self._aead = {current.id: AESGCM(current.key)}
        self._keys = {current.id: current}
        for key in previous:
            self._aead.setdefault(key.id, AESGCM(key.key))
            self._keys.setdefault(key.id, key)

    @property
    def key_ids(self) -> list[str]:
        return [k.hex() for k in self._keys]

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        header = VERSION + self.current.id + nonce
        return header + self._aead[self.current.id].encrypt(nonce, plaintext, context)

    def open(self, blob: bytes, context: bytes) -> bytes:
        blob = bytes(blob)
        if len(blob) < HEADER_BYTES + TAG_BYTES or blob[:1] != VERSION:
            raise DataKeyError("a sealed value is damaged (not a version-1 sealed value)")
        key_id = blob[1 : 1 + KEY_ID_BYTES]
        aead = self._aead.get(key_id)
        if aead is None:
            raise DataKeyError(
                f"a sealed value was encrypted under data key {key_id.hex()}, which this "
                f"process does not have (it has {', '.join(self.key_ids)}). Set DATA_KEY to "
                "the key the data was sealed with, or list that key in DATA_KEY_PREVIOUS."
            )
        nonce = blob[1 + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return aead.decrypt(nonce, blob[HEADER_BYTES:], context)
        except InvalidTag:
            raise DataKeyError(
                f"a sealed value under data key {key_id.hex()} failed authentication: "
                "it was changed, or moved from another row"
            ) from None

    def open_many(self, sealed: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        """`open` of each (blob, context), with less work per value (the export opens
        a batch at a time); a value that does not open fails as `open` says."""
        aeads = self._aead
        opened = []
        for blob, context in sealed:
            aead = aeads.get(blob[1 : HEADER_BYTES - NONCE_BYTES])
            try:
                if aead is None or blob[:1] != VERSION or len(blob) < HEADER_BYTES + TAG_BYTES:
                    raise InvalidTag
                opened.append(aead.decrypt(blob[1 + KEY_ID_BYTES : HEADER_BYTES],
                                           blob[HEADER_BYTES:], context))  # fmt: skip
            except InvalidTag:
                opened.append(self.open(blob, context))  # raises its DataKeyError
        return opened

    def seal_json(self, value: dict, context: bytes) -> bytes:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return self.seal(text.encode(), context)

    def open_json(self, blob: bytes, context: bytes) -> dict:
        return json.loads(self.open(blob, context))

    def is_current(self, blob: bytes) -> bool:
        """Sealed under the current key (nothing for rotation to do)."""
        return bytes(blob[1 : 1 + KEY_ID_BYTES]) == self.current.id


def key_id_of(blob: bytes) -> str:
    return bytes(blob[1 : 1 + KEY_ID_BYTES]).hex()


def make_cipher(
    secret_key: str, data_key: str | None = None, previous: Iterable[str] = ()
) -> Cipher:
    """The cipher for these settings' values (see the module's docstring)."""
    from_secret = DataKey.from_secret_key(secret_key)
    if data_key is None:
        current, older = from_secret, []
    else:
        current, older = DataKey.from_setting(data_key), [from_secret]
    older = [DataKey.from_setting(p, "DATA_KEY_PREVIOUS") for p in previous] + older
    return Cipher(current, older)


@lru_cache(maxsize=16)
def _cached(secret_key: str, data_key: str | None, previous: tuple[str, ...]) -> Cipher:
    return make_cipher(secret_key, data_key, previous)


def cipher_for(settings) -> Cipher:
    """The cipher of a Settings (made once per set of keys)."""
    return _cached(
        settings.secret_key,
        getattr(settings, "data_key", None),
        tuple(getattr(settings, "data_key_previous", ()) or ()),
    )
