"""Verify an audit log from its entries alone, optionally against a saved signed checkpoint.

The verifier reads the entries once, in log order, and keeps O(log n) state (a `Frontier`), so a
log of any length or an export file can be checked as a stream. For each entry it checks that
``seq`` counts up from 0 without gaps, that the entry has a canonical form, and that the stored
``leaf_hash`` is the hash of that form; then it recomputes the tree head. Given a checkpoint, it
verifies the signature first, then:

- checkpoint size above the number of entries: entries were truncated, or an older backup was
  restored; the first missing ``seq`` is named;
- otherwise the tree head over the first ``size`` entries must be the checkpoint's root. Holding
  every leaf, this equality is exactly consistency with the checkpoint: a consistency proof is what
  a party holding only the two roots needs instead.

The report names the first problem only, and the first bad ``seq`` when the entries show it. How a
problem is named is a diagnosis from the evidence (an entry whose stored hash matches it under
another ``seq`` has been moved, and where it came from tells a deletion from an insertion or a
reordering); that a problem is found never depends on the diagnosis. What no verifier can see
without a checkpoint: an entry rewritten together with its stored hash, and entries dropped or
forged at the tail. With one, the former shows as a root mismatch (one root cannot name the
entry; in a database, `gateway.audit.locate` bounds it between the stored signed checkpoints)
and the latter as truncation. Entries after the checkpoint's size are not covered by it until
the next checkpoint; a pack (``exact``) holds none, and neither does a database: its sequencer
numbers entries and signs the checkpoint covering them in one transaction, so a sequenced entry
beyond the latest stored checkpoint (``covered_to``), or with none stored, shows that checkpoint
rows were removed, perhaps to rewrite the entries they covered.

A database's own checkpoints can be rolled back with its entries by whoever can write both. The
checkpoint witness (`gateway.audit.witness`), kept outside the database, is checked in the same
pass when given: the entries must extend it too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeGuard

from gateway.audit.canonical import canonical_entry, entry_leaf_hash
from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier
from gateway.audit.errors import CheckpointError, MalformedEntryError
from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE, Frontier, leaf_hash

__all__ = [
    "HEX_HASH",
    "LEAF_HASH_KEY",
    "Problem",
    "VerificationReport",
    "stored_leaf_hash",
    "verify_entries",
    "without_leaf_hash",
]

LEAF_HASH_KEY: Final = "leaf_hash"
"""Key of the stored leaf hash (64 lowercase hex digits) in each entry given to the verifier."""

#: A hash as packs and the API write it: 64 lowercase hex digits.
HEX_HASH: Final = re.compile(r"[0-9a-f]{64}")
_MOVE_WINDOW: Final = 16  # how far away a moved entry's original seq is looked for


class Problem(StrEnum):
    """What is wrong with a log; the values are stable codes for reports and audit records."""

    MALFORMED = "malformed"
    """An entry is not a well-formed audit entry (bad seq, stored hash, fields or values)."""
    EDITED = "edited"
    """An entry's content no longer matches its stored leaf hash."""
    DELETED = "deleted"
    """An entry is missing: a gap in seq, or later entries renumbered to close one."""
    REORDERED = "reordered"
    """Entries are out of order: the missing seq shows up later in the log."""
    INSERTED = "inserted"
    """An entry was added in the middle: a repeated seq, or later entries renumbered to fit it."""
    TRUNCATED = "truncated"
    """The log holds fewer entries than a checkpoint signed earlier (tail cut, backup restored)."""
    ROOT_MISMATCH = "root_mismatch"
    """The entries do not produce the root signed in the checkpoint at its size."""
    CHECKPOINT_INVALID = "checkpoint_invalid"
    """The checkpoint is malformed, not signed by a trusted key, or for another log."""
    BEYOND_CHECKPOINT = "beyond_checkpoint"
    """A pack holds entries beyond the size its checkpoint signs (added after it was signed)."""
    UNCOVERED = "uncovered"
    """A database holds sequenced entries beyond its latest stored checkpoint, or without one:
    the sequencer signs each entry's place with its number, so checkpoint rows were removed."""


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """The outcome of verifying a log.

    ``problem`` and ``seq`` name the first problem and the first bad entry (``seq`` is ``None``
    when no single entry can be named, as for a root mismatch). ``tree_size`` and ``root_hash``
    describe the entries that passed the entry checks, in order: every entry when ``ok`` or when
    the problem lies with the checkpoint, else the prefix before the first bad entry.
    ``checkpoint`` is the checkpoint whose signature verified, if any, and ``witness`` the
    witnessed checkpoint (`gateway.audit.witness`) whose signature verified, if one was given.
    ``detail`` is for the auditor: codes and numbers, never entry content.
    """

    problem: Problem | None
    seq: int | None
    detail: str
    tree_size: int
    root_hash: bytes
    checkpoint: Checkpoint | None = None
    witness: Checkpoint | None = None
    #: The signed head (the checkpoint or the witness) that the entries fail to give, for a
    #: root mismatch or a truncation.
    head: Checkpoint | None = None

    def __post_init__(self) -> None:
        if self.problem is None and self.seq is not None:
            raise ValueError("a report without a problem names no entry")
        if self.tree_size < 0 or len(self.root_hash) != HASH_SIZE:
            raise ValueError("invalid tree size or root hash")

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return self.problem is None


