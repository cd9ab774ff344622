"""A leaf of the transparency log: its fields, the bytes that are hashed, its JSON.

The server (transparency.py) and the auditor (log_audit.py) both go through this,
so what one writes the other reads. docs/integrity.md describes the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("add", "remove", "restore")
REASONS = ("withdrawn", "rejected", "invalidated", "deleted")
_HOUR = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}Z$")
_COMMITMENT = re.compile(r"^[0-9a-f]{64}$")
MAX_INDEX = 2**62


class BadLeaf(ValueError):
    """An entry that is not a well-formed leaf; the message says what is wrong."""


@dataclass(frozen=True)
class Leaf:
    index: int
    kind: str  # add: starts counting; remove: stops; restore: counts again
    hour: str  # rounded down to the hour, UTC: 2026-11-27T02Z
    version: int | None = None  # add: the statement version signed (0: unknown)
    commitment: bytes | None = None  # add: SHA-256 of the receipt secret
    target: int | None = None  # remove, restore: the add leaf
    reason: str | None = None  # remove: why it stopped counting

    def data(self) -> bytes:
        """The bytes whose RFC 9162 leaf hash is in the tree."""
        if self.kind == "add":
            fields = ("add", self.hour, str(self.version), self.commitment.hex())
        elif self.kind == "remove":
            fields = ("remove", self.hour, str(self.target), self.reason)
        else:
            fields = ("restore", self.hour, str(self.target))
        return "\t".join(fields).encode()

    def as_json(self) -> dict:
        entry = {"index": self.index, "kind": self.kind, "hour": self.hour}
        if self.kind == "add":
            entry.update(version=self.version, commitment=self.commitment.hex())
        else:
            entry["leaf"] = self.target
            if self.kind == "remove":
                entry["reason"] = self.reason
        return entry

    @classmethod
    def from_json(cls, entry: object) -> Leaf:
        """A leaf read back from an entry; BadLeaf naming what is wrong."""
        if not isinstance(entry, dict):
            raise BadLeaf("an entry must be a JSON object")
        kind, hour, index = entry.get("kind"), entry.get("hour"), entry.get("index")
        if kind not in KINDS:
            raise BadLeaf(f"unknown kind {str(kind)[:20]!r}")
        if not _is_index(index):
            raise BadLeaf("its index is missing or not a whole number")
        if not isinstance(hour, str) or not _HOUR.match(hour):
            raise BadLeaf("its hour is not of the form 2026-11-27T02Z")
        expected = {"index", "kind", "hour"} | (
            {"version", "commitment"} if kind == "add" else {"leaf"}
        )
        if kind == "remove":
            expected.add("reason")
        if set(entry) != expected:
            raise BadLeaf(f"an {kind} entry has exactly the fields {', '.join(sorted(expected))}")
        if kind == "add":
            version, commitment = entry["version"], entry["commitment"]
            if not _is_index(version) or version > 1_000_000:
                raise BadLeaf("its version is not a whole number")
            if not isinstance(commitment, str) or not _COMMITMENT.match(commitment):
                raise BadLeaf("its commitment is not 64 hexadecimal digits")
            return cls(index, kind, hour, version=version, commitment=bytes.fromhex(commitment))
        target = entry["leaf"]
        if not _is_index(target) or target >= index:
            raise BadLeaf("the leaf it names is not an earlier leaf")
        if kind == "remove":
            reason = entry["reason"]
            if reason not in REASONS:
                raise BadLeaf(f"unknown reason {str(reason)[:20]!r}")
            return cls(index, kind, hour, target=target, reason=reason)
        return cls(index, kind, hour, target=target)


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_INDEX
