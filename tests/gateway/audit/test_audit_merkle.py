"""RFC 9162 Merkle tree hashing and proofs, against the CT reference vectors and the RFC itself."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

if TYPE_CHECKING:
    from conftest import CTVectors

# --- The RFC 9162 definitions, recursively and naively, as an independent reference -------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: tuple[bytes, ...]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 section 2.1.1 defines it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1."""
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: tuple[bytes, ...], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 section 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


@cache
def sample_leaves(n: int) -> tuple[bytes, ...]:
    return tuple(leaf_hash(i.to_bytes(4, "big")) for i in range(n))


def flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


# --- Certificate Transparency reference vectors -------------------------------------------------

#: SHA-256 of ../shared/vectors/rfc9162-ct.json as the project received it.
COPIED_CT_VECTORS_SHA256 = "43b509e9dab1c12bd402655406c74bae664d0cc9f74d4d14c3eee4b860ea2139"


def test_vector_locator_fails_rather_than_skips_when_file_missing(
    load_ct_vectors: Callable[[Path], CTVectors], tmp_path: Path
) -> None:
    """A missing vector file fails the run instead of silently skipping the vector tests."""
    with pytest.raises(pytest.fail.Exception):
        load_ct_vectors(tmp_path / "absent.json")


def test_the_copied_vectors_are_the_shared_ones_byte_for_byte() -> None:
    """The repository's copy of the CT vectors (what a clone away from ``shared/`` tests
    against) is the shared reference file exactly: never edited to make a test pass."""
    from tests.gateway.audit.conftest import COPIED_CT_VECTORS, SHARED_CT_VECTORS

    assert COPIED_CT_VECTORS.is_file()
    if SHARED_CT_VECTORS.is_file():
        assert COPIED_CT_VECTORS.read_bytes() == SHARED_CT_VECTORS.read_bytes()
    else:
        digest = hashlib.sha256(COPIED_CT_VECTORS.read_bytes()).hexdigest()
        assert digest == COPIED_CT_VECTORS_SHA256


def test_vectors_cover_sizes_one_to_eight(ct_vectors: CTVectors) -> None:
    """The vector file holds eight leaves and eight roots, so the tests below cover them all."""
    assert len(ct_vectors.leaves) == len(ct_vectors.roots) == 8
    assert ct_vectors.consistency


@pytest.mark.parametrize("size", range(1, 9))
def test_root_matches_ct_vector_for_each_size(ct_vectors: CTVectors, size: int) -> None:
    """MerkleTree, Frontier and root_hash all give the CT vector root for 1..8 leaves."""
    leaves = ct_vectors.leaves[:size]
    expected = ct_vectors.roots[size - 1]
    assert MerkleTree(leaves).root() == expected
    assert MerkleTree(ct_vectors.leaves).root(size) == expected
    assert Frontier().extend(leaves).root() == expected
    assert root_hash(leaves) == expected


def test_empty_tree_root_matches_ct_vector(ct_vectors: CTVectors) -> None:
    """The empty tree's root is SHA-256 of nothing, as the vectors say."""
    assert EMPTY_ROOT == ct_vectors.empty_root
    assert MerkleTree([]).root() == ct_vectors.empty_root
    assert Frontier().root() == ct_vectors.empty_root
    assert root_hash([]) == ct_vectors.empty_root


def test_consistency_proofs_match_ct_vectors_and_verify(ct_vectors: CTVectors) -> None:
    """Each listed consistency proof is generated exactly and accepted by the verifier."""
    tree = MerkleTree(ct_vectors.leaves)
    for (old, new), proof in ct_vectors.consistency.items():
        assert list(tree.consistency_proof(old, new)) == proof, (old, new)
        old_root, new_root = ct_vectors.roots[old - 1], ct_vectors.roots[new - 1]
        assert verify_consistency(old, new, old_root, new_root, proof)


def test_ct_vector_consistency_proofs_fail_when_any_node_changes(ct_vectors: CTVectors) -> None:
    """Flipping one bit of any node of a vector proof, or of either root, makes it fail."""
    for (old, new), proof in ct_vectors.consistency.items():
        old_root, new_root = ct_vectors.roots[old - 1], ct_vectors.roots[new - 1]
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
            assert not verify_consistency(old, new, old_root, new_root, bad)
        assert not verify_consistency(old, new, flip(old_root), new_root, proof)
        assert not verify_consistency(old, new, old_root, flip(new_root), proof)


