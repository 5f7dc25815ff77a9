"""The checkpoint witness: the last checkpoint this gateway signed, in a file outside the database.

Everything the sequencer finds in the database can be rewritten by whoever can write the database:
entries, leaf hashes, frontier columns, and the checkpoint rows themselves. The signature on the
latest checkpoint row stops a *forged* head (the sequencer verifies it before extending the tree),
but not a *removed* one: delete every checkpoint row and blank ``seq``, or delete the newest rows
and roll the entries back to an older, genuinely signed head, and the database alone looks like a
log that was never sequenced further. The witness file is what remembers.

After every checkpoint it signs (and commits), the sequencer writes the signed note to the file,
atomically, never replacing a larger tree by a smaller one. Before it signs the next one, it reads
the file back and refuses to sequence unless the database's latest signed head extends the
witnessed one: same size and root, or larger with an RFC 9162 consistency proof (from the stored
leaf hashes) that leads from the witnessed root to the signed one. A missing file is created from
the first checkpoint the sequencer signs or finds (trust on first use).

The file is a plain signed note, the same as ``mappa-gateway audit checkpoint --out``, so it can
be given to ``audit verify --checkpoint``. It lives by default beside the gateway's keys
(``<keys_dir>/audit-checkpoints/<log>.note``, one file per origin and database), where the
database's administrators should have no write access; ``MAPPA_AUDIT_CHECKPOINT_FILE`` puts it
elsewhere. It protects only as far as that separation holds: whoever can also delete or rewrite
the file (root on the gateway host, or a new replica started without it) can still make the
gateway start again from a head of their choosing. Checkpoints copied off the host (the IG
officer's, a witness service's) are what catch that.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from gateway.audit.checkpoint import parse_checkpoint, parse_signed_note
from gateway.audit.errors import CheckpointError
from gateway.settings import Settings

__all__ = ["CheckpointWitness", "WitnessRead", "read_witness", "witness_path"]

#: Bigger than any note the sequencer writes (one signature line); a bigger file is not ours.
_MAX_FILE_BYTES: Final = 64 * 1024


def witness_path(settings: Settings) -> Path:
    """Where this gateway keeps its witness file: ``MAPPA_AUDIT_CHECKPOINT_FILE``, or a file
    under ``<keys_dir>/audit-checkpoints`` named for the log's origin and database (so that two
    logs, or two databases, sharing a key directory never share a witness)."""
    if settings.audit_checkpoint_file is not None:
        return settings.audit_checkpoint_file
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    identity = f"{settings.audit_log_origin}\n{database}".encode()
    digest = hashlib.sha256(identity).hexdigest()[:16]
    return settings.keys_dir / "audit-checkpoints" / f"{digest}.note"


@dataclass(frozen=True, slots=True)
class WitnessRead:
    """What a verifier found at the witness file: its ``note``, or none yet (``note`` and
    ``error`` both ``None``: no checkpoint signed, or the protection not set up here), or
    ``error``, why the file could not be read (the log then cannot be held to it)."""

    path: Path
    note: str | None
    error: str | None = None


def read_witness(settings: Settings) -> WitnessRead:
    """The witness file of this gateway's log, read for `audit verify` and the console."""
    witness = CheckpointWitness(witness_path(settings))
    try:
        return WitnessRead(witness.path, witness.read())
    except (OSError, ValueError) as exc:
        return WitnessRead(witness.path, None, str(exc) or type(exc).__name__)


class CheckpointWitness:
    """The witness file at ``path`` (see the module's description)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"CheckpointWitness({str(self.path)!r})"

    def read(self) -> str | None:
        """The witnessed note, or None when there is no file yet. Raises `OSError` when the file
        exists but cannot be read, and `ValueError` when it is too large or not UTF-8."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) > _MAX_FILE_BYTES:
            raise ValueError("witness file too large")
        return raw.decode("utf-8")

    def record(self, note: str) -> bool:
        """Write ``note`` to the file unless it holds a larger tree, or another tree of the same
        size; return whether it was written. Atomic (a temporary file renamed over it), and
        serialised between processes by a lock file beside it. Raises `OSError`."""
        new = parse_checkpoint(parse_signed_note(note).text)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            try:
                current_note = self.read()
            except (OSError, ValueError):
                current_note = None
            if current_note is not None:
                try:
                    current = parse_checkpoint(parse_signed_note(current_note).text)
                except CheckpointError:
                    current = None
                if current is not None and (
                    current.size > new.size
                    or (current.size == new.size and current.root_hash != new.root_hash)
                ):
                    return False
            self._replace(note)
        return True

    def check_writable(self) -> None:
        """Raise `OSError` unless this process can keep the file: make its folder, take its
        lock, and write and remove a temporary file beside it (as :meth:`record` will)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            fd, temporary = tempfile.mkstemp(prefix=".witness-", dir=self.path.parent)
            os.close(fd)
            os.unlink(temporary)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _replace(self, note: str) -> None:
        fd, temporary = tempfile.mkstemp(prefix=".witness-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(note)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o644)  # a checkpoint is public: IG officers copy it out
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
