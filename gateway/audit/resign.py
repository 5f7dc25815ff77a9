"""Carry the log's signed head over to a new checkpoint key: ``mappa-gateway audit resign-head``.

The sequencer builds only on a head that a *usable* checkpoint key signed (`sequencer._resume`).
During a rotation's overlap it re-signs the head itself; but a key retired at once, as after a
compromise (``keys rotate checkpoint-signing --overlap-hours 0``, then ``keys retire``), leaves
the latest stored checkpoint signed by a key the log no longer trusts, and the sequencer refuses
it (``checkpoint_unverified``) at every step. `resign_head` is the operator's way out that does
not take the retired key's word for anything it signed:

1. it reads the latest stored checkpoint and every sequenced entry on one snapshot, re-hashes
   each entry from its content and recomputes the tree head, which must be the checkpoint's
   size and root (no entry beyond it, none missing);
2. it holds that tree to the checkpoint witness (`gateway.audit.witness`, kept outside the
   database): the witnessed head must be the same or a prefix the entries still give; and to
   ``saved``, a checkpoint saved earlier off the host, when given (the stronger anchor: the
   witness is on the host the key may have leaked from). Without a witness file a saved
   checkpoint is required. Signatures on the head, the witness and the saved checkpoint must
   be by a key of the log, retired ones included (`signer.historic_verifier`): they show the
   notes are the log's own, while what is trusted is the recomputation;
3. under the sequencer's lock, with the head still the one checked, it signs the same size and
   root with the current key, stores that note in the head's row (as the sequencer does after a
   rotation), and records an ``administration`` entry (``audit_head_resigned``: the tree size and
   root, the current kid and the kids whose signatures the old note carried) in the same
   transaction; after the commit it writes the new note to the witness file.

A head that already carries the current key's signature is not signed again; only a witness
that lags behind it (another host's, on PostgreSQL) is brought up to it, with an entry
``audit_witness_renewed``. Any check that fails raises `AuditLogInconsistent` with a ``reason``
and nothing is signed or written. From then on the log verifies with the published keys alone:
the head is the current key's, and it vouches for every entry up to it. Older checkpoint rows
stay signed by the retired key, which verification no longer trusts: `gateway.audit.locate`
skips them as it skips forged rows (its range can only widen).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select

from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier, sign_checkpoint
from gateway.audit.errors import CheckpointError
from gateway.audit.log import latest_checkpoint, log_snapshot
from gateway.audit.merkle import EMPTY_ROOT, Frontier
from gateway.audit.sequencer import _inconsistent, _lock
from gateway.audit.signer import RingNoteSigner, historic_verifier, signed_by
from gateway.audit.verify import VerificationReport, verify_entries
from gateway.audit.witness import CheckpointWitness
from gateway.errors import AuditLogInconsistent
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.store import Database
from gateway.store.models import AuditEntry

__all__ = ["HeadResigned", "resign_head"]


@dataclass(frozen=True, slots=True)
class HeadResigned:
    """What `resign_head` did: the head (``tree_size``, ``root_hash``) as stored now in ``note``,
    whether it was signed again (by ``kid``, the old note being signed by ``from_kids``), the
    size the witness held before (None: no file), and whether the witness now holds ``note``."""

    tree_size: int
    root_hash: bytes
    note: str
    resigned: bool
    kid: str
    from_kids: tuple[str, ...]
    witness_size: int | None
    witness_written: bool


@dataclass(frozen=True, slots=True)
class _Checked:
    note: str
    head: Checkpoint
    witness: Checkpoint | None
    saved: Checkpoint | None


def _refuse(report: VerificationReport, against: str) -> AuditLogInconsistent:
    assert report.problem is not None
    return _inconsistent(
        "log_unverified",
        against=against,
        problem=report.problem.value,
        seq=report.seq,
        tree_size=report.tree_size,
    )


def _check(
    url: str, verifier: CheckpointVerifier, witness: str | None, saved: str | None
) -> _Checked:
    """Steps 1 and 2, on the database at ``url`` (synchronous: run in a thread)."""
    with log_snapshot(url) as (stored, entries):
        if stored is None:
            raise _inconsistent("checkpoints_missing")
        size, note = stored
        try:
            head = verifier.verify(note)
        except CheckpointError as exc:
            raise _inconsistent("checkpoint_unverified", code=exc.code, tree_size=size) from exc
        if head.size != size:
            raise _inconsistent("checkpoint_columns_mismatch", tree_size=size)
        report = verify_entries(
            entries, checkpoint=note, verifier=verifier, witness=witness, covered_to=size
        )
    if not report.ok:
        against = "checkpoint witness" if report.detail.startswith("checkpoint witness") else "head"
        raise _refuse(report, against)
    checked = _Checked(note, head, report.witness, None)
    if saved is None:
        return checked
    with log_snapshot(url) as (_, entries):
        report = verify_entries(entries, checkpoint=saved, verifier=verifier)
    if not report.ok:
        raise _refuse(report, "saved checkpoint")
    assert report.checkpoint is not None
    return _Checked(note, head, checked.witness, report.checkpoint)


async def resign_head(
    db: Database,
    signer: RingNoteSigner,
    origin: str,
    *,
    witness: CheckpointWitness | None,
    officer: str,
    saved: str | None = None,
    now: dt.datetime | None = None,
) -> HeadResigned:
    """Sign the latest head again with the current checkpoint key once the entries, the witness
    and ``saved`` (a checkpoint saved earlier) have shown it is the log's; see the module's
    description. Raises `AuditLogInconsistent` (nothing signed or written) when a check fails,
    `StoreUnavailable` when the database cannot be written."""
    moment = now or dt.datetime.now(dt.UTC)
    ring = signer.ring
    verifier = historic_verifier(origin, ring)
    witnessed: str | None = None
    if witness is not None:
        try:
            witnessed = witness.read()
        except (OSError, ValueError) as exc:
            raise _inconsistent("witness_unreadable") from exc
    if witnessed is None and saved is None:
        raise _inconsistent("witness_missing")
    checked = await asyncio.to_thread(_check, db.url, verifier, witnessed, saved)
    head = checked.head
    kid = signer.kid
    from_kids = signed_by(checked.note, origin, ring)
    resigned = kid not in from_kids
    async with db.write() as session:
        await _lock(session, db)
        latest = await latest_checkpoint(session)
        if latest is None or latest.tree_size != head.size or latest.note != checked.note:
            raise _inconsistent("head_moved", tree_size=head.size)
        if latest.root_hash != head.root_hash.hex():
            raise _inconsistent("checkpoint_columns_mismatch", tree_size=head.size)
        try:
            frontier = Frontier(head.size, tuple(bytes.fromhex(h) for h in latest.frontier))
        except (ValueError, TypeError) as exc:
            raise _inconsistent("frontier_malformed", tree_size=head.size) from exc
        if (frontier.root() if head.size else EMPTY_ROOT) != head.root_hash:
            raise _inconsistent("frontier_root_mismatch", tree_size=head.size)
        highest = (await session.execute(select(func.max(AuditEntry.seq)))).scalar_one()
        if highest != (head.size - 1 if head.size else None):
            raise _inconsistent("sequenced_beyond_checkpoint", tree_size=head.size)
        note = sign_checkpoint(head, signer) if resigned else checked.note
        renew = witness is not None and witnessed != note
        if resigned:
            latest.note = note
        if resigned or renew:
            action = "audit_head_resigned" if resigned else "audit_witness_renewed"
            record(
                session,
                AuditEvent(
                    occurred_at=moment,
                    operation=Operation.ADMINISTRATION,
                    outcome=Outcome.ALLOWED,
                    officer_id=officer,
                    reason_code=action,
                    detail={
                        "action": action,
                        "via": "cli",
                        "tree_size": head.size,
                        "root_hash": head.root_hash.hex(),
                        "kid": kid,
                        "from_kids": list(from_kids),
                        "witness_size": checked.witness.size if checked.witness else None,
                        "saved_checkpoint_size": checked.saved.size if checked.saved else None,
                    },
                ),
            )
    written = False
    if witness is not None:
        written = not renew or await asyncio.to_thread(_record, witness, note)
    return HeadResigned(
        tree_size=head.size,
        root_hash=head.root_hash,
        note=note,
        resigned=resigned,
        kid=kid,
        from_kids=from_kids,
        witness_size=checked.witness.size if checked.witness else None,
        witness_written=written,
    )


def _record(witness: CheckpointWitness, note: str) -> bool:
    try:
        return witness.record(note)
    except (OSError, CheckpointError):
        return False