@dataclass(frozen=True, slots=True)
class _Finding:
    problem: Problem
    seq: int | None
    detail: str
    head: Checkpoint | None = None


def verify_entries(
    entries: Iterable[Mapping[str, object]],
    *,
    checkpoint: str | bytes | None = None,
    verifier: CheckpointVerifier | None = None,
    exact: bool = False,
    witness: str | bytes | None = None,
    covered_to: int | None = None,
) -> VerificationReport:
    """Verify ``entries`` (in log order) and, when given, the signed ``checkpoint`` note.

    Each entry maps the schema's fields (`gateway.audit.canonical`) and `LEAF_HASH_KEY`. A
    ``checkpoint`` needs the ``verifier`` that holds the log's trusted keys. ``exact``: the
    entries must be exactly those the checkpoint covers, as in an export pack; any entry beyond
    its size is `Problem.BEYOND_CHECKPOINT` (a live log instead grows past its latest checkpoint
    until the next one). ``witness`` is a second signed note the log must also extend, in the
    same pass: the checkpoint kept outside the database (`gateway.audit.witness`), which catches
    a log rolled back together with its checkpoint rows; its problems are reported after the
    checkpoint's, their detail beginning "checkpoint witness". ``covered_to``, for a database: the
    size its latest stored checkpoint signs (0 when it stores none); entries at or beyond it are
    `Problem.UNCOVERED`, reported after the checkpoint's and the witness's problems.
    """
    if (checkpoint is not None or witness is not None) and verifier is None:
        raise ValueError("verifying against a checkpoint needs a checkpoint verifier")
    trusted, checkpoint_error = _signed(checkpoint, verifier)
    witnessed, witness_error = _signed(witness, verifier)
    heads = _Heads(trusted, witnessed, covered_to)

    frontier = Frontier()
    rest = iter(entries)
    for position, entry in enumerate(rest):
        if exact and trusted is not None and position >= trusted.size:
            extra = _counted(1 + sum(1 for _ in rest))
            detail = (
                f"{extra} after the {trusted.size} the checkpoint signs, covered by no signature"
            )
            finding = _Finding(Problem.BEYOND_CHECKPOINT, position, detail)
            return _report(finding, frontier, trusted, witnessed)
        leaf = _examine(entry, position, rest)
        if isinstance(leaf, _Finding):
            return _report(leaf, frontier, trusted, witnessed)
        frontier = frontier.append(leaf)
        heads.passed(frontier)

    if checkpoint_error is not None:
        finding = _Finding(Problem.CHECKPOINT_INVALID, None, checkpoint_error.code)
        return _report(finding, frontier, None, witnessed)
    held = _held_to(trusted, heads.checkpoint_root, frontier, "checkpoint")
    if held is not None:
        return _report(held, frontier, trusted, witnessed)
    if witness_error is not None:
        finding = _Finding(
            Problem.CHECKPOINT_INVALID, None, f"checkpoint witness: {witness_error.code}"
        )
        return _report(finding, frontier, trusted, None)
    held = _held_to(witnessed, heads.witness_root, frontier, "checkpoint witness")
    if held is not None:
        return _report(held, frontier, trusted, witnessed)
    if covered_to is not None and frontier.size > covered_to and heads.covered is not None:
        detail = (
            f"{_counted(frontier.size - covered_to)} from seq {covered_to} sequenced but not "
            "covered by any signed checkpoint: checkpoint rows removed?"
        )
        finding = _Finding(Problem.UNCOVERED, covered_to, detail)
        return _report(finding, heads.covered, trusted, witnessed)
    return VerificationReport(None, None, "", frontier.size, frontier.root(), trusted, witnessed)


def _counted(entries: int) -> str:
    return f"{entries} {'entry' if entries == 1 else 'entries'}"


def _signed(
    note: str | bytes | None, verifier: CheckpointVerifier | None
) -> tuple[Checkpoint | None, CheckpointError | None]:
    """The checkpoint of a signed note whose signature verifies, or why it does not."""
    if note is None or verifier is None:
        return None, None
    try:
        return verifier.verify(note), None
    except CheckpointError as exc:
        return None, exc


class _Heads:
    """The tree heads at the checkpoint's and the witness's sizes, and the frontier at the size
    the database's latest stored checkpoint covers, as the frontier passes them."""

    __slots__ = (
        "_checkpoint",
        "_covered_to",
        "_witness",
        "checkpoint_root",
        "covered",
        "witness_root",
    )

    def __init__(
        self, checkpoint: Checkpoint | None, witness: Checkpoint | None, covered_to: int | None
    ) -> None:
        self._checkpoint = checkpoint
        self._witness = witness
        self._covered_to = covered_to
        self.covered = Frontier() if covered_to == 0 else None
        self.checkpoint_root = (
            EMPTY_ROOT if checkpoint is not None and checkpoint.size == 0 else None
        )
        self.witness_root = EMPTY_ROOT if witness is not None and witness.size == 0 else None

    def passed(self, frontier: Frontier) -> None:
        if self._checkpoint is not None and frontier.size == self._checkpoint.size:
            self.checkpoint_root = frontier.root()
        if self._witness is not None and frontier.size == self._witness.size:
            self.witness_root = frontier.root()
        if frontier.size == self._covered_to:
            self.covered = frontier


