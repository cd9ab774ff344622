"""petitions/merkle.py against RFC 9162 §2.1, written out naively below, and against
the Certificate Transparency test vectors. No database."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petitions import merkle

# The RFC's definitions, recursively and straight from the text (§2.1.1, §2.1.3.1,
# §2.1.4.1), over the leaves' data. Tuples so that MTH can be cached.


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@cache
def ref_mth(d: tuple[bytes, ...]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = ref_split(n)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = ref_split(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = ref_split(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    return ref_subproof(m, d, True)


N = 64
DATA = tuple(f"leaf {i}".encode() for i in range(N + 2))
LEAVES = [merkle.leaf_hash(d) for d in DATA]


def hashed_from_leaves(ranges, leaves=LEAVES) -> list[bytes]:
    """Each [start, end) range's MTH, through range_hash and root_of of the subtrees."""

    def subtree(level: int, index: int) -> bytes:
        piece = leaves[index << level : (index + 1) << level]
        assert len(piece) == 1 << level
        return merkle.root_of(piece)

    return [merkle.range_hash(start, end, subtree) for start, end in ranges]


def changed(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def symbolic_root(start: int, end: int, names: dict) -> object:
    """MTH(D[start:end]) as an expression over named ranges (the RFC's recursion)."""
    if (start, end) in names:
        return names[(start, end)]
    if end - start == 1:
        return ("leaf", start)
    k = ref_split(end - start)
    return (symbolic_root(start, start + k, names), symbolic_root(start + k, end, names))


# A root hash does not commit to its tree's size (a signed head does): the root of
# 2 leaves is also the root of a 3-leaf tree whose first two leaves' subtree hash is
# the first leaf hash. So a proof may verify at another index or size, exactly when
# the verifier combines the same hashes in the same shape there.


@cache
def inclusion_shape(index: int, size: int) -> object:
    ranges = merkle.inclusion_proof_ranges(index, size)
    names = {(index, index + 1): "leaf", **{r: j for j, r in enumerate(ranges)}}
    return symbolic_root(0, size, names)


@cache
def consistency_shape(first: int, second: int) -> object:
    ranges = merkle.consistency_proof_ranges(first, second)
    names = {r: j for j, r in enumerate(ranges)}
    if first & (first - 1) == 0:
        names[(0, first)] = "first root"
    return symbolic_root(0, first, names), symbolic_root(0, second, names)


# Hashing ---------------------------------------------------------------------------


def test_hashes_are_domain_separated_sha256():
    assert merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.node_hash(a, b) != merkle.node_hash(b, a)


def test_root_and_frontier_equal_the_reference_at_every_size():
    frontier = merkle.Frontier()
    assert frontier.size == 0
    assert frontier.root() == merkle.EMPTY_ROOT == merkle.root_of([])
    assert frontier.subtrees() == []
    for size in range(1, N + 1):
        frontier.append(LEAVES[size - 1])
        expected = ref_mth(DATA[:size])
        assert merkle.root_of(LEAVES[:size]) == expected
        assert frontier.size == size
        assert frontier.root() == expected
        subtrees = frontier.subtrees()
        assert [(lv, i) for lv, i, _ in subtrees] == merkle.complete_subtrees(0, size)
        for level, index, h in subtrees:
            assert h == ref_mth(DATA[index << level : (index + 1) << level])
        assert merkle.combine([h for _, _, h in subtrees]) == expected


def test_wrong_length_leaf_hashes_are_refused():
    with pytest.raises(ValueError):
        merkle.root_of([LEAVES[0], b"leaf data, not its hash"])
    with pytest.raises(ValueError):
        merkle.Frontier().append(b"\x00" * 31)


# Known answers: the RFC 6962 test leaves used by Certificate Transparency
# implementations (e.g. transparency-dev/merkle testonly/constants.go).

CT_DATA = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_LEAVES = [merkle.leaf_hash(d) for d in CT_DATA]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def test_certificate_transparency_roots():
    frontier = merkle.Frontier()
    assert frontier.root().hex() == CT_ROOTS[0]
    for size in range(1, 9):
        frontier.append(CT_LEAVES[size - 1])
        assert merkle.root_of(CT_LEAVES[:size]).hex() == CT_ROOTS[size]
        assert frontier.root().hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size"), list(CT_INCLUSION))
def test_certificate_transparency_inclusion_proofs(index, size):
    ranges = merkle.inclusion_proof_ranges(index, size)
    proof = hashed_from_leaves(ranges, CT_LEAVES)
    assert [h.hex() for h in proof] == CT_INCLUSION[(index, size)]
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify_inclusion(CT_LEAVES[index], index, size, proof, root)


@pytest.mark.parametrize(("first", "second"), list(CT_CONSISTENCY))
def test_certificate_transparency_consistency_proofs(first, second):
    ranges = merkle.consistency_proof_ranges(first, second)
    proof = hashed_from_leaves(ranges, CT_LEAVES)
    assert [h.hex() for h in proof] == CT_CONSISTENCY[(first, second)]
    first_root, second_root = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
    assert merkle.verify_consistency(first, second, first_root, second_root, proof)


# Decomposition into complete subtrees ------------------------------------------------


def test_complete_subtrees_examples():
    assert merkle.complete_subtrees(0, 1) == [(0, 0)]
    assert merkle.complete_subtrees(0, 6) == [(2, 0), (1, 2)]
    assert merkle.complete_subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.complete_subtrees(0, 8) == [(3, 0)]
    assert merkle.complete_subtrees(5, 6) == [(0, 5)]
    assert merkle.complete_subtrees(8, 13) == [(2, 2), (0, 12)]
    assert merkle.complete_subtrees(16, 31) == [(3, 2), (2, 6), (1, 14), (0, 30)]
    assert merkle.complete_subtrees(0, 1_000_000)[0] == (19, 0)


@pytest.mark.parametrize(("start", "end"), [(0, 0), (3, 3), (5, 2), (-1, 1), (1, 3), (2, 7)])
def test_complete_subtrees_refuses_ranges_no_tree_has(start, end):
    with pytest.raises(ValueError):
        merkle.complete_subtrees(start, end)


def test_every_range_of_every_tree_decomposes_into_its_mth():
    for size in range(1, N + 1):
        for index in range(size):
            for start, end in merkle.inclusion_proof_ranges(index, size):
                pieces = merkle.complete_subtrees(start, end)
                assert sum(1 << lv for lv, _ in pieces) == end - start
                assert hashed_from_leaves([(start, end)]) == [ref_mth(DATA[start:end])]


def test_combine():
    a, b, c = LEAVES[:3]
    assert merkle.combine([a]) == a
    assert merkle.combine([a, b, c]) == merkle.node_hash(a, merkle.node_hash(b, c))
    with pytest.raises(ValueError):
        merkle.combine([])


# Inclusion proofs ------------------------------------------------------------------


def test_inclusion_proofs_equal_the_rfc_and_only_they_verify():
    for size in range(1, N + 1):
        root = ref_mth(DATA[:size])
        for index in range(size):
            leaf = LEAVES[index]
            proof = hashed_from_leaves(merkle.inclusion_proof_ranges(index, size))
            assert proof == ref_path(index, DATA[:size]), (index, size)
            assert merkle.verify_inclusion(leaf, index, size, proof, root)

            assert not merkle.verify_inclusion(changed(leaf), index, size, proof, root)
            assert not merkle.verify_inclusion(leaf, index, size, proof, changed(root))
            for j in range(len(proof)):
                bad = [*proof[:j], changed(proof[j]), *proof[j + 1 :]]
                assert not merkle.verify_inclusion(leaf, index, size, bad, root)
                dropped = proof[:j] + proof[j + 1 :]
                assert not merkle.verify_inclusion(leaf, index, size, dropped, root)
            for j in range(len(proof) + 1):
                for extra in (LEAVES[-1], root, leaf):
                    added = [*proof[:j], extra, *proof[j:]]
                    assert not merkle.verify_inclusion(leaf, index, size, added, root)

            for other in range(-1, size + 1):  # every other index of this tree
                if other != index:
                    assert not merkle.verify_inclusion(leaf, other, size, proof, root)
            for other_size in range(0, N + 2):
                if other_size == size:
                    continue
                valid = index < other_size
                same_shape = valid and inclusion_shape(index, other_size) == inclusion_shape(
                    index, size
                )
                got = merkle.verify_inclusion(leaf, index, other_size, proof, root)
                assert got == same_shape, (index, size, other_size)


def test_inclusion_proof_ranges_refuse_bad_positions():
    for index, size in [(0, 0), (3, 3), (4, 3), (-1, 3), (True, 3)]:
        with pytest.raises(ValueError):
            merkle.inclusion_proof_ranges(index, size)
    assert merkle.inclusion_proof_ranges(0, 1) == []


def test_verify_inclusion_is_false_for_malformed_input():
    proof = hashed_from_leaves(merkle.inclusion_proof_ranges(5, 8), CT_LEAVES)
    root = bytes.fromhex(CT_ROOTS[8])
    leaf = CT_LEAVES[5]
    assert merkle.verify_inclusion(leaf, 5, 8, proof, root)
    for args in [
        (leaf[:31], 5, 8, proof, root),
        (leaf.hex(), 5, 8, proof, root),
        (CT_DATA[5], 5, 8, proof, root),  # the data, not its hash
        (leaf, 5, 8, proof, root[:31]),
        (leaf, 5, 8, proof, None),
        (leaf, 5, 8, [proof[0][:31], *proof[1:]], root),
        (leaf, 5, 8, [h.hex() for h in proof], root),
        (leaf, 5, 8, b"".join(proof), root),
        (leaf, 5, 8, None, root),
        (leaf, 8, 8, proof, root),
        (leaf, -1, 8, proof, root),
        (leaf, 5, -8, proof, root),
        (leaf, "5", 8, proof, root),
        (leaf, 5.0, 8, proof, root),
        (leaf, 5, None, proof, root),
    ]:
        assert merkle.verify_inclusion(*args) is False


# Consistency proofs -----------------------------------------------------------------


def test_consistency_proofs_equal_the_rfc_and_only_they_verify():
    roots = [ref_mth(DATA[:size]) for size in range(N + 2)]
    for second in range(1, N + 1):
        for first in range(1, second + 1):
            r1, r2 = roots[first], roots[second]
            proof = hashed_from_leaves(merkle.consistency_proof_ranges(first, second))
            assert proof == ref_proof(first, DATA[:second]), (first, second)
            assert merkle.verify_consistency(first, second, r1, r2, proof)
            if first == second:
                assert proof == []
                assert not merkle.verify_consistency(first, second, r1, changed(r2), [])
                assert not merkle.verify_consistency(first, second, r1, r2, [r1])
                continue

            assert not merkle.verify_consistency(first, second, changed(r1), r2, proof)
            assert not merkle.verify_consistency(first, second, r1, changed(r2), proof)
            assert not merkle.verify_consistency(first, second, r2, r1, proof)
            for j in range(len(proof)):
                bad = [*proof[:j], changed(proof[j]), *proof[j + 1 :]]
                assert not merkle.verify_consistency(first, second, r1, r2, bad)
                dropped = proof[:j] + proof[j + 1 :]
                assert not merkle.verify_consistency(first, second, r1, r2, dropped)
            for j in range(len(proof) + 1):
                for extra in (LEAVES[-1], r1, r2):
                    added = [*proof[:j], extra, *proof[j:]]
                    assert not merkle.verify_consistency(first, second, r1, r2, added)

            for other in range(0, second + 2):  # every other first size
                if other != first:
                    assert not merkle.verify_consistency(other, second, r1, r2, proof)
            for other_second in range(0, N + 2):
                if other_second == second:
                    continue
                same_shape = first < other_second and consistency_shape(
                    first, other_second
                ) == consistency_shape(first, second)
                got = merkle.verify_consistency(first, other_second, r1, r2, proof)
                assert got == same_shape, (first, second, other_second)


def test_consistency_proof_ranges_refuse_bad_sizes():
    for first, second in [(0, 0), (0, 5), (6, 5), (-1, 5), (1, 0)]:
        with pytest.raises(ValueError):
            merkle.consistency_proof_ranges(first, second)
    assert merkle.consistency_proof_ranges(7, 7) == []


def test_verify_consistency_is_false_for_malformed_input():
    r6, r8 = bytes.fromhex(CT_ROOTS[6]), bytes.fromhex(CT_ROOTS[8])
    proof = hashed_from_leaves(merkle.consistency_proof_ranges(6, 8), CT_LEAVES)
    assert merkle.verify_consistency(6, 8, r6, r8, proof)
    for args in [
        (6, 8, r6[:31], r8, proof),
        (6, 8, r6, r8[:31], proof),
        (6, 8, r6.hex(), r8, proof),
        (6, 8, r6, r8, [proof[0][:31], *proof[1:]]),
        (6, 8, r6, r8, [h.hex() for h in proof]),
        (6, 8, r6, r8, b"".join(proof)),
        (6, 8, r6, r8, None),
        (6, 8, r6, r8, []),
        (8, 6, r8, r6, proof),
        (-6, 8, r6, r8, proof),
        (6, "8", r6, r8, proof),
        (6, 8.0, r6, r8, proof),
    ]:
        assert merkle.verify_consistency(*args) is False


def test_every_tree_extends_the_empty_one():
    r8 = bytes.fromhex(CT_ROOTS[8])
    assert merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, r8, [])
    assert merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert not merkle.verify_consistency(0, 8, CT_LEAVES[0], r8, [])
    assert not merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, r8, [r8])