def test_inclusion_proofs_verify_for_every_leaf_of_every_vector_size(ct_vectors: CTVectors) -> None:
    """Every leaf of every tree of 1..8 vector leaves has a proof that verifies."""
    tree = MerkleTree(ct_vectors.leaves)
    for size in range(1, 9):
        root = ct_vectors.roots[size - 1]
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert verify_inclusion(ct_vectors.leaves[index], index, size, proof, root)


def test_inclusion_proofs_fail_when_any_hash_or_index_is_tweaked(ct_vectors: CTVectors) -> None:
    """Changing the leaf, any proof node, the root or the index fails every proof."""
    tree = MerkleTree(ct_vectors.leaves)
    for size in range(1, 9):
        root = ct_vectors.roots[size - 1]
        for index in range(size):
            leaf = ct_vectors.leaves[index]
            proof = list(tree.inclusion_proof(index, size))
            assert not verify_inclusion(flip(leaf), index, size, proof, root)
            assert not verify_inclusion(leaf, index, size, proof, flip(root))
            for i in range(len(proof)):
                bad = [*proof[:i], flip(proof[i], 7), *proof[i + 1 :]]
                assert not verify_inclusion(leaf, index, size, bad, root)
            for other in range(-1, size + 2):
                if other != index:
                    assert not verify_inclusion(leaf, other, size, proof, root)
            # A size that cannot hold the index fails. (Another size with the same tree shape
            # would not: the proof binds the size only through its shape, the root binds the rest.)
            assert not verify_inclusion(leaf, index, index, proof, root)
            assert not verify_inclusion(leaf, index, size, [*proof, root], root)
            if proof:
                assert not verify_inclusion(leaf, index, size, proof[:-1], root)


# --- Generation against the RFC's own definitions ------------------------------------------------


def test_roots_and_proofs_match_rfc_definitions_for_small_trees() -> None:
    """Roots, PATH and PROOF equal the RFC's recursive definitions for every size up to 40."""
    for n in range(41):
        leaves = sample_leaves(n)
        tree = MerkleTree(leaves)
        assert tree.root() == ref_mth(leaves)
        for index in range(n):
            assert list(tree.inclusion_proof(index)) == ref_path(index, leaves)
        for m in range(1, n):
            assert list(tree.consistency_proof(m)) == ref_subproof(m, leaves, True)


def test_tree_answers_for_every_earlier_size() -> None:
    """One tree gives the root, inclusion and consistency proofs of any earlier size."""
    leaves = sample_leaves(77)
    tree = MerkleTree(leaves)
    for size in range(78):
        assert tree.root(size) == ref_mth(leaves[:size])
    for size in (1, 5, 32, 33, 60):
        for index in (0, size // 2, size - 1):
            proof = tree.inclusion_proof(index, size)
            assert verify_inclusion(leaves[index], index, size, proof, tree.root(size))
        proof = tree.consistency_proof(size, 70)
        assert verify_consistency(size, 70, tree.root(size), tree.root(70), proof)


def test_random_consistency_proofs_verify_and_fail_when_tampered() -> None:
    """Proofs for random m <= n verify; any changed root, node or proof length fails them."""
    rng = random.Random(9162)
    tree = MerkleTree(sample_leaves(600))
    for _ in range(300):
        n = rng.randint(1, 600)
        m = rng.randint(1, n)
        proof = list(tree.consistency_proof(m, n))
        old_root, new_root = tree.root(m), tree.root(n)
        assert verify_consistency(m, n, old_root, new_root, proof), (m, n)
        if m == n:
            assert proof == []
            assert not verify_consistency(m, n, old_root, flip(new_root), proof)
            continue
        assert not verify_consistency(m, n, flip(old_root), new_root, proof)
        assert not verify_consistency(m, n, old_root, flip(new_root), proof)
        i = rng.randrange(len(proof))
        bad = [*proof[:i], flip(proof[i], rng.randrange(8)), *proof[i + 1 :]]
        assert not verify_consistency(m, n, old_root, new_root, bad)
        assert not verify_consistency(m, n, old_root, new_root, proof[:-1])
        assert not verify_consistency(m, n, old_root, new_root, [*proof, new_root])
        assert not verify_consistency(n, m, new_root, old_root, proof)


def test_random_inclusion_proofs_in_a_large_tree_verify() -> None:
    """Inclusion proofs at random positions of a 5,000-leaf tree verify against its root."""
    rng = random.Random(6962)
    leaves = sample_leaves(5000)
    tree = MerkleTree(leaves)
    root = tree.root()
    assert root == root_hash(leaves)
    for _ in range(200):
        index = rng.randrange(5000)
        assert verify_inclusion(leaves[index], index, 5000, tree.inclusion_proof(index), root)


def test_consistency_from_empty_or_to_same_size() -> None:
    """From size 0 and between equal sizes the proof is empty and only the roots are checked."""
    tree = MerkleTree(sample_leaves(9))
    assert tree.consistency_proof(0) == ()
    assert tree.consistency_proof(9) == ()
    assert verify_consistency(0, 9, EMPTY_ROOT, tree.root(), [])
    assert not verify_consistency(0, 9, tree.root(1), tree.root(), [])
    assert not verify_consistency(0, 9, EMPTY_ROOT, tree.root(), [tree.root()])
    assert verify_consistency(9, 9, tree.root(), tree.root(), [])
    assert not verify_consistency(9, 9, tree.root(), tree.root(8), [])
    assert not verify_consistency(4, 9, tree.root(4), tree.root(), [])


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00" * 31,  # a hash one byte short
        b"\x00" * 33,  # a hash one byte long
        "00" * 32,  # hex text, not bytes
    ],
)
def test_verifiers_refuse_malformed_hashes(bad: object) -> None:
    """A proof node, leaf or root that is not 32 bytes makes verification fail, not crash."""
    tree = MerkleTree(sample_leaves(5))
    proof = list(tree.inclusion_proof(2))
    assert not verify_inclusion(bad, 2, 5, proof, tree.root())  # type: ignore[arg-type]
    assert not verify_inclusion(sample_leaves(5)[2], 2, 5, [bad, *proof[1:]], tree.root())  # type: ignore[list-item]
    cproof = list(tree.consistency_proof(3))
    assert not verify_consistency(3, 5, bad, tree.root(), cproof)  # type: ignore[arg-type]
    assert not verify_consistency(3, 5, tree.root(3), tree.root(), [bad, *cproof[1:]])  # type: ignore[list-item]


