"""The scoped export pack: the entries of some MAPPA areas, each with its inclusion proof.

The full pack (`gateway.audit.export`) holds every entry and verifies only whole, so it is a
national officer's alone. An officer who reviews some areas exports the scoped pack instead.
It is UTF-8 JSON lines. The first line is the header::

    {"format": "mappa-gateway/audit-export-scoped/v1", "origin": ..., "tree_size": n,
     "checkpoint": "<signed note>", "verifier_keys": [...], "areas": ["barnet"],
     "exported_at": ...}

Then come the entries of those areas (`gateway.audit.search.of_area`: made by one of their
agencies, or about one of their nominals) that the checkpoint covers, ``seq`` ascending, one per
line as ``{"entry": {...every field, leaf_hash}, "proof": ["<hex>", ...]}``. The proof is the
entry's RFC 9162 inclusion proof in the checkpoint's tree. The last line is
``{"end": {"entries": n}}``: a pack cut short (a download that stopped, an export that failed
part way, lines taken off the end) lacks it, and fails.

An officer who saved a checkpoint earlier (``mappa-gateway audit checkpoint``, or the console's
Integrity page) asks for the pack ``since`` that checkpoint's tree size. The header then also
holds ``"consistency": {"from_size": m, "proof": ["<hex>", ...]}``, the RFC 9162 consistency
proof from the tree of ``m`` entries to the pack's, made in the same read as the pack's
checkpoint. `verify_scoped_export` with the saved checkpoint (``audit verify --export PACK
--checkpoint SAVED``) checks, offline, that the pack's signed tree extends the saved one: a log
rewritten or forked since the officer saved it fails.

`verify_scoped_export` checks it with a trusted key from outside the pack (as for the full pack,
never the pack's own). The checkpoint must be signed by that key. Each entry must hash to its
leaf, and each leaf must sit at its ``seq`` in the signed tree. So no entry in the pack was
changed, added, moved or renumbered since the checkpoint was signed.

What it cannot prove is that the pack holds *every* entry of its areas. The gateway decides
which entries are an area's when it writes the pack, and an entry left out leaves no trace in
the others' proofs. Nor are the areas in its header signed: no entry names its area, so a pack
relabelled with another area still verifies. Only the full pack, which holds every entry,
proves nothing is missing. The verifier says so in its report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.agencies import AREA_CODE
from gateway.audit.canonical import entry_leaf_hash
from gateway.audit.checkpoint import (
    Checkpoint,
    CheckpointVerifier,
    VerifierKey,
    parse_checkpoint,
    parse_signed_note,
)
from gateway.audit.errors import CheckpointError, MalformedEntryError
from gateway.audit.export import (
    ExportError,
    ExportHeader,
    first_line,
    json_line_text,
    pack_lines,
    parse_header,
    parse_line,
)
from gateway.audit.log import entry_record, latest_checkpoint
from gateway.audit.merkle import EMPTY_ROOT, TiledTree, verify_consistency, verify_inclusion
from gateway.audit.search import of_area
from gateway.audit.subtrees import SubtreeCache
from gateway.audit.verify import (
    HEX_HASH,
    Problem,
    VerificationReport,
    stored_leaf_hash,
    without_leaf_hash,
)
from gateway.errors import AuditLogInconsistent, InvalidParameter
from gateway.store import Database
from gateway.store.models import AuditCheckpoint, AuditEntry
from keys import ed25519_verify

__all__ = [
    "NOT_PROVEN",
    "SCOPED_FORMAT",
    "Consistency",
    "ScopedHeader",
    "ScopedReport",
    "UnprovableError",
    "hold_to_saved",
    "is_scoped_pack",
    "scoped_chunks",
    "scoped_header",
    "verify_scoped_export",
]

_T = TypeVar("_T")
SCOPED_FORMAT: Final = "mappa-gateway/audit-export-scoped/v1"
#: What a scoped pack cannot prove, said with every report of one.
NOT_PROVEN: Final = (
    "a scoped pack proves each entry it holds is in the signed log, unchanged; not that it "
    "holds every entry of its areas, nor that the areas its header names are the ones it was "
    "made for (only the full pack proves the whole log)"
)
#: Entries read, and proved, a page at a time.
PAGE: Final = 256
_LINE_KEYS: Final = frozenset({"entry", "proof"})
#: More hashes than any inclusion proof in a tree of 2**64 leaves holds.
_MAX_PROOF: Final = 64
#: The most a consistency proof in such a tree holds: one more (the subtree it starts from).
_MAX_CONSISTENCY: Final = 65


class UnprovableError(ExportError):
    """A scoped pack, sound in itself, that cannot be held to the saved checkpoint given: it
    holds no consistency proof from that checkpoint's tree size."""


