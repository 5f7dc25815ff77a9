"""The log verifier against every tampering in THREATS.md (Audit integrity)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from gateway.audit.canonical import entry_leaf_hash
from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier, sign_checkpoint
from gateway.audit.merkle import MerkleTree, verify_consistency, verify_inclusion
from gateway.audit.verify import Problem, VerificationReport, verify_entries

if TYPE_CHECKING:
    from conftest import Ed25519NoteSigner, LogFactory

ORIGIN = "mappa.example/audit"
SIZE = 40

Entry = dict[str, Any]


def leaves(entries: list[Entry]) -> list[bytes]:
    return [bytes.fromhex(entry["leaf_hash"]) for entry in entries]


@pytest.fixture
def log(logs: LogFactory) -> list[Entry]:
    """An intact log of 40 entries, as the store holds it."""
    return logs.log(SIZE)


@pytest.fixture
def saved_checkpoint(log: list[Entry], log_signer: Ed25519NoteSigner) -> str:
    """The signed checkpoint an IG officer saved when the log held all 40 entries."""
    tree = MerkleTree(leaves(log))
    return sign_checkpoint(Checkpoint(ORIGIN, SIZE, tree.root()), log_signer)


def check(
    entries: list[Entry], verifier: CheckpointVerifier | None = None, note: str | None = None
) -> VerificationReport:
    return verify_entries(entries, checkpoint=note, verifier=verifier)


# --- Intact logs ------------------------------------------------------------------------------


def test_intact_log_verifies_with_its_root(log: list[Entry]) -> None:
    """An untouched log passes, and the report carries its size and RFC 9162 root."""
    report = check(log)
    assert report.ok
    assert (report.problem, report.seq, report.detail) == (None, None, "")
    assert report.tree_size == SIZE
    assert report.root_hash == MerkleTree(leaves(log)).root()


def test_intact_log_verifies_against_its_checkpoint(
    log: list[Entry], saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """The log matches the checkpoint signed at its current size."""
    report = check(log, log_verifier, saved_checkpoint)
    assert report.ok
    assert report.checkpoint is not None and report.checkpoint.size == SIZE


def test_grown_log_is_consistent_with_an_older_checkpoint(
    logs: LogFactory, saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """Entries appended after a checkpoint leave it valid: the log only grew."""
    report = check(logs.log(SIZE + 25), log_verifier, saved_checkpoint)
    assert report.ok
    assert report.tree_size == SIZE + 25


def test_empty_log_verifies(
    log_signer: Ed25519NoteSigner, log_verifier: CheckpointVerifier
) -> None:
    """An empty log passes, also against a checkpoint of size 0."""
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, MerkleTree([]).root()), log_signer)
    assert check([]).ok
    assert check([], log_verifier, note).ok


def test_verifier_reads_a_stream_once(log: list[Entry]) -> None:
    """Entries may come from a one-pass iterator (a database cursor, an export file)."""

    def stream() -> Iterator[Entry]:
        yield from log

    assert verify_entries(stream()).root_hash == check(log).root_hash


def test_hostile_text_in_fields_verifies_unchanged(logs: LogFactory) -> None:
    """Entries holding markup and control characters verify like any other."""
    entries = [
        logs.entry(0, officer_id="<img src=x onerror=alert(1)>\x00\x1b[2J", detail={"x": "\r"})
    ]
    assert check(entries).ok


# --- Tampering without a checkpoint: the entries themselves show it ----------------------------


def test_edited_entry_is_named(log: list[Entry]) -> None:
    """An entry edited in the database (stored hash untouched) is named as edited."""
    log[17] = {**log[17], "purpose": "curiosity"}
    report = check(log)
    assert (report.problem, report.seq) == (Problem.EDITED, 17)
    assert report.tree_size == 17
    assert report.root_hash == MerkleTree(leaves(log[:17])).root()


def test_report_detail_does_not_repeat_entry_content(log: list[Entry]) -> None:
    """The report says what is wrong in codes and numbers, never the edited values."""
    log[3] = {**log[3], "officer_id": "officer-SECRET-NAME"}
    report = check(log)
    assert report.problem is Problem.EDITED
    assert "SECRET" not in report.detail


def test_first_of_several_edits_is_named(log: list[Entry]) -> None:
    """With several entries edited, the first is the one reported."""
    for seq in (31, 9, 22):
        log[seq] = {**log[seq], "legal_basis": "none"}
    assert check(log).seq == 9


def test_deleted_entry_is_named(log: list[Entry]) -> None:
    """A row deleted from the middle leaves a gap, named by its seq."""
    del log[12]
    report = check(log)
    assert (report.problem, report.seq) == (Problem.DELETED, 12)


def test_deleted_entry_with_later_entries_renumbered_is_named(
    log: list[Entry], logs: LogFactory
) -> None:
    """Deleting a row and renumbering the rest to close the gap is still a deletion at 12."""
    del log[12]
    for position in range(12, len(log)):
        log[position] = {**log[position], "seq": position}
    report = check(log)
    assert (report.problem, report.seq) == (Problem.DELETED, 12)


def test_reordered_entries_are_named(log: list[Entry]) -> None:
    """Two entries read back in swapped order are reported as reordered at the first."""
    log[20], log[21] = log[21], log[20]
    report = check(log)
    assert (report.problem, report.seq) == (Problem.REORDERED, 20)


def test_entries_with_swapped_seq_values_are_named_reordered(log: list[Entry]) -> None:
    """Swapping the seq values of two rows (content and hash stay) is a reordering at 20."""
    first, second = log[20], log[21]
    log[20] = {**second, "seq": 20}
    log[21] = {**first, "seq": 21}
    report = check(log)
    assert (report.problem, report.seq) == (Problem.REORDERED, 20)


def test_entry_moved_far_back_is_named_reordered(log: list[Entry]) -> None:
    """An entry moved from 30 to 5 (others shifted, seq values kept in rows) is reordered at 5."""
    log.insert(5, log.pop(30))
    report = check(log)
    assert (report.problem, report.seq) == (Problem.REORDERED, 5)


def test_inserted_entry_with_a_duplicate_seq_is_named(log: list[Entry], logs: LogFactory) -> None:
    """A forged entry with valid hash but an existing seq is reported as inserted at that seq."""
    log.insert(26, logs.entry(25, officer_id="forger"))
    report = check(log)
    assert (report.problem, report.seq) == (Problem.INSERTED, 25)


def test_inserted_entry_with_later_entries_renumbered_is_named(
    log: list[Entry], logs: LogFactory
) -> None:
    """A forged, correctly hashed entry at 25 with the rest renumbered is named inserted at 25."""
    log.insert(25, logs.entry(25, officer_id="forger"))
    for position in range(26, len(log)):
        log[position] = {**log[position], "seq": position}
    report = check(log)
    assert (report.problem, report.seq) == (Problem.INSERTED, 25)


@pytest.mark.parametrize(
    ("change", "seq"),
    [
        (lambda e: {**e, "leaf_hash": e["leaf_hash"].upper()}, 6),  # upper-case hex
        (lambda e: {**e, "leaf_hash": None}, 6),  # not sequenced
        (lambda e: {**e, "seq": True}, 6),  # a bool for a seq
        (lambda e: {k: v for k, v in e.items() if k != "purpose"}, 6),  # a field dropped
        (lambda e: {**e, "officer_name": "x"}, 6),  # a column added
        (lambda e: {**e, "occurred_at": "yesterday"}, 6),  # not a UTC time
        (lambda e: ["not", "a", "mapping"], 6),  # not an entry at all
    ],
)
def test_malformed_entry_is_named(log: list[Entry], change: Any, seq: int) -> None:
    """An entry that is not a well-formed audit entry is named as malformed."""
    log[6] = change(log[6])
    report = check(log)
    assert (report.problem, report.seq) == (Problem.MALFORMED, seq)


# --- Tampering only a saved checkpoint can show --------------------------------------------------


def test_edit_with_rewritten_leaf_hash_fails_against_the_checkpoint(
    log: list[Entry], logs: LogFactory, saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """An edit whose stored hash was recomputed passes entry checks but not the signed root."""
    log[17] = logs.seal({**log[17], "purpose": "curiosity"})
    assert check(log).ok  # without a checkpoint this cannot be seen
    report = check(log, log_verifier, saved_checkpoint)
    assert report.problem is Problem.ROOT_MISMATCH
    assert report.seq is None


def test_proofs_from_a_rewritten_log_fail_against_the_saved_checkpoint(
    log: list[Entry], logs: LogFactory, saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """After a rewrite, inclusion and consistency proofs served by the log fail the old root."""
    trusted = log_verifier.verify(saved_checkpoint)
    log[17] = logs.seal({**log[17], "purpose": "curiosity"})
    log.extend(logs.entry(seq) for seq in range(SIZE, SIZE + 5))
    tampered = MerkleTree(leaves(log))
    leaf = bytes.fromhex(log[17]["leaf_hash"])
    proof = tampered.inclusion_proof(17, SIZE)
    assert not verify_inclusion(leaf, 17, SIZE, proof, trusted.root_hash)
    consistency = tampered.consistency_proof(SIZE, len(log))
    assert not verify_consistency(SIZE, len(log), trusted.root_hash, tampered.root(), consistency)
    # the untouched entries' proofs are no better: the tree they come from is not the signed one
    leaf0 = bytes.fromhex(log[0]["leaf_hash"])
    assert not verify_inclusion(
        leaf0, 0, SIZE, tampered.inclusion_proof(0, SIZE), trusted.root_hash
    )


def test_truncated_tail_is_named_against_the_checkpoint(
    log: list[Entry], saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """Dropping the last five entries: truncated, first missing seq 35."""
    report = check(log[:35], log_verifier, saved_checkpoint)
    assert (report.problem, report.seq) == (Problem.TRUNCATED, 35)
    assert report.tree_size == 35


def test_old_backup_restored_is_named_against_the_checkpoint(
    logs: LogFactory, saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """A backup taken at 28 entries restored over the log: truncated from seq 28."""
    backup = logs.log(28)
    report = check(backup, log_verifier, saved_checkpoint)
    assert (report.problem, report.seq) == (Problem.TRUNCATED, 28)


def test_old_backup_restored_then_grown_past_the_checkpoint_is_detected(
    logs: LogFactory, saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """A restored backup that has since logged new, different entries no longer matches."""
    restored = logs.log(28) + [logs.entry(seq, request_id="after-restore") for seq in range(28, 45)]
    assert check(restored).ok
    report = check(restored, log_verifier, saved_checkpoint)
    assert report.problem is Problem.ROOT_MISMATCH


def test_entry_problems_are_reported_before_checkpoint_problems(
    log: list[Entry], saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """When entries are bad and the tail is cut, the first bad entry is what is named."""
    log[3] = {**log[3], "rule": "other"}
    report = check(log[:30], log_verifier, saved_checkpoint)
    assert (report.problem, report.seq) == (Problem.EDITED, 3)
    assert report.checkpoint is not None


# --- The checkpoint itself ------------------------------------------------------------------


def test_checkpoint_with_a_bad_signature_is_reported(
    log: list[Entry], saved_checkpoint: str, log_verifier: CheckpointVerifier
) -> None:
    """A saved checkpoint whose body was altered is reported invalid, not trusted."""
    forged = saved_checkpoint.replace(f"\n{SIZE}\n", f"\n{SIZE - 1}\n", 1)
    report = check(log, log_verifier, forged)
    assert report.problem is Problem.CHECKPOINT_INVALID
    assert report.detail == "audit_note_unverified"
    assert report.checkpoint is None


def test_checkpoint_signed_by_an_unknown_key_is_reported(
    log: list[Entry], new_signer: Any, log_verifier: CheckpointVerifier
) -> None:
    """A checkpoint signed by any key but the log's is reported invalid."""
    note = sign_checkpoint(
        Checkpoint(ORIGIN, SIZE, MerkleTree(leaves(log)).root()), new_signer(ORIGIN)
    )
    report = check(log, log_verifier, note)
    assert report.problem is Problem.CHECKPOINT_INVALID


