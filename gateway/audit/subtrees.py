"""Proofs without reading the whole log: a per-process cache of the tree's upper levels.

An inclusion or consistency proof touches O(log n) nodes. The nodes that cover whole tiles of
``TILE_WIDTH`` (256) leaves are hashes of complete, aligned subtrees: once their leaves are
sequenced they never change in an append-only log, so `SubtreeCache` keeps them (two hashes per
tile, about a quarter of a byte per leaf: 2.5 MB for ten million entries) and extends them as the
log grows, reading only the leaves sequenced since. A proof then reads, fresh from the store, only
the few tiles of leaves it reaches into (the entry's own tile and the partial tiles at the sizes
involved): at most a few thousand rows whatever the size of the log.

Invalidation. The cache only ever serves hashes a signed checkpoint vouches for: each complete
tile a proof reads must hash to the cached root of that tile, and the cache with the tiles read
must give the latest checkpoint's signed root. If either check fails (the store was restored from
another backup, replaced, or rewritten), the proof is built from the store as it now holds,
exactly as without a cache (a tampered store serves proofs that fail against the signed
checkpoint), and that rebuild replaces the cache only if it gives the signed root; otherwise the
cache is emptied. Nothing beyond the latest checkpoint's size is ever used.

The cache is per process (each replica fills its own on its first proof, one pass over the leaf
hashes, in bounded chunks) and safe for concurrent requests of one event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.merkle import HASH_SIZE, MerkleTree, MissingTile, TiledTree
from gateway.errors import AuditLogInconsistent
from gateway.store.models import AuditCheckpoint, AuditEntry

__all__ = ["TILE_HEIGHT", "TILE_WIDTH", "SubtreeCache"]

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
_CHUNK_TILES: Final = 256  # tiles read per query when extending (65,536 leaf hashes)
_HEX: Final = frozenset("0123456789abcdef")

T = TypeVar("T")


def _leaf(seq: object, expected: int, stored: object) -> bytes:
    if (
        seq != expected
        or not isinstance(stored, str)
        or len(stored) != 2 * HASH_SIZE
        or not _HEX.issuperset(stored)
    ):
        raise AuditLogInconsistent(diagnostics={"reason": "leaf_missing", "seq": expected})
    return bytes.fromhex(stored)


async def _leaves(session: AsyncSession, start: int, stop: int) -> list[bytes]:
    """The stored leaf hashes of ``seq`` in ``[start, stop)``; a gap or bad hash is inconsistent."""
    rows = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.leaf_hash)
            .where(AuditEntry.seq >= start, AuditEntry.seq < stop)
            .order_by(AuditEntry.seq)
        )
    ).all()
    hashes = [_leaf(seq, start + i, stored) for i, (seq, stored) in enumerate(rows)]
    if len(hashes) != stop - start:
        raise AuditLogInconsistent(diagnostics={"reason": "leaves_missing", "seq": start})
    return hashes


def _root(tree: TiledTree) -> bytes:
    return tree.root()


class SubtreeCache:
    """The hashes of complete aligned subtrees of `TILE_WIDTH` leaves and above, per process."""

    def __init__(self) -> None:
        #: ``_upper[j]`` packs the complete subtrees of ``TILE_WIDTH * 2**j`` leaves.
        self._upper: list[bytearray] = [bytearray()]
        self._lock = asyncio.Lock()

    @property
    def tiles(self) -> int:
        """How many complete tiles the cache covers."""
        return len(self._upper[0]) // HASH_SIZE

    async def _extend(self, session: AsyncSession, size: int) -> None:
        """Cover the complete tiles of ``size`` leaves, reading only the tiles not yet covered."""
        want = size // TILE_WIDTH
        async with self._lock:
            while self.tiles < want:
                first = self.tiles
                last = min(want, first + _CHUNK_TILES)
                leaves = await _leaves(session, first * TILE_WIDTH, last * TILE_WIDTH)
                self._append(MerkleTree(leaves).level(TILE_HEIGHT))

    def _append(self, tile_roots: bytes) -> None:
        upper = self._upper
        upper[0] += tile_roots
        level = 0
        while len(upper[level]) >= 2 * HASH_SIZE:
            if level + 1 == len(upper):
                upper.append(bytearray())
            below, above = upper[level], upper[level + 1]
            for i in range(len(above) // HASH_SIZE, len(below) // (2 * HASH_SIZE)):
                pair = below[2 * HASH_SIZE * i : 2 * HASH_SIZE * (i + 1)]
                above += hashlib.sha256(b"\x01" + pair).digest()
            level += 1

    async def prove(
        self,
        session: AsyncSession,
        checkpoint: AuditCheckpoint,
        answer: Callable[[TiledTree], T],
        *,
        near: Iterable[int] = (),
    ) -> T:
        """``answer`` computed on the tree of the checkpoint's size.

        ``near`` lists leaf positions whose tiles the proof will need (a hint: any other tile
        it reaches is loaded on demand). Every complete tile read must hash to the cached tile
        root, and the tree must give the checkpoint's signed root; otherwise the proof is built
        from the store as it now is, and the cache keeps that rebuild only if it gives the
        signed root (else it is emptied).
        """
        signed_root = bytes.fromhex(checkpoint.root_hash)
        try:
            proof = await _Proof.open(self, session, checkpoint.tree_size, near)
            if await proof.answer(_root) == signed_root:
                return await proof.answer(answer)
        except _Stale:
            pass
        fresh = SubtreeCache()
        try:
            proof = await _Proof.open(fresh, session, checkpoint.tree_size, near)
            matches = await proof.answer(_root) == signed_root
            result = await proof.answer(answer)
        except _Stale as exc:  # the store changed while it was being read
            raise AuditLogInconsistent(diagnostics={"reason": "store_changed"}) from exc
        async with self._lock:
            self._upper = fresh._upper if matches else [bytearray()]
        return result


class _Stale(Exception):
    """A tile read from the store does not hash to the cached root of that tile."""


class _Proof:
    """One proof's view: the cache's levels as they are now, and the tiles read for it."""

    def __init__(self, session: AsyncSession, size: int, upper: list[bytearray]) -> None:
        self.session = session
        self.size = size
        self.tile_roots = upper[0]
        self.cached = len(upper[0]) // HASH_SIZE
        self.tiles: dict[int, MerkleTree] = {}
        self.tree = TiledTree(size, tile_height=TILE_HEIGHT, upper=list(upper), tiles=self.tiles)

    @classmethod
    async def open(
        cls, cache: SubtreeCache, session: AsyncSession, size: int, near: Iterable[int]
    ) -> _Proof:
        await cache._extend(session, size)
        proof = cls(session, size, cache._upper)
        for position in {*near, size - 1}:
            if 0 <= position < size:
                await proof.load(position // TILE_WIDTH)
        return proof

    async def load(self, tile: int) -> None:
        start = tile * TILE_WIDTH
        tree = MerkleTree(await _leaves(self.session, start, min(start + TILE_WIDTH, self.size)))
        if tile < self.cached and tree.size == TILE_WIDTH:
            cached = self.tile_roots[tile * HASH_SIZE : (tile + 1) * HASH_SIZE]
            if tree.root() != cached:
                raise _Stale()
        self.tiles[tile] = tree

    async def answer(self, answer: Callable[[TiledTree], T]) -> T:
        while True:
            try:
                return answer(self.tree)
            except MissingTile as missing:
                if missing.tile in self.tiles:
                    raise
                await self.load(missing.tile)