@dataclass(frozen=True, slots=True)
class Consistency:
    """The RFC 9162 consistency proof from the tree of ``from_size`` entries (a checkpoint the
    officer saved) to the pack's tree."""

    from_size: int
    proof: tuple[bytes, ...]

    def as_json(self) -> dict[str, object]:
        return {"from_size": self.from_size, "proof": [p.hex() for p in self.proof]}


@dataclass(frozen=True, slots=True)
class ScopedHeader(ExportHeader):
    """A full pack's header, of its own format, naming the areas too, and the consistency
    proof from a saved checkpoint's tree when the pack was asked for ``since`` one."""

    areas: tuple[str, ...] = ()
    consistency: Consistency | None = None

    def as_json(self) -> dict[str, object]:
        # ExportHeader.as_json: zero-argument super() fails in a slots dataclass (rebuilt class)
        body = {**ExportHeader.as_json(self), "format": SCOPED_FORMAT, "areas": list(self.areas)}
        if self.consistency is not None:
            body["consistency"] = self.consistency.as_json()
        return body


async def scoped_header(
    db: Database,
    *,
    areas: Sequence[str],
    verifier_keys: Sequence[VerifierKey],
    now: dt.datetime,
    since: int | None = None,
    cache: SubtreeCache | None = None,
) -> tuple[ScopedHeader, AuditCheckpoint]:
    """The header of a pack of ``areas`` and the checkpoint it is made against: the latest,
    fixed now, so that the pack's proofs are all in the one tree its header signs. With
    ``since`` (a saved checkpoint's tree size), the header holds the consistency proof from that
    tree to this one; a ``since`` beyond the latest checkpoint is `InvalidParameter`."""
    if not areas:
        raise ValueError("a scoped pack names at least one area")
    consistency = None
    async with db.read() as session:
        checkpoint = await latest_checkpoint(session)
        if checkpoint is not None and since is not None:
            consistency = await _consistency(session, cache or SubtreeCache(), checkpoint, since)
    if checkpoint is None:
        raise ExportError("the log has no checkpoint yet: run `mappa-gateway audit sequence`")
    signed = parse_checkpoint(parse_signed_note(checkpoint.note).text)
    header = ScopedHeader(
        origin=signed.origin,
        tree_size=signed.size,
        checkpoint=checkpoint.note,
        verifier_keys=tuple(verifier_keys),
        areas=tuple(sorted(set(areas))),
        exported_at=now.isoformat(),
        consistency=consistency,
    )
    return header, checkpoint


async def _consistency(
    session: AsyncSession, cache: SubtreeCache, checkpoint: AuditCheckpoint, since: int
) -> Consistency:
    """The consistency proof from the tree of ``since`` entries to the checkpoint's, in the
    read that found the checkpoint (`AuditLogInconsistent` if the store no longer gives its
    signed root, as for the entries' proofs)."""
    size = checkpoint.tree_size
    if not 0 <= since <= size:
        raise InvalidParameter(
            f"since: {since} is beyond the latest checkpoint's tree size {size}; a checkpoint "
            "you saved of a larger tree than the log's latest is worth reporting to the "
            "gateway's operator"
        )

    near = [seq for seq in (since - 1, since, size - 1) if 0 <= seq < size]
    proof = await _in_signed_tree(
        session, cache, checkpoint, lambda tree: tree.consistency_proof(since, size), near
    )
    return Consistency(since, proof)


