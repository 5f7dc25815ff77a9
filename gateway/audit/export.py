"""The verifiable export pack, and verifying a log from the database or from a pack, offline.

A pack is UTF-8 JSON lines. The first line is the header::

    {"format": "mappa-gateway/audit-export/v1", "origin": ..., "tree_size": n,
     "checkpoint": "<signed note>", "verifier_keys": ["<vkey>", ...], "exported_at": ...}

then the entries ``seq`` 0 to n - 1, one per line, each with every field of its schema and its
``leaf_hash``: exactly what the latest checkpoint covers, so the pack verifies on its own, and
`verify_export` holds it to that: an entry added, removed, duplicated or moved fails. The
verifier keys in a pack are the gateway's word about itself, and never used to verify it:
`verify_export` takes the trusted keys from its caller, the key published at
``/v1/audit/verifier-key`` (or the one the ICO was given) passed to ``audit verify
--verifier-key``, or the gateway's own where its keys are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Final

from gateway.audit.checkpoint import (
    CheckpointVerifier,
    VerifierKey,
    parse_checkpoint,
    parse_signed_note,
    parse_verifier_key,
)
from gateway.audit.errors import CheckpointError
from gateway.audit.locate import locate_rewrite
from gateway.audit.log import iter_log, latest_checkpoint_note, log_snapshot
from gateway.audit.verify import Problem, VerificationReport, verify_entries
from keys import ed25519_verify

__all__ = [
    "EXPORT_FORMAT",
    "ExportError",
    "ExportHeader",
    "export_chunks",
    "export_header",
    "first_line",
    "json_line_text",
    "pack_lines",
    "parse_header",
    "parse_line",
    "read_export",
    "tree_size_of",
    "verify_database",
    "verify_export",
    "write_export",
]

EXPORT_FORMAT: Final = "mappa-gateway/audit-export/v1"
_MAX_LINE: Final = 1 << 20
#: The largest tree size a checkpoint can carry (C2SP tlog-checkpoint: a uint64).
_MAX_TREE_SIZE: Final = 2**64 - 1


class ExportError(ValueError):
    """The file is not an export pack this gateway can read."""


@dataclass(frozen=True, slots=True)
class ExportHeader:
    origin: str
    tree_size: int
    checkpoint: str
    verifier_keys: tuple[VerifierKey, ...]
    exported_at: str

    def as_json(self) -> dict[str, object]:
        return {
            "format": EXPORT_FORMAT,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "checkpoint": self.checkpoint,
            "verifier_keys": [str(key) for key in self.verifier_keys],
            "exported_at": self.exported_at,
        }


def json_line_text(value: object) -> str:
    """``value`` as one line of a pack (no newline): compact UTF-8 JSON, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def export_header(
    url: str,
    *,
    verifier_keys: Sequence[VerifierKey],
    now: dt.datetime | None = None,
) -> ExportHeader:
    """The header of a pack of the database at ``url``: its latest checkpoint, fixed now, so the
    entries streamed after it are exactly those the checkpoint covers."""
    stored = latest_checkpoint_note(url)
    if stored is None:
        raise ExportError("the log has no checkpoint yet: run `mappa-gateway audit sequence`")
    _, note = stored
    checkpoint = parse_checkpoint(parse_signed_note(note).text)
    return ExportHeader(
        origin=checkpoint.origin,
        tree_size=checkpoint.size,
        checkpoint=note,
        verifier_keys=tuple(verifier_keys),
        exported_at=(now or dt.datetime.now(dt.UTC)).isoformat(),
    )


def export_chunks(
    url: str, header: ExportHeader, *, chunk_bytes: int = 65_536
) -> Generator[bytes, None, None]:
    """The pack as UTF-8 chunks of about ``chunk_bytes``: the header line, then the entries
    ``seq`` 0 to ``header.tree_size - 1`` streamed from the database. Memory stays constant
    whatever the size of the log (one chunk and the database driver's fetch window)."""
    buffer: list[str] = [json_line_text(header.as_json()) + "\n"]
    held = len(buffer[0])
    for entry in iter_log(url, up_to=header.tree_size):
        line = json_line_text(entry) + "\n"
        buffer.append(line)
        held += len(line)
        if held >= chunk_bytes:
            yield "".join(buffer).encode("utf-8")
            buffer, held = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