def test_malformed_checkpoint_is_reported(
    log: list[Entry], log_verifier: CheckpointVerifier
) -> None:
    """Text that is not a signed note is reported invalid with the malformed code."""
    report = check(log, log_verifier, "not a checkpoint")
    assert report.problem is Problem.CHECKPOINT_INVALID
    assert report.detail == "audit_note_malformed"


def test_checkpoint_without_a_verifier_is_a_usage_error(
    log: list[Entry], saved_checkpoint: str
) -> None:
    """Passing a checkpoint but no trusted keys is a programming error, not a silent pass."""
    with pytest.raises(ValueError):
        verify_entries(log, checkpoint=saved_checkpoint)


# --- The checkpoint witness, checked in the same pass ------------------------------------------


def _signed_at(entries: list[Entry], size: int, signer: Ed25519NoteSigner) -> str:
    return sign_checkpoint(
        Checkpoint(ORIGIN, size, MerkleTree(leaves(entries[:size])).root()), signer
    )


def test_log_extending_its_witness_verifies_and_reports_it(
    logs: LogFactory, log_signer: Ed25519NoteSigner, log_verifier: CheckpointVerifier
) -> None:
    """The witness at 30, the database's checkpoint at 40, 45 entries: all three agree."""
    entries = logs.log(SIZE + 5)
    report = verify_entries(
        entries,
        checkpoint=_signed_at(entries, SIZE, log_signer),
        witness=_signed_at(entries, 30, log_signer),
        verifier=log_verifier,
    )
    assert report.ok, report
    assert report.checkpoint is not None and report.checkpoint.size == SIZE
    assert report.witness is not None and report.witness.size == 30


