"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

Definitions (RFC 9162 section 2.1.1), with ``||`` concatenation and SHA-256 as ``HASH``:

- the hash of the empty tree is ``HASH()``;
- a leaf hash is ``HASH(0x00 || data)``;
- the tree head over ``n > 1`` leaves is ``HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``, where
  ``k`` is the largest power of two smaller than ``n``.

Four tools, all pure:

- `MerkleTree`: an immutable snapshot over a list of leaf hashes. Building it costs O(n) hashes and
  keeps every complete, aligned subtree hash (about 2n hashes, 64 bytes per leaf). From it the
  root at any size costs O(log n), and an inclusion or consistency proof O(log^2 n), with no
  further hashing of leaves: a million leaves are fine.
- `TiledTree`: the same answers from much less: the hashes of the complete aligned subtrees of
  ``2**tile_height`` leaves and above (kept by a cache, a few bytes per leaf) plus the few tiles
  of leaves a proof actually reaches into. A tile it was not given raises `MissingTile`, so the
  caller loads exactly what the proof needs and asks again.
- `Frontier`: the compact range ``[0, n)``, i.e. the roots of the complete subtrees along the tree's
  right edge (one per set bit of ``n``). A sequencer keeps it to append a leaf in O(log n) (O(1)
  amortised) and read the root in O(log n), without reloading earlier leaves.
