"""Moving a key directory to a new KEK (``keys rewrap``): every private key and the blind-index
secret, all or nothing.

1. Each sealed file is rewrapped in memory (only its wrapped data keys change: the private key's
   and the metadata seal's; a destroyed key's file has the metadata seal's alone) and proven to
   open under the new KEK; nothing is written if one fails (a file under an unknown KEK, a
   damaged file, metadata that no longer matches its seal or has none: ``keys seal-metadata``
   first).
2. The new files are written together (:func:`keys._keyfiles.replace_all`): all temp files
   synced before the first rename, a failed rename putting back those already renamed.
3. The directory is read back, as a new process would, under the new KEK alone: the same keys,
   and a blind-index secret giving the same indexes. If not, the original files are put back.

A file already under the new KEK is left alone, so a rewrap killed outright (no chance to put
anything back) is finished by running it again with the old KEK.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

from ._keyfiles import (
    KID_FILE,
    META_SEAL,
    UNSEALED_METADATA,
    FileChange,
    encode_record,
    key_aad,
    meta_aad,
    put_back,
    replace_all,
)
from .blind_index import (
    BLIND_INDEX_FILE,
    BlindIndex,
    encode_document,
    load_blind_index,
    rewrap_blind_index,
)
from .envelope import Envelope, blob_kek_id
from .errors import KeysError, KeyStoreError
from .kek import KekSource
from .ring import Purpose

__all__ = ["rewrap_directory"]

#: The keys (purpose, kid) a repository over the directory reads with an envelope.
ReadBack = Callable[[Envelope], set[tuple[Purpose, str]]]


def rewrap_directory(
    directory: Path, envelope: Envelope, new_kek: KekSource, read_back: ReadBack
) -> int:
    """Move every sealed file of ``directory`` from ``envelope`` to ``new_kek``; how many
    files changed. The caller holds the directory's lock."""
    target = Envelope(new_kek)
    changes, kids, blind = _plan(directory, envelope, new_kek, target)
    replace_all(changes)
    try:
        if read_back(target) != kids:
            raise KeyStoreError("rewrap: the keys read back are not the keys rewrapped")
        if blind is not None:
            probe = ("rewrap-check", "MAPPA")
            if load_blind_index(directory, target).index(*probe) != blind.index(*probe):
                raise KeyStoreError("rewrap: the blind-index secret read back differs")
    except BaseException:
        put_back(changes)
        raise
    return len(changes)


def _plan(
    directory: Path, envelope: Envelope, new_kek: KekSource, target: Envelope
) -> tuple[list[FileChange], set[tuple[Purpose, str]], BlindIndex | None]:
    """The files to change, rewrapped and checked in memory; the keys the directory holds; its
    blind index (None without one)."""
    changes: list[FileChange] = []
    kids: set[tuple[Purpose, str]] = set()
    try:
        for purpose in Purpose:
            folder = directory / purpose.value
            if not folder.is_dir():
                continue
            for name in sorted(os.listdir(folder)):
                if not KID_FILE.fullmatch(name):
                    continue
                path = folder / name
                raw = path.read_bytes()
                record = json.loads(raw)
                kid, alg = str(record["kid"]), str(record["alg"])
                kids.add((purpose, kid))
                if record.get(META_SEAL) is None:
                    raise KeyStoreError(f"rewrap: key file {name[:60]!r}: {UNSEALED_METADATA}")
                # A destroyed key's file has no sealed private key: its metadata seal alone moves.
                blobs = {"sealed": key_aad(purpose, kid, alg)} if "sealed" in record else {}
                blobs[META_SEAL] = meta_aad(record)
                opened = {f: base64.urlsafe_b64decode(str(record[f])) for f in blobs}
                if all(blob_kek_id(blob) == new_kek.kek_id for blob in opened.values()):
                    continue
                for field, aad in blobs.items():
                    moved = envelope.rewrap(opened[field], new_kek)
                    # Each opens under the new KEK before anything is written (the metadata as
                    # it is).
                    target.unseal(moved, aad)
                    record[field] = base64.urlsafe_b64encode(moved).decode("ascii")
                changes.append(FileChange(path, raw, encode_record(record)))
        blind = None
        blind_path = directory / BLIND_INDEX_FILE
        if os.path.lexists(blind_path):
            raw = blind_path.read_bytes()
            blind, document = rewrap_blind_index(raw, envelope, new_kek)
            if document is not None:
                changes.append(FileChange(blind_path, raw, encode_document(document)))
    except KeysError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"rewrap: cannot read a key file: {type(exc).__name__}") from exc
    return changes, kids, blind