def test_log_rolled_back_with_its_checkpoints_is_caught_by_the_witness(
    log: list[Entry], log_signer: Ed25519NoteSigner, log_verifier: CheckpointVerifier
) -> None:
    """Entries cut to 25 and the checkpoint rows with them: the database's head at 25 agrees
    with itself; the witness at 40 names seq 25 as the first entry missing."""
    report = verify_entries(
        log[:25],
        checkpoint=_signed_at(log, 25, log_signer),
        witness=_signed_at(log, SIZE, log_signer),
        verifier=log_verifier,
    )
    assert (report.problem, report.seq) == (Problem.TRUNCATED, 25)
    assert report.detail == "checkpoint witness covers 40 entries, log holds 25"
    assert report.checkpoint is not None and report.checkpoint.size == 25
    assert report.head is not None and report.head == report.witness


def test_log_rewritten_below_its_witness_is_a_root_mismatch(
    logs: LogFactory, log_signer: Ed25519NoteSigner, log_verifier: CheckpointVerifier
) -> None:
    """A log rewritten from seq 10 and signed again from scratch (every hash and checkpoint
    consistent with itself) no longer gives the witnessed root at 30."""
    original = logs.log(SIZE)
    rewritten = original[:10] + [logs.entry(seq, request_id="rewritten") for seq in range(10, SIZE)]
    report = verify_entries(
        rewritten,
        checkpoint=_signed_at(rewritten, SIZE, log_signer),
        witness=_signed_at(original, 30, log_signer),
        verifier=log_verifier,
    )
    assert report.problem is Problem.ROOT_MISMATCH
    assert report.detail == "checkpoint witness: tree head at size 30 differs from the signed root"
    assert report.seq is None
    assert report.head is not None and report.head.size == 30  # the witness, not the checkpoint


