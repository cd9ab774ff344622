"""Merkle trees as RFC 9162 §2.1 (Certificate Transparency 2.0) defines them.

SHA-256 throughout: a leaf hashes as SHA-256(0x00 || data), a node as
SHA-256(0x01 || left || right), the empty tree as SHA-256(""). MTH(D[n]) splits at
k, the largest power of two smaller than n, so every tree is a row of complete
subtrees of decreasing size. Inclusion proofs are PATH (§2.1.3.1) and consistency
proofs PROOF (§2.1.4.1), verified by the algorithms of §2.1.3.2 and §2.1.4.2.

Proofs are produced as leaf ranges rather than hashes, so that the storage layer can
hash each range from whatever it keeps (`range_hash`). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "combine",
    "complete_subtrees",
    "consistency_proof_ranges",
    "inclusion_proof_ranges",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf's data: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node from its children: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _split(n: int) -> int:
    """k of RFC 9162: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves have these hashes (EMPTY_ROOT for none)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    if any(len(h) != HASH_SIZE for h in level):
        raise ValueError("leaf hashes must be 32-byte SHA-256 digests")
    sha = _sha256
    # Pairing neighbours level by level, a lone last node moving up unchanged,
    # builds exactly the tree of RFC 9162's split at the largest power of two.
    while len(level) > 1:
        paired = [
            sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def complete_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The complete subtrees (level, index) that MTH(D[start:end]) is built from, left
    to right; (level, index) covers leaves [index * 2**level, (index + 1) * 2**level)."""
    if not (_is_size(start) and _is_size(end) and start < end):
        raise ValueError(f"not a leaf range: [{start}, {end})")
    n = end - start
    top = n.bit_length() - 1
    if start % (1 << top):
        raise ValueError(f"[{start}, {end}) is not a subtree range of an RFC 9162 tree")
    pieces = []
    for level in range(top, -1, -1):
        if n >> level & 1:
            pieces.append((level, start >> level))
            start += 1 << level
    return pieces


def combine(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range from its complete subtrees' hashes, left to right."""
    if not hashes:
        raise ValueError("a range has at least one complete subtree")
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def range_hash(start: int, end: int, subtree_hash: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[start:end]), given a function returning the hash of subtree (level, index)."""
    return combine([subtree_hash(level, index) for level, index in complete_subtrees(start, end)])


def inclusion_proof_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1 as the [start, end) ranges whose MTH
    are its elements, bottom-up."""
    if not (_is_size(index) and _is_size(size) and index < size):
        raise ValueError(f"no leaf {index} in a tree of {size}")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start = middle
    ranges.reverse()
    return ranges


def consistency_proof_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """PROOF(first, D[second]) of RFC 9162 §2.1.4.1 as [start, end) ranges, in order."""
    if not (_is_size(first) and _is_size(second) and 0 < first <= second):
        raise ValueError(f"no consistency proof from size {first} to {second}")
    # SUBPROOF(m, D[start:end], whole), unrolled: each step appends one range after
    # the deeper ones, so they are collected top-down and reversed.
    appended = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        middle = start + _split(end - start)
        if m <= middle - start:
            appended.append((middle, end))
            end = middle
        else:
            appended.append((start, middle))
            m -= middle - start
            start = middle
            whole = False
    head = [] if whole else [(start, end)]
    return head + appended[::-1]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows the leaf with hash `leaf` (leaf_hash of its data) at `index`
    in the tree of `size` leaves with `root` (RFC 9162 §2.1.3.2); False if malformed."""
    if not (_is_hash(leaf) and _is_hash(root) and _is_size(index) and _is_size(size)):
        return False
    if index >= size or not isinstance(proof, Sequence) or isinstance(proof, bytes | str):
        return False
    if not all(_is_hash(p) for p in proof):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows the tree of `first` leaves is a prefix of the tree of
    `second` (RFC 9162 §2.1.4.2); False if malformed."""
    if not (_is_hash(first_root) and _is_hash(second_root)):
        return False
    if not (_is_size(first) and _is_size(second) and first <= second):
        return False
    if not isinstance(proof, Sequence) or isinstance(proof, bytes | str):
        return False
    if not all(_is_hash(p) for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        # Every tree extends the empty one; there is nothing to prove.
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class Frontier:
    """A tree that leaves are appended to, kept as its row of complete subtrees
    (the "compact range"): O(log n) memory, the root at any size on the way."""

    def __init__(self) -> None:
        self.size = 0
        # The complete subtrees' hashes, largest first; their levels are the set
        # bits of `size`, from the highest down.
        self._hashes: list[bytes] = []

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf, by its hash."""
        if not _is_hash(leaf_hash):
            raise ValueError("a leaf hash is a 32-byte SHA-256 digest")
        h = leaf_hash
        n = self.size
        hashes = self._hashes
        while n & 1:
            h = node_hash(hashes.pop(), h)
            n >>= 1
        hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """MTH of every leaf appended so far (EMPTY_ROOT when there are none)."""
        return combine(self._hashes) if self._hashes else EMPTY_ROOT

    def subtrees(self) -> list[tuple[int, int, bytes]]:
        """The frontier as (level, index, hash), left to right."""
        return [
            (level, index, h)
            for (level, index), h in zip(
                complete_subtrees(0, self.size) if self.size else [], self._hashes, strict=True
            )
        ]
