"""Where a rewritten log first departs from what was signed, from the checkpoints it still holds.

An entry rewritten together with its stored leaf hash (by someone with write access to the
database) passes every entry check: only a signed root shows it, as a root mismatch, and one root
cannot say which leaf changed. But the sequencer signs a checkpoint for every batch it integrates
(about one a second while entries arrive), and each signed checkpoint still in the database is a
genuine statement of the tree at its size, wherever it is stored: only the gateway's key could
have signed it. If the first rewritten entry is ``seq`` *k*, every genuine checkpoint of size at
most *k* still matches the entries and every larger one does not. So a bisection over the stored
checkpoints, by size, finds the last that matches (*a*) and the first that does not (*b*), and the
first rewritten entry lies in ``[a, b)``: exactly named when the two are one entry apart, else
within one sequencer batch.

Checkpoints whose signatures do not verify (forged rows) are skipped; deleting checkpoint rows can
only widen the range, never move it. The roots at the probed sizes come from the stored leaf
hashes (which the verifier has already checked against every entry's content before a root
mismatch is reported): one pass keeps the hashes of complete 256-leaf tiles (a quarter of a byte
per leaf), and each probe reads the leaves of one partial tile and about 25 checkpoint rows in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, create_engine, func, select
from sqlalchemy.pool import NullPool

from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier
from gateway.audit.errors import CheckpointError
from gateway.audit.log import sync_url
from gateway.audit.merkle import EMPTY_ROOT, MerkleTree, MissingTile, TiledTree, root_hash
from gateway.audit.subtrees import TILE_HEIGHT, TILE_WIDTH
from gateway.store.models import AuditCheckpoint, AuditEntry

__all__ = ["Rewrite", "locate_rewrite"]

_CHUNK: Final = 64 * TILE_WIDTH  # leaf hashes read per query


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The first rewritten entry's ``seq`` lies in ``[matches, differs)``: the sizes of the
    largest stored signed checkpoint the entries still give, and of the smallest they do not."""

    matches: int
    differs: int

    @property
    def seq(self) -> int | None:
        """The entry itself, when the range holds one."""
        return self.matches if self.differs - self.matches == 1 else None

    def describe(self) -> str:
        if self.seq is not None:
            return (
                f"the first entry no longer as signed is seq {self.seq} (signed checkpoints of "
                f"sizes {self.matches} and {self.differs})"
            )
        return (
            f"the first entry no longer as signed is among seq {self.matches} to "
            f"{self.differs - 1} (signed checkpoints of sizes {self.matches} and {self.differs})"
        )


def locate_rewrite(url: str, verifier: CheckpointVerifier, differs: Checkpoint) -> Rewrite:
    """Bisect the database's stored checkpoints below ``differs`` (a signed checkpoint whose root
    the stored leaf hashes do not give) for the range holding the first rewritten entry."""
    engine = create_engine(sync_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            root_at = _Roots(conn, differs.size)
            rows = _Checkpoints(conn, differs.size)
            good, bad = -1, rows.count  # row indexes; -1 is the empty tree, count is ``differs``
            matches, differing = 0, differs.size
            while bad - good > 1:
                found = rows.first_verified(good + (bad - good) // 2, bad, verifier)
                if found is None:  # nothing usable in the upper half: look in the lower one
                    bad = good + (bad - good) // 2
                    continue
                index, checkpoint = found
                if root_at(checkpoint.size) == checkpoint.root_hash:
                    good, matches = index, checkpoint.size
                else:
                    bad, differing = index, checkpoint.size
            return Rewrite(matches, differing)
    finally:
        engine.dispose()


class _Checkpoints:
    """The stored checkpoints of size below ``below``, by index in size order."""

    def __init__(self, conn: Connection, below: int) -> None:
        self._conn = conn
        self._below = below
        count = conn.execute(
            select(func.count())
            .select_from(AuditCheckpoint)
            .where(AuditCheckpoint.tree_size > 0, AuditCheckpoint.tree_size < below)
        ).scalar_one()
        self.count = int(count)

    def first_verified(
        self, start: int, stop: int, verifier: CheckpointVerifier
    ) -> tuple[int, Checkpoint] | None:
        """The first row in ``[start, stop)`` whose note verifies and is of its row's size."""
        for index in range(start, stop):
            row = self._conn.execute(
                select(AuditCheckpoint.tree_size, AuditCheckpoint.note)
                .where(AuditCheckpoint.tree_size > 0, AuditCheckpoint.tree_size < self._below)
                .order_by(AuditCheckpoint.tree_size)
                .offset(index)
                .limit(1)
            ).first()
            if row is None:
                return None
            try:
                checkpoint = verifier.verify(str(row.note))
            except CheckpointError:
                continue
            if checkpoint.size == row.tree_size:
                return index, checkpoint
        return None


class _Roots:
    """Roots of the stored leaf hashes at any size up to ``size``: the complete tiles' hashes
    kept from one pass, a partial tile's leaves read when a size ends inside one."""

    def __init__(self, conn: Connection, size: int) -> None:
        self._conn = conn
        tiles = bytearray()
        for start in range(0, size - size % TILE_WIDTH, _CHUNK):
            stop = min(start + _CHUNK, size - size % TILE_WIDTH)
            leaves = self._leaves(start, stop)
            for offset in range(0, len(leaves), TILE_WIDTH):
                tiles += root_hash(leaves[offset : offset + TILE_WIDTH])
        upper = MerkleTree(bytes(tiles[i : i + 32]) for i in range(0, len(tiles), 32))
        self._upper = [upper.level(j) for j in range(upper.size.bit_length() + 1)]

    def __call__(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        loaded: dict[int, MerkleTree] = {}
        while True:
            tree = TiledTree(size, tile_height=TILE_HEIGHT, upper=self._upper, tiles=loaded)
            try:
                return tree.root()
            except MissingTile as missing:
                start = missing.tile * TILE_WIDTH
                loaded[missing.tile] = MerkleTree(
                    self._leaves(start, min(start + TILE_WIDTH, size))
                )

    def _leaves(self, start: int, stop: int) -> list[bytes]:
        rows = self._conn.execute(
            select(AuditEntry.leaf_hash)
            .where(AuditEntry.seq >= start, AuditEntry.seq < stop)
            .order_by(AuditEntry.seq)
        ).scalars()
        leaves = [bytes.fromhex(str(value)) for value in rows]
        if len(leaves) != stop - start:
            raise ValueError("the stored leaves changed while the log was being located")
        return leaves
