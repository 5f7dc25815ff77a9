"""Key files on disk: their format, the seal of their metadata, and atomic writes of one file or
of several at once.

A key file's metadata (every field but the sealed key: format, purpose, kid, alg, use, status,
created_at, retire_after; ``profile`` on a development key; ``destroyed_at`` and ``public`` on a
key whose private half was destroyed) is sealed too: ``meta_seal`` is an
envelope (:mod:`keys.envelope`) with an empty plaintext whose associated data is those fields as
they stand in the file (:func:`meta_aad`). Only a holder of the KEK can make one, so a status or
date edited in the file no longer matches its seal and the file is refused.

One file is written atomically: a temp file beside it (mode 0600, ``O_NOFOLLOW``), fsync,
rename over the original, fsync of the directory. Several (:func:`replace_all`, for a KEK
rewrap) are written all or none: every temp file is written and synced before the first rename,
and a rename that fails puts back the files already renamed (:func:`put_back`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, NamedTuple

from .envelope import Envelope
from .errors import KeyStoreError
from .ring import Purpose

__all__ = [
    "DESTROYED_AT",
    "FORMAT",
    "KID_FILE",
    "META_FIELDS",
    "META_SEAL",
    "PROFILE",
    "PUBLIC",
    "UNSEALED_METADATA",
    "FileChange",
    "encode_record",
    "key_aad",
    "meta_aad",
    "put_back",
    "replace_all",
    "seal_meta",
    "write_file",
]

FORMAT = "mappa-key/v1"
#: The name of a key file: the kid (an RFC 7638 thumbprint), then ``.json``.
KID_FILE = re.compile(r"^[A-Za-z0-9_-]{43}\.json$")


def key_aad(purpose: Purpose, kid: str, alg: str) -> bytes:
    """The associated data a private key is sealed with: it cannot move to another purpose,
    kid or algorithm."""
    return b"\x00".join((FORMAT.encode(), purpose.value.encode(), kid.encode(), alg.encode()))


#: The fields of a key file that its metadata seal covers: all but the sealed key itself.
META_FIELDS = ("format", "purpose", "kid", "alg", "use", "status", "created_at", "retire_after")
#: The field that marks a development key (``"development"``: made by ``keys init-dev`` or the
#: development profile). Sealed with the metadata when present; a file without it (every file
#: written before it existed) is a production key, and its seal is unchanged.
PROFILE = "profile"
#: The fields of a key whose private half was destroyed (``keys destroy``): when, and the public
#: half kept in its place (a JWK), which still names the key in ``keys list`` and checks what it
#: signed before it was retired. Sealed with the metadata when present; a file without them (every
#: key not destroyed) keeps the seal it had.
DESTROYED_AT = "destroyed_at"
PUBLIC = "public"

#: The field holding the metadata seal (base64url of an envelope with an empty plaintext).
META_SEAL = "meta_seal"
#: Why a key file without a metadata seal is refused (operators read this).
UNSEALED_METADATA = (
    "metadata (status, dates) not sealed: a key file written before metadata seals; check "
    "keys list, then run mappa-gateway keys seal-metadata"
)
_META_AAD_PREFIX = b"mappa-key-meta/v1\x00"


def meta_aad(record: Mapping[str, Any]) -> bytes:
    """The associated data of a key file's metadata seal: its metadata fields as they stand in
    the file (canonical JSON), so any edit of one of them breaks the seal."""
    fields = {name: record.get(name) for name in META_FIELDS}
    for optional in (PROFILE, DESTROYED_AT, PUBLIC):
        if optional in record:
            fields[optional] = record[optional]
    return _META_AAD_PREFIX + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def seal_meta(envelope: Envelope, record: Mapping[str, Any]) -> str:
    """A new metadata seal for ``record`` (the value of its ``meta_seal`` field)."""
    return base64.urlsafe_b64encode(envelope.seal(b"", meta_aad(record))).decode("ascii")


def encode_record(record: dict[str, Any]) -> bytes:
    """The bytes of a key file holding ``record``."""
    return json.dumps(record, indent=1, sort_keys=True).encode() + b"\n"


class FileChange(NamedTuple):
    """One file to replace: its path, and its bytes before and after."""

    path: Path
    old: bytes
    new: bytes


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    _install(_stage(path, data), path)


def replace_all(changes: Sequence[FileChange]) -> None:
    """Write every change, or none (see the module's doc)."""
    staged: list[Path] = []
    try:
        for change in changes:
            staged.append(_stage(change.path, change.new))
    except KeyStoreError:
        _discard(staged)
        raise
    done: list[FileChange] = []
    try:
        for change, tmp in zip(changes, staged, strict=True):
            os.replace(tmp, change.path)
            done.append(change)
        for folder in {change.path.parent for change in changes}:
            _fsync_dir(folder)
    except OSError as exc:
        _discard(staged[len(done) :])
        put_back(done)
        raise KeyStoreError(f"cannot replace a key file: {type(exc).__name__}") from exc


def put_back(changes: Sequence[FileChange]) -> None:
    """Write back the original bytes of ``changes`` (undo :func:`replace_all`)."""
    try:
        for change in changes:
            write_file(change.path, change.old)
    except KeyStoreError as exc:
        raise KeyStoreError(
            "rewrap interrupted and not undone: some files are under the new KEK; run "
            "keys rewrap again with the old KEK to finish it"
        ) from exc


def _stage(path: Path, data: bytes) -> Path:
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        _discard([tmp])
        raise KeyStoreError(f"cannot write key file: {type(exc).__name__}") from exc
    return tmp


def _install(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        _discard([tmp])
        raise KeyStoreError(f"cannot write key file: {type(exc).__name__}") from exc


def _discard(paths: Sequence[Path]) -> None:
    for tmp in paths:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