def write_export(
    url: str,
    out: IO[str],
    *,
    verifier_keys: Sequence[VerifierKey],
    now: dt.datetime | None = None,
) -> ExportHeader:
    """Write the pack of the database at ``url`` up to its latest checkpoint; return its header."""
    header = export_header(url, verifier_keys=verifier_keys, now=now)
    out.write(json_line_text(header.as_json()) + "\n")
    for entry in iter_log(url, up_to=header.tree_size):
        out.write(json_line_text(entry) + "\n")
    return header


def _refuse_constant(name: str) -> Any:
    raise ExportError(f"non-JSON number {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of a pack line: a key given twice is refused, never read as its last value
    (which another reader might not take, so the pack would say two things)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ExportError("an object repeats a key")
    return value


def parse_line(text: str, number: int) -> Any:
    """Line ``number`` of a pack, read as JSON strictly (no NaN, no repeated key, bounded):
    anything else, however hostile (an integer of too many digits, nesting too deep), is an
    `ExportError`, never another exception."""
    if len(text) > _MAX_LINE:
        raise ExportError(f"line {number} is too long")
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ExportError(f"line {number} is not JSON") from exc
    except ExportError as exc:
        raise ExportError(f"line {number}: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # too many digits; nested too deep
        raise ExportError(f"line {number} is not JSON this verifier reads") from exc


def pack_lines(handle: IO[bytes]) -> Iterator[tuple[int, str]]:
    """The lines of a pack opened in binary, numbered from 1, each strict UTF-8 and at most
    ``_MAX_LINE`` bytes: a longer one is refused once that much of it is read, never read whole
    (a file of gigabytes with no newline), and bytes that are not UTF-8 are an `ExportError`."""
    number = 0
    while raw := handle.readline(_MAX_LINE + 1):
        number += 1
        if len(raw) > _MAX_LINE:
            raise ExportError(f"line {number} is too long")
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExportError(f"line {number} is not UTF-8") from exc


def first_line(lines: Iterator[tuple[int, str]]) -> str:
    """The first line of a pack's `pack_lines` (empty for an empty file, which no header is)."""
    return next(lines, (1, ""))[1]


@contextlib.contextmanager
def read_export(path: Path) -> Iterator[tuple[ExportHeader, Iterator[dict[str, Any]]]]:
    """Open a pack: its header and a lazy stream of its entries, valid inside the block."""
    with path.open("rb") as handle:
        lines = pack_lines(handle)
        header = _header(first_line(lines))

        def entries() -> Iterator[dict[str, Any]]:
            for number, text in lines:
                value = parse_line(text, number)
                yield value if isinstance(value, dict) else {"malformed": True}

        yield header, entries()


def _header(first: str) -> ExportHeader:
    return parse_header(first, EXPORT_FORMAT)[0]


def parse_header(first: str, form: str) -> tuple[ExportHeader, dict[str, Any]]:
    """The header line of a pack of format ``form``: the fields every pack's header holds, and
    the whole object for those of its own (`ExportError` if it is no such header)."""
    try:
        raw = parse_line(first, 1)
        if not isinstance(raw, dict) or raw.get("format") != form:
            raise ExportError(f"not an export pack of format {form}")
        keys = tuple(parse_verifier_key(str(key)) for key in raw.get("verifier_keys", []))
        header = ExportHeader(
            origin=str(raw["origin"]),
            tree_size=tree_size_of(raw["tree_size"]),
            checkpoint=str(raw["checkpoint"]),
            verifier_keys=keys,
            exported_at=str(raw.get("exported_at", "")),
        )
    except ExportError:
        raise
    except (KeyError, TypeError, ValueError, CheckpointError) as exc:
        raise ExportError("the pack's header is malformed") from exc
    return header, raw


def tree_size_of(value: object) -> int:
    """A JSON integer from 0 to 2**64 - 1: never a float (``1e400`` reads as infinity), a
    boolean, or a string (``int`` reads other scripts' digits as well as ASCII ones)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TREE_SIZE:
        raise ExportError("the pack's header is malformed")
    return value


def verify_export(
    path: Path,
    *,
    verifier_keys: Sequence[VerifierKey],
    checkpoint: str | None = None,
) -> VerificationReport:
    """Verify a pack with ``verifier_keys``, trusted keys from outside the pack (never the
    pack's own, see the module's note: a pack signed by a key of the forger's own would verify
    with its own key), and also against ``checkpoint`` (a checkpoint saved earlier) when given.
    No key is `ExportError`.

    The pack's own checkpoint must verify, its size must be the header's ``tree_size``, and the
    entries must be exactly the ones it signs: as many (fewer is `Problem.TRUNCATED`, more
    `Problem.BEYOND_CHECKPOINT`), in order, with its root. A saved ``checkpoint`` must then be a
    prefix of the pack's tree (larger: `Problem.TRUNCATED`; another tree: `Problem.ROOT_MISMATCH`).
    """
    with read_export(path) as (header, entries):
        keys = tuple(verifier_keys)
        if not keys:
            raise ExportError("no trusted verifier key: give one with --verifier-key")
        verifier = CheckpointVerifier(keys, ed25519_verify, header.origin)
        report = verify_entries(
            entries, checkpoint=header.checkpoint, verifier=verifier, exact=True
        )
    signed = report.checkpoint
    if report.ok and signed is not None and signed.size != header.tree_size:
        detail = f"the header says {header.tree_size} entries, its checkpoint signs {signed.size}"
        return VerificationReport(
            Problem.MALFORMED, None, detail, report.tree_size, report.root_hash, signed
        )
    if not report.ok or checkpoint is None:
        return report
    with read_export(path) as (_, entries):
        return verify_entries(entries, checkpoint=checkpoint, verifier=verifier)


def verify_database(
    url: str,
    verifier: CheckpointVerifier,
    *,
    checkpoint: str | None = None,
    witness: str | None = None,
) -> VerificationReport:
    """Verify the database's sequenced log against ``checkpoint`` (default: its latest) and, in
    the same pass, the ``witness`` note kept outside the database, if given. A root mismatch
    (entries rewritten with their stored hashes) is located between the database's stored
    signed checkpoints (`gateway.audit.locate`).

    Every sequenced entry must be covered by the latest stored checkpoint, or it is
    `Problem.UNCOVERED` (checkpoint rows were removed). The checkpoint and the
    entries are read on one snapshot (`log_snapshot`), so a sequencer running meanwhile never
    shows entries beyond the checkpoint read."""
    with log_snapshot(url) as (stored, entries):
        note = stored[1] if stored is not None else None
        report = verify_entries(
            entries,
            checkpoint=checkpoint if checkpoint is not None else note,
            verifier=verifier,
            witness=witness,
            covered_to=_covered_to(note, verifier),
        )
    if report.problem is not Problem.ROOT_MISMATCH:
        return report
    # Entries rewritten with their stored hashes: the stored checkpoints say where.
    if report.head is None:
        return report
    rewrite = locate_rewrite(url, verifier, report.head)
    return replace(report, seq=rewrite.seq, detail=f"{report.detail}; {rewrite.describe()}")


def _covered_to(note: str | None, verifier: CheckpointVerifier) -> int | None:
    """The size the latest stored checkpoint signs: 0 with none stored, None when its note does
    not verify (reported as `Problem.CHECKPOINT_INVALID` when it is the checkpoint verified)."""
    if note is None:
        return 0
    try:
        return verifier.verify(note).size
    except CheckpointError:
        return None