async def scoped_chunks(
    db: Database,
    header: ScopedHeader,
    checkpoint: AuditCheckpoint,
    *,
    cache: SubtreeCache,
    chunk_bytes: int = 65_536,
) -> AsyncIterator[bytes]:
    """The pack as UTF-8 chunks of about ``chunk_bytes``: the header line, then each entry of
    the header's areas below its tree size with its proof. Entries are read and proved a page
    at a time, each page in a read of its own: memory stays bounded whatever the log's size."""
    buffer = [json_line_text(header.as_json()) + "\n"]
    held = len(buffer[0])
    after, count = -1, 0
    while True:
        async with db.read() as session:
            statement = (
                select(AuditEntry)
                .where(AuditEntry.seq > after, AuditEntry.seq < header.tree_size)
                .order_by(AuditEntry.seq)
                .limit(PAGE)
            )
            rows = (await session.scalars(of_area(statement, *header.areas))).all()
            seqs = [int(row.seq) for row in rows if row.seq is not None]
            proofs = await _proofs(session, cache, checkpoint, seqs) if seqs else []
        for row, proof in zip(rows, proofs, strict=True):
            line = json_line_text({"entry": entry_record(row), "proof": [p.hex() for p in proof]})
            buffer.append(line + "\n")
            held += len(line) + 1
            if held >= chunk_bytes:
                yield "".join(buffer).encode("utf-8")
                buffer, held = [], 0
        count += len(rows)
        if len(rows) < PAGE:
            break
        after = seqs[-1]
    buffer.append(json_line_text({"end": {"entries": count}}) + "\n")
    yield "".join(buffer).encode("utf-8")


async def _proofs(
    session: AsyncSession, cache: SubtreeCache, checkpoint: AuditCheckpoint, seqs: list[int]
) -> list[tuple[bytes, ...]]:
    """The inclusion proof of each of ``seqs`` in the checkpoint's tree, from one view of it.
    A store that no longer gives the checkpoint's signed root stops the export here
    (`AuditLogInconsistent`): its proofs would not verify, and rebuilding the tree for every page
    of a long export would read the whole log each time."""

    return await _in_signed_tree(
        session, cache, checkpoint, lambda tree: [tree.inclusion_proof(seq) for seq in seqs], seqs
    )


async def _in_signed_tree(
    session: AsyncSession,
    cache: SubtreeCache,
    checkpoint: AuditCheckpoint,
    answer: Callable[[TiledTree], _T],
    near: Sequence[int],
) -> _T:
    """``answer`` on the checkpoint's tree, from one view of it, refused
    (`AuditLogInconsistent`) if that view does not give the checkpoint's signed root."""

    def with_root(tree: TiledTree) -> tuple[bytes, _T]:
        return tree.root(), answer(tree)

    root, answered = await cache.prove(session, checkpoint, with_root, near=near)
    if root != bytes.fromhex(checkpoint.root_hash):
        raise AuditLogInconsistent(diagnostics={"reason": "root_mismatch"})
    return answered


def is_scoped_pack(path: Path) -> bool:
    """Whether the file's first line names the scoped pack's format (else: read it as a full
    pack, which refuses what it is not)."""
    with path.open("rb") as handle:
        try:
            first = parse_line(first_line(pack_lines(handle)), 1)
        except ExportError:
            return False
    return isinstance(first, dict) and first.get("format") == SCOPED_FORMAT


@dataclass(frozen=True, slots=True)
class ScopedReport:
    """What `verify_scoped_export` found: the first problem (None: every entry proved), the
    areas the header names, how many entries were proved, and the tree they were proved in."""

    report: VerificationReport
    areas: tuple[str, ...]
    entries: int

    @property
    def ok(self) -> bool:
        return self.report.ok