def _held_to(
    signed: Checkpoint | None, root: bytes | None, frontier: Frontier, name: str
) -> _Finding | None:
    """What is wrong with the entries read against a signed head (``root``: theirs at its size)."""
    if signed is None:
        return None
    prefix = "" if name == "checkpoint" else f"{name}: "
    if signed.size > frontier.size:
        detail = f"{name} covers {signed.size} entries, log holds {frontier.size}"
        return _Finding(Problem.TRUNCATED, frontier.size, detail, signed)
    if root != signed.root_hash:
        detail = f"{prefix}tree head at size {signed.size} differs from the signed root"
        return _Finding(Problem.ROOT_MISMATCH, None, detail, signed)
    return None


def _report(
    finding: _Finding,
    frontier: Frontier,
    trusted: Checkpoint | None,
    witnessed: Checkpoint | None = None,
) -> VerificationReport:
    return VerificationReport(
        finding.problem,
        finding.seq,
        finding.detail,
        frontier.size,
        frontier.root(),
        trusted,
        witnessed,
        finding.head,
    )


def _examine(
    entry: object, position: int, rest: Iterator[Mapping[str, object]]
) -> bytes | _Finding:
    """Return the leaf hash of the entry expected at ``position``, or the first finding."""
    if not isinstance(entry, Mapping):
        return _Finding(Problem.MALFORMED, position, "entry is not a mapping")
    seq = entry.get("seq")
    if not _is_count(seq):
        return _Finding(Problem.MALFORMED, position, "entry has no valid seq")
    if seq < position:
        return _Finding(Problem.INSERTED, seq, f"seq {seq} appears again at position {position}")
    if seq > position:
        if _appears_later(position, rest):
            return _Finding(
                Problem.REORDERED, position, f"seq {seq} found where {position} was due"
            )
        return _Finding(Problem.DELETED, position, f"seq {position} to {seq - 1} missing")
    stored = stored_leaf_hash(entry)
    if stored is None:
        return _Finding(Problem.MALFORMED, seq, "stored leaf hash is not 64 lowercase hex digits")
    fields = without_leaf_hash(entry)
    try:
        leaf = leaf_hash(canonical_entry(fields))
    except MalformedEntryError as exc:
        return _Finding(Problem.MALFORMED, seq, exc.code)
    if leaf == stored:
        return leaf
    original = _original_seq(fields, stored, seq)
    if original is None:
        return _Finding(Problem.EDITED, seq, "entry content differs from its stored leaf hash")
    if original < seq:
        detail = f"entry {original} renumbered to {seq}: entries inserted before it"
        return _Finding(Problem.INSERTED, original, detail)
    if _appears_later(seq, rest):
        return _Finding(Problem.REORDERED, seq, f"entry {original} moved to {seq}")
    detail = f"entry {original} renumbered to {seq}: entries deleted before it"
    return _Finding(Problem.DELETED, seq, detail)


def _original_seq(fields: Mapping[str, object], stored: bytes, seq: int) -> int | None:
    """Return the nearby seq under which the entry matches its stored hash, if there is one."""
    for distance in range(1, _MOVE_WINDOW + 1):
        for candidate in (seq - distance, seq + distance):
            if candidate >= 0 and _matches(fields, candidate, stored):
                return candidate
    return None


def _appears_later(seq: int, rest: Iterator[Mapping[str, object]]) -> bool:
    """Read on through ``rest``: does any entry there carry ``seq``, or was it stored as ``seq``?"""
    for entry in rest:
        if not isinstance(entry, Mapping):
            continue
        later = entry.get("seq")
        if _is_count(later) and later == seq:
            return True
        stored = stored_leaf_hash(entry)
        if stored is not None and _matches(without_leaf_hash(entry), seq, stored):
            return True
    return False


def _matches(fields: Mapping[str, object], seq: int, stored: bytes) -> bool:
    try:
        return entry_leaf_hash({**fields, "seq": seq}) == stored
    except MalformedEntryError:
        return False


def without_leaf_hash(entry: Mapping[str, object]) -> dict[str, object]:
    """The entry's own fields: all but its stored `LEAF_HASH_KEY`."""
    return {key: value for key, value in entry.items() if key != LEAF_HASH_KEY}


def stored_leaf_hash(entry: Mapping[str, object]) -> bytes | None:
    """The entry's stored leaf hash, or None if it is not 64 lowercase hex digits."""
    value = entry.get(LEAF_HASH_KEY)
    if not isinstance(value, str) or HEX_HASH.fullmatch(value) is None:
        return None
    return bytes.fromhex(value)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