def test_witness_not_signed_by_the_log_key_is_reported(
    log: list[Entry],
    new_signer: Any,
    log_signer: Ed25519NoteSigner,
    log_verifier: CheckpointVerifier,
) -> None:
    """A witness file holding another key's note is not trusted, and says which note it was."""
    report = verify_entries(
        log,
        checkpoint=_signed_at(log, SIZE, log_signer),
        witness=_signed_at(log, SIZE, new_signer(ORIGIN)),
        verifier=log_verifier,
    )
    assert report.problem is Problem.CHECKPOINT_INVALID
    assert report.detail.startswith("checkpoint witness: ")
    assert report.witness is None and report.checkpoint is not None


def test_checkpoint_problems_are_reported_before_the_witness_s(
    log: list[Entry], log_signer: Ed25519NoteSigner, log_verifier: CheckpointVerifier
) -> None:
    """Both behind the log's tail: the database's own checkpoint is what is named."""
    report = verify_entries(
        log[:20],
        checkpoint=_signed_at(log, 30, log_signer),
        witness=_signed_at(log, SIZE, log_signer),
        verifier=log_verifier,
    )
    assert (report.problem, report.detail) == (
        Problem.TRUNCATED,
        "checkpoint covers 30 entries, log holds 20",
    )
    assert report.head is not None and report.head == report.checkpoint


def test_witness_without_a_verifier_is_a_usage_error(
    log: list[Entry], log_signer: Ed25519NoteSigner
) -> None:
    with pytest.raises(ValueError):
        verify_entries(log, witness=_signed_at(log, SIZE, log_signer))


# --- The report ------------------------------------------------------------------------------


def test_report_is_frozen_and_validated(log: list[Entry]) -> None:
    """Reports cannot be changed after the fact, nor built inconsistent."""
    report = check(log)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.problem = Problem.EDITED  # type: ignore[misc]
    with pytest.raises(ValueError):
        VerificationReport(None, 3, "", 0, report.root_hash)
    assert [problem.value for problem in Problem] == [
        "malformed",
        "edited",
        "deleted",
        "reordered",
        "inserted",
        "truncated",
        "root_mismatch",
        "checkpoint_invalid",
        "beyond_checkpoint",
        "uncovered",
    ]


def test_stored_hash_is_the_canonical_leaf_hash(log: list[Entry]) -> None:
    """The stored leaf_hash the verifier checks is the hash of the entry's canonical form."""
    entry = {key: value for key, value in log[0].items() if key != "leaf_hash"}
    assert log[0]["leaf_hash"] == entry_leaf_hash(entry).hex()