def verify_scoped_export(
    path: Path, *, verifier_keys: Sequence[VerifierKey], checkpoint: str | None = None
) -> ScopedReport:
    """Verify a scoped pack with ``verifier_keys``, trusted keys from outside it, and, when
    given, hold its tree to ``checkpoint``, one the officer saved earlier (`hold_to_saved`). No
    key is `ExportError`, as is a file that is no scoped pack; a pack that holds no consistency
    proof from the saved checkpoint's tree size is `UnprovableError`."""
    keys = tuple(verifier_keys)
    if not keys:
        raise ExportError("no trusted verifier key: give one with --verifier-key")
    with path.open("rb") as handle:
        lines = pack_lines(handle)
        header = _header(first_line(lines))
        verifier = CheckpointVerifier(keys, ed25519_verify, header.origin)
        try:
            signed = verifier.verify(header.checkpoint)
        except CheckpointError as exc:
            report = VerificationReport(Problem.CHECKPOINT_INVALID, None, exc.code, 0, EMPTY_ROOT)
            return ScopedReport(report, header.areas, 0)

        def failed(problem: Problem, seq: int | None, detail: str) -> ScopedReport:
            report = VerificationReport(problem, seq, detail, signed.size, signed.root_hash, signed)
            return ScopedReport(report, header.areas, proved)

        last, proved = -1, 0
        if signed.size != header.tree_size:
            detail = (
                f"the header says {header.tree_size} entries, its checkpoint signs {signed.size}"
            )
            return failed(Problem.MALFORMED, None, detail)
        for number, text in lines:
            line = parse_line(text, number)
            if isinstance(line, dict) and set(line) == {"end"}:
                if not _ends(line["end"], proved) or next(lines, None) is not None:
                    return failed(Problem.MALFORMED, None, "the last line does not end the pack")
                break
            found = _examine(line, last, signed.size, signed.root_hash)
            if isinstance(found, tuple):
                return failed(*found)
            last, proved = found, proved + 1
        else:
            return failed(
                Problem.TRUNCATED, None, f"the pack ends after {proved} entries, cut short"
            )
    if checkpoint is not None:
        held = hold_to_saved(header, signed, verifier, checkpoint)
        if held is not None:
            return failed(*held)
    report = VerificationReport(None, None, "", signed.size, signed.root_hash, signed)
    return ScopedReport(report, header.areas, proved)


def hold_to_saved(
    header: ScopedHeader, signed: Checkpoint, verifier: CheckpointVerifier, saved_note: str
) -> tuple[Problem, None, str] | None:
    """None if the pack's signed tree (``signed``, its checkpoint verified) extends the tree of
    ``saved_note``, a checkpoint the officer saved earlier, signed by a trusted key; else the
    problem and why. The same tree size needs the same root; a smaller saved tree, the header's
    consistency proof from exactly its size (none: `UnprovableError`, export the pack again
    ``since`` that size); a larger one is `Problem.TRUNCATED`, as for the full pack."""
    try:
        saved = verifier.verify(saved_note)
    except CheckpointError as exc:
        return Problem.CHECKPOINT_INVALID, None, f"your saved checkpoint: {exc.code}"
    if saved.size > signed.size:
        return (
            Problem.TRUNCATED,
            None,
            f"your saved checkpoint signs {saved.size} entries, the pack's tree only "
            f"{signed.size}: the log is behind what you saw",
        )
    forked = (
        Problem.ROOT_MISMATCH,
        None,
        f"the pack's tree of {signed.size} entries does not extend the tree of {saved.size} "
        "your saved checkpoint signs: the log was rewritten or forked since you saved it",
    )
    if saved.size == signed.size:
        return None if saved.root_hash == signed.root_hash else forked
    consistency = header.consistency
    if consistency is None or consistency.from_size != saved.size:
        held = (
            "no consistency proof"
            if consistency is None
            else (f"the consistency proof from tree size {consistency.from_size}")
        )
        raise UnprovableError(
            f"the pack holds {held}, not from your checkpoint's {saved.size}: export it again "
            f"since {saved.size} (`audit export --since CHECKPOINT`, or `since={saved.size}`)"
        )
    proved = verify_consistency(
        saved.size, signed.size, saved.root_hash, signed.root_hash, consistency.proof
    )
    return None if proved else forked