- `verify_inclusion` and `verify_consistency`: the verification algorithms of RFC 9162 sections
  2.1.3.2 and 2.1.4.2, returning ``True`` only for a proof that checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "MerkleTree",
    "MissingTile",
    "TiledTree",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""MTH({}) = HASH(), the root of the empty tree."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Return ``HASH(0x00 || data)``, the hash of one leaf."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("leaf data is bytes")
    return _sha256(_LEAF_PREFIX + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``HASH(0x01 || left || right)``, the hash of an interior node."""
    _check_hash(left)
    _check_hash(right)
    return _sha256(_NODE_PREFIX + left + right).digest()


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return MTH over the given leaf hashes, in O(n) hashes and O(log n) memory."""
    return Frontier().extend(leaf_hashes).root()


def _check_hash(value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ValueError(f"a tree hash is {HASH_SIZE} bytes")


def _split(n: int) -> int:
    """Return the largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


class _Tree:
    """The RFC 9162 algorithms over the hashes of complete, aligned subtrees.

    A subclass says where ``_perfect(height, index)`` comes from: the hash of the complete
    subtree of ``2**height`` leaves starting at leaf ``index * 2**height``.
    """

    __slots__ = ("_size",)

    _size: int

    @property
    def size(self) -> int:
        """The number of leaves in the tree."""
        return self._size

    def leaf_hash(self, index: int) -> bytes:
        """Return the hash of leaf ``index``."""
        self._check_index(index, self._size)
        return self._perfect(0, index)

    def root(self, size: int | None = None) -> bytes:
        """Return MTH over the first ``size`` leaves (all of them by default)."""
        size = self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._subtree(0, size)

    def frontier(self, size: int | None = None) -> Frontier:
        """Return the compact range over the first ``size`` leaves, to resume appending."""
        size = self._check_size(size)
        hashes: list[bytes] = []
        start = 0
        for height in range(size.bit_length() - 1, -1, -1):
            if size >> height & 1:
                hashes.append(self._perfect(height, start >> height))
                start += 1 << height
        return Frontier(size, tuple(hashes))

    def inclusion_proof(self, index: int, size: int | None = None) -> tuple[bytes, ...]:
        """Return PATH(index, D[0:size]) (RFC 9162 section 2.1.3.1), nearest the leaf first."""
        size = self._check_size(size)
        self._check_index(index, size)
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo += k
        path.reverse()
        return tuple(path)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> tuple[bytes, ...]:
        """Return PROOF(old_size, D[0:new_size]) (RFC 9162 section 2.1.4.1).

        The proof is empty when ``old_size`` is 0 or equals ``new_size``: there is nothing to prove.
        """
        new_size = self._check_size(new_size)
        if not isinstance(old_size, int) or isinstance(old_size, bool):
            raise TypeError("a tree size is an int")
        if not 0 <= old_size <= new_size:
            raise ValueError("old size must be between 0 and the new size")
        if old_size in (0, new_size):
            return ()
        path: list[bytes] = []
        lo, hi, m, whole = 0, new_size, old_size, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo += k
                m -= k
                whole = False
        if not whole:
            path.append(self._subtree(lo, hi))
        path.reverse()
        return tuple(path)

    def _perfect(self, height: int, index: int) -> bytes:
        raise NotImplementedError

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a node of the tree: ``lo`` is aligned to the node's left child."""
        width = hi - lo
        if width & (width - 1) == 0:
            height = width.bit_length() - 1
            return self._perfect(height, lo >> height)
        k = _split(width)
        return _sha256(
            _NODE_PREFIX + self._subtree(lo, lo + k) + self._subtree(lo + k, hi)
        ).digest()

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError("a tree size is an int")
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size must be between 0 and {self._size}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("a leaf index is an int")
        if not 0 <= index < size:
            raise ValueError("leaf index must be below the tree size")


class MerkleTree(_Tree):
    """An immutable tree over a list of leaf hashes, answering roots and proofs at any size.

    ``levels[h]`` packs the hashes of the complete subtrees of ``2**h`` leaves that start at a
    multiple of ``2**h``, 32 bytes each. Any node of the RFC 9162 tree over the first ``size``
    leaves is either such a subtree or, on the right edge, the fold of O(log n) of them.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        leaves = list(leaf_hashes)
        for value in leaves:
            _check_hash(value)
        self._size = len(leaves)
        level = b"".join(leaves)
        levels = [level]
        while len(level) >= 2 * HASH_SIZE:
            pairs = len(level) // (2 * HASH_SIZE)
            level = b"".join(
                [
                    _sha256(_NODE_PREFIX + level[i : i + 2 * HASH_SIZE]).digest()
                    for i in range(0, pairs * 2 * HASH_SIZE, 2 * HASH_SIZE)
                ]
            )
            levels.append(level)
        self._levels: tuple[bytes, ...] = tuple(levels)

    def level(self, height: int) -> bytes:
        """The packed hashes of the complete aligned subtrees of ``2**height`` leaves."""
        return self._levels[height] if height < len(self._levels) else b""

    def _perfect(self, height: int, index: int) -> bytes:
        offset = index * HASH_SIZE
        return self._levels[height][offset : offset + HASH_SIZE]


class MissingTile(LookupError):
    """A `TiledTree` needs the leaves of tile ``tile`` to answer; load them and ask again."""

    def __init__(self, tile: int) -> None:
        super().__init__(f"tile {tile} is not loaded")
        self.tile = tile


class TiledTree(_Tree):
    """The tree over ``size`` leaves from its upper levels and a few tiles of leaves.

    ``upper[j]`` packs the hashes of the complete aligned subtrees of ``2**(tile_height + j)``
    leaves (at least those inside the first ``size`` leaves); ``tiles`` maps a tile number to
    the `MerkleTree` of its leaves (a tile may be partial at the right edge). Answers are those of
    ``MerkleTree`` over all ``size`` leaves; reaching into a tile not given raises `MissingTile`.
    """

    __slots__ = ("_height", "_tiles", "_upper")

    def __init__(
        self,
        size: int,
        *,
        tile_height: int,
        upper: Sequence[bytes | bytearray],
        tiles: Mapping[int, MerkleTree],
    ) -> None:
        if not _is_count(size) or not _is_count(tile_height):
            raise ValueError("size and tile height are non-negative ints")
        self._size = size
        self._height = tile_height
        self._upper = upper
        self._tiles = tiles

    def _perfect(self, height: int, index: int) -> bytes:
        if height >= self._height:
            level = height - self._height
            offset = index * HASH_SIZE
            if level >= len(self._upper) or offset + HASH_SIZE > len(self._upper[level]):
                raise LookupError(f"no cached subtree at height {height}, index {index}")
            return bytes(self._upper[level][offset : offset + HASH_SIZE])
        tile = (index << height) >> self._height
        loaded = self._tiles.get(tile)
        if loaded is None:
            raise MissingTile(tile)
        return loaded._perfect(height, index - (tile << (self._height - height)))


@dataclass(frozen=True, slots=True)
class Frontier:
    """The compact range ``[0, size)``: the roots of the right-edge complete subtrees.

    ``hashes`` lists them left to right, largest first: one per set bit of ``size``, so at most 64
    for any realistic log. This is all a sequencer needs to persist between batches.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise ValueError("frontier size must be a non-negative int")
        if not isinstance(self.hashes, tuple) or len(self.hashes) != self.size.bit_count():
            raise ValueError("a frontier holds one hash per set bit of its size")
        if not all(_is_hash(value) for value in self.hashes):
            raise ValueError(f"a tree hash is {HASH_SIZE} bytes")

    def append(self, leaf: bytes) -> Frontier:
        """Return the frontier with one more leaf hash appended; O(log n)."""
        return self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> Frontier:
        """Return the frontier with the leaf hashes appended in order; O(1) amortised each."""
        hashes = list(self.hashes)
        size = self.size
        for leaf in leaves:
            _check_hash(leaf)
            merged = leaf
            carry = size
            while carry & 1:
                merged = _sha256(_NODE_PREFIX + hashes.pop() + merged).digest()
                carry >>= 1
            hashes.append(merged)
            size += 1
        return Frontier(size, tuple(hashes))

    def root(self) -> bytes:
        """Return MTH over the leaves appended so far; O(log n)."""
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            root = _sha256(_NODE_PREFIX + left + root).digest()
        return root


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check that leaf hash ``leaf`` is leaf ``index`` of the tree of ``tree_size`` and ``root``.

    RFC 9162 section 2.1.3.2, step by step; any malformed input is a failed proof.
    """
    if not (_is_hash(leaf) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    if not (_is_count(index) and _is_count(tree_size)) or index >= tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + p + r).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree of ``old_size``/``old_root`` is a prefix of ``new_size``/``new_root``.

    RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need an empty proof and
    equal roots; from size 0 the proof is empty and the old root must be the empty tree's.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if not (_is_count(old_size) and _is_count(new_size)) or old_size > new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
