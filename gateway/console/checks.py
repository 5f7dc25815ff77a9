"""What the console checks on the server for the IG officer: an entry's inclusion proof against
the latest signed checkpoint, and the whole log through the verifier.

An entry's check holds it to what the verifier holds the log to (`gateway.audit.verify`), as far
as one entry can be held without reading the whole log:

- its content must hash to the leaf hash stored with it (`Problem.EDITED` otherwise), checked
  first, whatever else is missing;
- a sequenced entry must be covered by the latest stored checkpoint whose signature verifies:
  the sequencer numbers entries and signs the checkpoint covering them in one transaction, so
  an entry with a ``seq`` and no checkpoint covering it means checkpoint rows were removed
  (`Problem.UNCOVERED`);
- that checkpoint must be the checkpoint witness kept outside the database, or extend it (the
  sequencer's own check, `check_witnessed`): checkpoint rows deleted, or an old backup restored,
  show here even for an entry whose ``seq`` was blanked as well;
- an entry without a ``seq`` is *pending* only while the sequencer could still be about to sign
  it (`pending_bound`); older, it is *suspect*: the sequencer is stopped or refusing, or the
  entry's place in the tree was removed. One with a leaf hash but no ``seq`` was sequenced and
  its ``seq`` removed: FAILED.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.canonical import entry_leaf_hash
from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier
from gateway.audit.errors import AuditError
from gateway.audit.log import entry_fields, inclusion_proof, latest_checkpoint
from gateway.audit.merkle import verify_inclusion
from gateway.audit.sequencer import check_witnessed
from gateway.audit.subtrees import SubtreeCache
from gateway.audit.verify import Problem
from gateway.audit.witness import WitnessRead
from gateway.errors import AuditLogInconsistent
from gateway.store.models import AuditEntry

__all__ = ["ProofCheck", "check_entry", "pending_bound", "unsequenced_status"]

#: The least time an entry may wait for the sequencer before it is suspect rather than pending.
_PENDING_SECONDS: Final = 60.0
#: ... or this many sequencer intervals, when that is longer.
_PENDING_INTERVALS: Final = 5


def pending_bound(sequence_interval_seconds: float) -> dt.timedelta:
    """How long an entry may stay unsequenced and still be shown as pending: 60 s, or five
    sequencer intervals (``MAPPA_AUDIT_SEQUENCE_INTERVAL_SECONDS``) when that is longer."""
    return dt.timedelta(
        seconds=max(_PENDING_SECONDS, _PENDING_INTERVALS * sequence_interval_seconds)
    )


@dataclass(frozen=True, slots=True)
class ProofCheck:
    status: str  # verified, pending, suspect, failed, unavailable
    label: str
    detail: str
    tree_size: int | None = None
    origin: str | None = None


def unsequenced_status(row: AuditEntry, now: dt.datetime, bound: dt.timedelta) -> str | None:
    """For an entry without a ``seq``: ``failed`` when it has a leaf hash (it was sequenced),
    ``suspect`` when it has waited longer than ``bound``, else ``pending``; None for a
    sequenced entry."""
    if row.seq is not None:
        return None
    if row.leaf_hash is not None:
        return "failed"
    occurred = row.occurred_at
    if occurred.tzinfo is None:
        occurred = occurred.replace(tzinfo=dt.UTC)
    return "suspect" if now - occurred > bound else "pending"


def _failed(detail: str, checkpoint: Checkpoint | None = None) -> ProofCheck:
    if checkpoint is None:
        return ProofCheck("failed", "FAILED", detail)
    return ProofCheck("failed", "FAILED", detail, checkpoint.size, checkpoint.origin)


async def check_entry(
    session: AsyncSession,
    row: AuditEntry,
    verifier: CheckpointVerifier | None,
    cache: SubtreeCache | None = None,
    *,
    witness: WitnessRead | None = None,
    now: dt.datetime | None = None,
    bound: dt.timedelta | None = None,
) -> ProofCheck:
    """Hash the entry as it reads now, and check its inclusion proof against the latest
    checkpoint whose signature verifies with the log's key, that checkpoint against the
    ``witness`` (read *before* this session read anything: the sequencer writes the file after
    it commits), and an unsequenced entry's age at ``now`` against ``bound`` (default: the
    bound of the default sequencer interval)."""
    if verifier is None:
        return ProofCheck("unavailable", "not checked", "The checkpoint key is not loaded.")
    if row.seq is None and row.leaf_hash is not None:
        return _failed(
            "The entry has the leaf hash the sequencer gave it but no place (seq) in the tree: "
            "its place was removed."
        )
    leaf: bytes | None = None
    if row.seq is not None:
        try:
            leaf = entry_leaf_hash(entry_fields(row))
        except AuditError as exc:
            return _failed(f"The entry has no canonical form ({exc.code}).")
        if row.leaf_hash != leaf.hex():
            return _failed(
                f"{Problem.EDITED.value}: the entry's content no longer matches the hash it "
                "was sequenced with."
            )
    stored = await latest_checkpoint(session)
    checkpoint: Checkpoint | None = None
    if stored is not None:
        try:
            checkpoint = verifier.verify(stored.note)
        except AuditError as exc:
            return _failed(
                f"{Problem.CHECKPOINT_INVALID.value}: the latest checkpoint does not verify "
                f"({exc.code})."
            )
    if witness is not None and witness.error is not None:
        # The sequencer refuses to sign over a witness it cannot read (witness_unreadable):
        # the entry cannot be held to it either, so it is not called verified.
        return _failed(
            f"The checkpoint witness kept outside the database cannot be read "
            f"({witness.error}): the log cannot be held to it.",
            checkpoint,
        )
    if witness is not None and witness.note is not None:
        try:
            await check_witnessed(session, witness.note, verifier, checkpoint, cache)
        except AuditLogInconsistent as exc:
            reason = exc.diagnostics.get("reason", "witness_inconsistent")
            return _failed(
                f"The log's latest checkpoint does not extend the checkpoint witness kept "
                f"outside the database ({reason}): checkpoint rows removed, or an old backup "
                "restored.",
                checkpoint,
            )
    if row.seq is None:
        bound = bound if bound is not None else pending_bound(1.0)
        status = unsequenced_status(row, now or dt.datetime.now(dt.UTC), bound)
        if status == "suspect":
            return ProofCheck(
                "suspect",
                "suspect",
                f"Not sequenced after more than {int(bound.total_seconds())} s: the sequencer "
                "is stopped or refusing to sign (see the Integrity page and the "
                "audit_integrity_alert log event), or the entry's place in the tree was "
                "removed. Nothing vouches for this entry.",
            )
        return ProofCheck("pending", "pending", "Not yet sequenced into the tree (about 1 s).")
    assert leaf is not None
    if checkpoint is None or row.seq >= checkpoint.size:
        covered = checkpoint.size if checkpoint is not None else 0
        return _failed(
            f"{Problem.UNCOVERED.value}: the entry has place {row.seq} in the tree but no "
            f"stored signed checkpoint covers it (the latest covers {covered}). The gateway "
            "stores the checkpoint in the same transaction as the place: checkpoint rows were "
            "removed.",
            checkpoint,
        )
    try:
        proof = await inclusion_proof(session, row.entry_id, checkpoint.size, cache=cache)
    except AuditLogInconsistent:
        return _failed("The stored tree has gaps.", checkpoint)
    if not verify_inclusion(leaf, row.seq, checkpoint.size, proof.path, checkpoint.root_hash):
        return _failed("The proof does not lead to the signed root.", checkpoint)
    return ProofCheck(
        "verified",
        "verified",
        f"Entry {row.seq} is leaf {row.seq} of the tree whose root the gateway signed; its "
        f"content hashes to the proven leaf.",
        checkpoint.size,
        checkpoint.origin,
    )
