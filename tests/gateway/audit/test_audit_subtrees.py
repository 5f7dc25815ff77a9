"""Proofs through the subtree cache: the same answers as the whole tree, from a few tiles of leaves,
extended as the log grows, rebuilt when the store no longer matches its signed checkpoint."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from gateway.audit import MerkleTree, MissingTile, TiledTree, leaf_hash
from gateway.audit import subtrees as subtrees_module
from gateway.audit.log import consistency_proof, inclusion_proof, latest_checkpoint, leaf_hashes
from gateway.audit.merkle import verify_consistency, verify_inclusion
from gateway.audit.sequencer import sequence
from gateway.audit.signer import RingNoteSigner
from gateway.audit.subtrees import TILE_WIDTH, SubtreeCache
from gateway.flow.audit import record
from gateway.store import Database
from tests.gateway.audit.conftest import DB_ORIGIN, audit_event

# --- The pure tree -------------------------------------------------------------------------------


def _tiled(leaves: list[bytes], size: int, height: int) -> TiledTree:
    """A TiledTree over the first ``size`` leaves with every tile loaded."""
    whole = MerkleTree(leaves[: size - size % (1 << height)])
    upper = [whole.level(h) for h in range(height, max(height, size.bit_length()) + 1)]
    width = 1 << height
    tiles = {
        t: MerkleTree(leaves[t * width : min((t + 1) * width, size)])
        for t in range((size + width - 1) // width)
    }
    return TiledTree(size, tile_height=height, upper=upper, tiles=tiles)


@pytest.mark.parametrize("height", [0, 1, 2, 3])
def test_tiled_tree_answers_exactly_as_the_whole_tree(height: int) -> None:
    """Roots, inclusion and consistency proofs agree with MerkleTree for every size up to 40."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(40)]
    whole = MerkleTree(leaves)
    for size in range(1, 41):
        tiled = _tiled(leaves, size, height)
        assert tiled.root() == whole.root(size)
        for index in range(size):
            assert tiled.inclusion_proof(index) == whole.inclusion_proof(index, size)
        for old in range(size + 1):
            assert tiled.consistency_proof(old) == whole.consistency_proof(old, size)


def test_tiled_tree_asks_for_a_tile_it_was_not_given() -> None:
    """Reaching into an unloaded tile raises MissingTile naming it; nothing is made up."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(20)]
    complete = _tiled(leaves, 20, 2)
    sparse = TiledTree(20, tile_height=2, upper=complete._upper, tiles={})
    with pytest.raises(MissingTile) as missing:
        sparse.inclusion_proof(9)
    assert missing.value.tile == 2


def test_tiled_tree_refuses_a_subtree_the_cache_does_not_cover() -> None:
    """Upper levels shorter than the size are a lookup error, never a wrong hash."""
    with pytest.raises(LookupError):
        TiledTree(16, tile_height=2, upper=[b""], tiles={}).root()


# --- Through the store ---------------------------------------------------------------------------


async def _grow(db: Database, signer: RingNoteSigner, start: int, count: int) -> None:
    async with db.write() as session:
        for i in range(start, start + count):
            record(session, audit_event(i))
    await sequence(db, signer, DB_ORIGIN)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record every range of leaf hashes the cache reads from the store."""
    reads: list[tuple[int, int]] = []
    real = subtrees_module._leaves

    async def leaves(session, start, stop):  # type: ignore[no-untyped-def]
        reads.append((start, stop))
        return await real(session, start, stop)

    monkeypatch.setattr(subtrees_module, "_leaves", leaves)
    return reads