def _ends(end: object, proved: int) -> bool:
    """Whether ``end`` is the last line's ``{"entries": n}`` for the ``proved`` entries read."""
    if not isinstance(end, dict) or set(end) != {"entries"}:
        return False
    count = end["entries"]
    return isinstance(count, int) and not isinstance(count, bool) and count == proved


def _header(first: str) -> ScopedHeader:
    common, raw = parse_header(first, SCOPED_FORMAT)
    areas = raw.get("areas")
    if (
        not isinstance(areas, list)
        or not areas
        or not all(isinstance(a, str) and AREA_CODE.fullmatch(a) for a in areas)
        or areas != sorted(set(areas))
    ):  # area codes only, as written: never text that a terminal would act on when printed
        raise ExportError("the pack's header does not name its areas as area codes")
    return ScopedHeader(
        common.origin,
        common.tree_size,
        common.checkpoint,
        common.verifier_keys,
        common.exported_at,
        tuple(areas),
        _consistency_of(raw.get("consistency"), common.tree_size),
    )


def _consistency_of(raw: object, tree_size: int) -> Consistency | None:
    """The header's consistency proof, if it holds one: a tree size no larger than the pack's
    and at most 65 hashes of 64 lowercase hex digits (else `ExportError`)."""
    if raw is None:
        return None
    if isinstance(raw, dict) and set(raw) == {"from_size", "proof"}:
        size, proof = raw["from_size"], raw["proof"]
        if (
            isinstance(size, int)
            and not isinstance(size, bool)
            and 0 <= size <= tree_size
            and isinstance(proof, list)
            and len(proof) <= _MAX_CONSISTENCY
            and all(isinstance(p, str) and HEX_HASH.fullmatch(p) for p in proof)
        ):
            return Consistency(size, tuple(bytes.fromhex(p) for p in proof))
    raise ExportError("the pack's header holds a malformed consistency proof")


def _examine(line: Any, last: int, size: int, root: bytes) -> int | tuple[Problem, int | None, str]:
    """The ``seq`` of a line that proves its entry in the tree of ``size`` and ``root`` (after
    the entry of ``seq`` ``last``); else the problem, the entry's seq if known, and why."""
    if not isinstance(line, dict) or set(line) != _LINE_KEYS:
        return Problem.MALFORMED, None, "a line is not an entry with its proof"
    entry, proof = line["entry"], line["proof"]
    seq = entry.get("seq") if isinstance(entry, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return Problem.MALFORMED, None, "an entry has no valid seq"
    if seq >= size:
        return Problem.BEYOND_CHECKPOINT, seq, f"seq {seq} is beyond the {size} signed"
    if seq == last:
        return Problem.INSERTED, seq, f"seq {seq} appears twice"
    if seq < last:
        return Problem.REORDERED, seq, f"seq {seq} found after seq {last}"
    stored = stored_leaf_hash(entry)
    if stored is None:
        return Problem.MALFORMED, seq, "stored leaf hash is not 64 lowercase hex digits"
    if (
        not isinstance(proof, list)
        or len(proof) > _MAX_PROOF
        or not all(isinstance(p, str) and HEX_HASH.fullmatch(p) for p in proof)
    ):
        return Problem.MALFORMED, seq, "the proof is not a list of 64 lowercase hex digits each"
    try:
        leaf = entry_leaf_hash(without_leaf_hash(entry))
    except MalformedEntryError as exc:
        return Problem.MALFORMED, seq, exc.code
    if leaf != stored:
        return Problem.EDITED, seq, "entry content differs from its stored leaf hash"
    if not verify_inclusion(leaf, seq, size, [bytes.fromhex(p) for p in proof], root):
        return Problem.ROOT_MISMATCH, seq, f"seq {seq} is not proved in the signed tree"
    return seq
