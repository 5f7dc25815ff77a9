"""What the console checks on the server for the IG officer: an entry's inclusion proof against
the latest signed checkpoint, and the whole log through the verifier."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.canonical import entry_leaf_hash
from gateway.audit.checkpoint import CheckpointVerifier
from gateway.audit.errors import AuditError
from gateway.audit.log import entry_fields, inclusion_proof, latest_checkpoint
from gateway.audit.merkle import verify_inclusion
from gateway.audit.subtrees import SubtreeCache
from gateway.errors import AuditLogInconsistent
from gateway.store.models import AuditEntry

__all__ = ["ProofCheck", "check_entry"]


@dataclass(frozen=True, slots=True)
class ProofCheck:
    status: str  # verified, pending, failed, unavailable
    label: str
    detail: str
    tree_size: int | None = None
    origin: str | None = None


async def check_entry(
    session: AsyncSession,
    row: AuditEntry,
    verifier: CheckpointVerifier | None,
    cache: SubtreeCache | None = None,
) -> ProofCheck:
    """Hash the entry as it reads now, and check its inclusion proof against the latest
    checkpoint whose signature verifies with the log's key."""
    if verifier is None:
        return ProofCheck("unavailable", "not checked", "The checkpoint key is not loaded.")
    if row.seq is None:
        return ProofCheck("pending", "pending", "Not yet sequenced into the tree (about 1 s).")
    stored = await latest_checkpoint(session)
    if stored is None:
        return ProofCheck("pending", "pending", "No checkpoint has been signed yet.")
    try:
        checkpoint = verifier.verify(stored.note)
    except AuditError as exc:
        return ProofCheck(
            "failed", "FAILED", f"The latest checkpoint does not verify ({exc.code})."
        )
    if row.seq >= checkpoint.size:
        return ProofCheck(
            "pending", "pending", "Not yet covered by a signed checkpoint.", checkpoint.size
        )
    try:
        leaf = entry_leaf_hash(entry_fields(row))
    except AuditError as exc:
        return ProofCheck("failed", "FAILED", f"The entry has no canonical form ({exc.code}).")
    if row.leaf_hash != leaf.hex():
        return ProofCheck(
            "failed",
            "FAILED",
            "The entry's content no longer matches the hash it was sequenced with.",
            checkpoint.size,
            checkpoint.origin,
        )
    try:
        proof = await inclusion_proof(session, row.entry_id, checkpoint.size, cache=cache)
    except AuditLogInconsistent:
        return ProofCheck(
            "failed", "FAILED", "The stored tree has gaps.", checkpoint.size, checkpoint.origin
        )
    if not verify_inclusion(leaf, row.seq, checkpoint.size, proof.path, checkpoint.root_hash):
        return ProofCheck(
            "failed",
            "FAILED",
            "The proof does not lead to the signed root.",
            checkpoint.size,
            checkpoint.origin,
        )
    return ProofCheck(
        "verified",
        "verified",
        f"Entry {row.seq} is leaf {row.seq} of the tree whose root the gateway signed; its "
        f"content hashes to the proven leaf.",
        checkpoint.size,
        checkpoint.origin,
    )