async def test_cached_proofs_equal_full_proofs_and_read_only_a_few_tiles(
    db: Database, ring_signer: RingNoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first proof fills the cache, a proof reads at most three tiles of leaves, and
    every proof equals the one built from all the leaves and verifies against the signed root."""
    await _grow(db, ring_signer, 0, 5 * TILE_WIDTH + 37)
    cache = SubtreeCache()
    reads = _spy(monkeypatch)
    async with db.read() as session:
        checkpoint = await latest_checkpoint(session)
        assert checkpoint is not None
        size = checkpoint.tree_size
        root = bytes.fromhex(checkpoint.root_hash)
        full = MerkleTree(await leaf_hashes(session, size))
        rows = (await session.execute(text("SELECT entry_id, seq FROM audit_entries"))).all()
        ids = dict((seq, entry_id) for entry_id, seq in rows)
        await inclusion_proof(session, ids[0], cache=cache)  # fills the cache
        assert cache.tiles == 5
        rng = random.Random(7)
        for seq in [0, TILE_WIDTH - 1, TILE_WIDTH, size - 1, *rng.sample(range(size), 6)]:
            reads.clear()
            tree_size = rng.randint(seq + 1, size)
            proof = await inclusion_proof(session, ids[seq], tree_size, cache=cache)
            assert proof.path == full.inclusion_proof(seq, tree_size)
            assert proof.root_hash == full.root(tree_size)
            assert sum(stop - start for start, stop in reads) <= 3 * TILE_WIDTH
        assert verify_inclusion(full.leaf_hash(5), 5, size, full.inclusion_proof(5), root)
        for first, second in [(1, size), (TILE_WIDTH, size), (300, 1000), (size, size), (0, 9)]:
            reads.clear()
            proof_c = await consistency_proof(session, first, second, cache=cache)
            assert proof_c.path == full.consistency_proof(first, second)
            assert proof_c.second_root == full.root(second)
            assert sum(stop - start for start, stop in reads) <= 4 * TILE_WIDTH
        last = await consistency_proof(session, 300, size, cache=cache)
        assert verify_consistency(300, size, full.root(300), root, last.path)


async def test_cache_extends_as_the_log_grows(
    db: Database, ring_signer: RingNoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New entries are read once, from where the cache stopped, and proofs cover them."""
    await _grow(db, ring_signer, 0, 2 * TILE_WIDTH + 5)
    cache = SubtreeCache()
    async with db.read() as session:
        await consistency_proof(session, 1, 2 * TILE_WIDTH + 5, cache=cache)
    assert cache.tiles == 2
    await _grow(db, ring_signer, 10_000, 2 * TILE_WIDTH)
    reads = _spy(monkeypatch)
    async with db.read() as session:
        checkpoint = await latest_checkpoint(session)
        assert checkpoint is not None
        proof = await consistency_proof(
            session, 2 * TILE_WIDTH + 5, checkpoint.tree_size, cache=cache
        )
        old_root = MerkleTree(await leaf_hashes(session, 2 * TILE_WIDTH + 5)).root()
    assert cache.tiles == 4
    assert reads[0] == (2 * TILE_WIDTH, 4 * TILE_WIDTH)  # the new tiles only
    assert verify_consistency(
        proof.first,
        proof.second,
        old_root,
        bytes.fromhex(checkpoint.root_hash),
        proof.path,
    )


async def test_a_store_rewritten_under_the_cache_is_served_as_it_now_is(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """Leaf hashes rewritten in a cached tile: a proof that reads that tile no longer gives the
    signed root, so it is served from the store as it now is (failing against the signed
    checkpoint, as without a cache) and the cache is emptied; a proof elsewhere before that
    still verifies, from hashes the signed root vouches for."""
    await _grow(db, ring_signer, 0, 3 * TILE_WIDTH)
    cache = SubtreeCache()
    async with db.read() as session:
        checkpoint = await latest_checkpoint(session)
        assert checkpoint is not None
        await inclusion_proof(session, await _entry_at(session, 0), cache=cache)
    signed_root = bytes.fromhex(checkpoint.root_hash)
    forged = leaf_hash(b"forged").hex()
    async with db.write() as session:
        await session.execute(
            text("UPDATE audit_entries SET leaf_hash = :h WHERE seq = 3"), {"h": forged}
        )
    async with db.read() as session:
        far = await inclusion_proof(session, await _entry_at(session, 700), cache=cache)
        assert verify_inclusion(far.leaf_hash, 700, far.tree_size, far.path, signed_root)
        entry_id = await _entry_at(session, 5)
        cached = await inclusion_proof(session, entry_id, cache=cache)
        uncached = await inclusion_proof(session, entry_id)
    assert cached == uncached
    assert not verify_inclusion(cached.leaf_hash, 5, cached.tree_size, cached.path, signed_root)
    assert cache.tiles == 0  # nothing the signed root does not vouch for is kept


async def test_a_cache_of_another_log_is_replaced(
    db: Database, ring_signer: RingNoteSigner, database_url: str
) -> None:
    """A cache filled from one store and then used on a different log (a restored or replaced
    database) rebuilds from the store it now reads: proofs verify against that log's root."""
    await _grow(db, ring_signer, 0, 2 * TILE_WIDTH + 3)
    cache = SubtreeCache()
    async with db.read() as session:
        await inclusion_proof(session, await _entry_at(session, 1), cache=cache)
    async with db.write() as session:
        await session.execute(text("DELETE FROM audit_checkpoints"))
        await session.execute(text("DELETE FROM audit_entries"))
    await _grow(db, ring_signer, 50_000, 2 * TILE_WIDTH + 3)  # same size, other entries
    async with db.read() as session:
        checkpoint = await latest_checkpoint(session)
        assert checkpoint is not None
        proof = await inclusion_proof(session, await _entry_at(session, 1), cache=cache)
    assert verify_inclusion(
        proof.leaf_hash, 1, proof.tree_size, proof.path, bytes.fromhex(checkpoint.root_hash)
    )
    assert cache.tiles == 2


async def test_a_gap_in_a_tile_the_proof_reads_is_inconsistent(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """A deleted row in the entry's own tile is reported, not papered over."""
    from gateway.errors import AuditLogInconsistent

    await _grow(db, ring_signer, 0, TILE_WIDTH + 10)
    cache = SubtreeCache()
    async with db.read() as session:
        entry_id = await _entry_at(session, TILE_WIDTH + 2)
        await inclusion_proof(session, entry_id, cache=cache)
    async with db.write() as session:
        await session.execute(text(f"DELETE FROM audit_entries WHERE seq = {TILE_WIDTH + 4}"))
    async with db.read() as session:
        with pytest.raises(AuditLogInconsistent):
            await inclusion_proof(session, entry_id, cache=cache)


async def _entry_at(session, seq: int) -> str:  # type: ignore[no-untyped-def]
    return str(
        (
            await session.execute(
                text("SELECT entry_id FROM audit_entries WHERE seq = :s"), {"s": seq}
            )
        ).scalar_one()
    )