# Random larger trees -----------------------------------------------------------------

BIG = 5000
BIG_LEAVES = [merkle.leaf_hash(b"big %d" % i) for i in range(BIG)]


@st.composite
def tree_positions(draw):
    size = draw(st.integers(1, BIG))
    index = draw(st.integers(0, size - 1))
    first = draw(st.integers(1, size))
    return size, index, first


@settings(max_examples=150, deadline=None)
@given(tree_positions())
def test_random_trees_prove_inclusion_and_consistency(position):
    size, index, first = position
    root = merkle.root_of(BIG_LEAVES[:size])
    first_root = merkle.root_of(BIG_LEAVES[:first])
    leaf = BIG_LEAVES[index]

    path = hashed_from_leaves(merkle.inclusion_proof_ranges(index, size), BIG_LEAVES)
    assert merkle.verify_inclusion(leaf, index, size, path, root)
    assert not merkle.verify_inclusion(changed(leaf), index, size, path, root)
    if path:
        assert not merkle.verify_inclusion(leaf, index, size, path[:-1], root)

    proof = hashed_from_leaves(merkle.consistency_proof_ranges(first, size), BIG_LEAVES)
    assert merkle.verify_consistency(first, size, first_root, root, proof)
    if first < size:
        assert not merkle.verify_consistency(first, size, changed(first_root), root, proof)
    if index < first < size:  # a history rewritten before the first head
        rewritten = [*BIG_LEAVES[:index], changed(leaf), *BIG_LEAVES[index + 1 : first]]
        rewritten_root = merkle.root_of(rewritten)
        assert not merkle.verify_consistency(first, size, rewritten_root, root, proof)