def test_tree_refuses_bad_leaves_indices_and_sizes() -> None:
    """Leaf hashes of the wrong size, indices outside the tree and bad sizes are refused."""
    with pytest.raises(ValueError):
        MerkleTree([b"\x00" * 31])
    tree = MerkleTree(sample_leaves(4))
    with pytest.raises(ValueError):
        tree.inclusion_proof(4)
    with pytest.raises(ValueError):
        tree.inclusion_proof(2, 2)
    with pytest.raises(ValueError):
        tree.root(5)
    with pytest.raises(ValueError):
        tree.consistency_proof(3, 2)
    with pytest.raises(TypeError):
        tree.root(True)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """A leaf over two hashes never equals the node over them (0x00 versus 0x01 prefix)."""
    left, right = sample_leaves(2)
    assert leaf_hash(left + right) != node_hash(left, right)
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


# --- The incremental frontier --------------------------------------------------------------------


def test_frontier_root_equals_mth_for_every_size_up_to_300() -> None:
    """Appending one leaf at a time, the frontier's root is MTH of the leaves so far."""
    leaves = sample_leaves(300)
    tree = MerkleTree(leaves)
    frontier = Frontier()
    assert frontier.root() == tree.root(0)
    for size in range(1, 301):
        frontier = frontier.append(leaves[size - 1])
        assert frontier.size == size
        assert len(frontier.hashes) == size.bit_count()
        assert frontier.root() == tree.root(size), size
    assert frontier.root() == ref_mth(leaves)


def test_frontier_resumes_from_a_stored_state() -> None:
    """A frontier rebuilt from its stored size and hashes, or from a tree, carries on the same."""
    leaves = sample_leaves(1000)
    tree = MerkleTree(leaves)
    for split in (0, 1, 255, 256, 257, 999):
        stored = Frontier().extend(leaves[:split])
        assert tree.frontier(split) == stored
        resumed = Frontier(stored.size, stored.hashes).extend(leaves[split:])
        assert resumed.root() == tree.root()


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (-1, ()),  # negative size
        (1, ()),  # one set bit, no hash
        (2, (b"\x00" * 32, b"\x00" * 32)),  # one set bit, two hashes
        (1, (b"\x00" * 31,)),  # hash of the wrong size
        (3, [b"\x00" * 32, b"\x00" * 32]),  # a list, not a tuple
    ],
)
def test_frontier_refuses_inconsistent_state(size: int, hashes: tuple[bytes, ...]) -> None:
    """A frontier whose hashes do not match its size cannot be built."""
    with pytest.raises(ValueError):
        Frontier(size, hashes)
