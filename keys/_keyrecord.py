"""One key file read back: its record and metadata, its private key, its metadata seal.

A file is read without following a symlink, checked against its folder (the purpose) and its name
(the kid), then against its two seals: the metadata seal (:func:`check_meta`) and the sealed
private key (:func:`open_key`), whose public half must hash to the kid. A repository remembers
what it has checked, keyed by what the check proved (:func:`parsed_key`, :data:`SealedMeta`), so
an unchanged file is not unsealed again and a changed one always is.

:func:`plan_meta_seals` plans ``keys seal-metadata``: seals for the files written before metadata
seals, each file first proven to hold a private key that opens for its purpose, kid and alg; a
file saying its key was destroyed is never sealed here (only ``keys destroy`` seals one).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Set
from datetime import datetime
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from ._keyfiles import (
    DESTROYED_AT,
    FORMAT,
    KID_FILE,
    META_SEAL,
    PROFILE,
    PUBLIC,
    UNSEALED_METADATA,
    FileChange,
    encode_record,
    key_aad,
    meta_aad,
    seal_meta,
)
from .envelope import Envelope, blob_body
from .errors import EnvelopeRejected, KeyInvalid, KeysError, KeyStoreError, ProfileRefused
from .jwk import JoseKey
from .ring import ALG_USE, KeyInfo, KeyStatus, Purpose, RingKey, utcnow

__all__ = [
    "DEVELOPMENT",
    "ParsedKey",
    "SealedMeta",
    "check_meta",
    "destroy_change",
    "import_private",
    "kept_key",
    "open_key",
    "parse_record",
    "parsed_key",
    "plan_meta_seals",
    "read_file",
    "read_key",
    "ring_key",
    "sealed_meta",
]

#: The profile whose keys are development keys (see :class:`keys.FileKeyRepository`).
DEVELOPMENT = "development"

#: What a parsed private key is cached under: the purpose, kid and alg it was unsealed for (the
#: envelope's associated data) and the SHA-256 of the body of the sealed blob that was opened
#: (a rewrap to another KEK changes only the blob's header, so it keeps the cached key).
ParsedKey = tuple[Purpose, str, str, bytes]

#: A metadata seal already checked: the purpose, the SHA-256 of the metadata it sealed (its
#: associated data) and of the seal's body.
SealedMeta = tuple[Purpose, bytes, bytes]

_RECORD_ERRORS = (OSError, ValueError, KeyError, TypeError, JoseError)


def parsed_key(purpose: Purpose, kid: str, alg: str, sealed: bytes) -> ParsedKey:
    return (purpose, kid, alg, hashlib.sha256(blob_body(sealed)).digest())


def sealed_meta(purpose: Purpose, record: Mapping[str, Any]) -> SealedMeta:
    """What checking ``record``'s metadata seal proves (to remember it)."""
    blob = base64.urlsafe_b64decode(str(record[META_SEAL]))
    aad_digest = hashlib.sha256(meta_aad(record)).digest()
    return (purpose, aad_digest, hashlib.sha256(blob_body(blob)).digest())


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment


def read_file(path: Path) -> bytes:
    """A key file's bytes (never through a symlink). Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(65536)


def parse_record(purpose: Purpose, path: Path, raw: bytes) -> tuple[dict[str, Any], KeyInfo]:
    """A key file of ``purpose`` and its metadata, checked against its folder and name (not yet
    against its seals). Raises ValueError, KeyError or TypeError on a bad file."""
    record = json.loads(raw)
    if not isinstance(record, dict):
        raise TypeError("key file is not a JSON object")
    if record.get("format") != FORMAT or record.get("purpose") != purpose.value:
        raise ValueError("format or purpose mismatch")
    kid, alg = str(record["kid"]), str(record["alg"])
    if path.name != f"{kid}.json":
        raise ValueError("file name is not the kid")
    info = KeyInfo(
        purpose=purpose,
        kid=kid,
        alg=alg,
        use=ALG_USE[alg],
        status=KeyStatus(record["status"]),
        created_at=_parse_time(record["created_at"]) or utcnow(),
        retire_after=_parse_time(record.get("retire_after")),
        destroyed_at=_parse_time(record.get(DESTROYED_AT)),
    )
    if (info.destroyed_at is None) != ("sealed" in record) or (
        info.destroyed_at is not None and not isinstance(record.get(PUBLIC), dict)
    ):
        raise ValueError("a key file holds its sealed private key, or is destroyed and not both")
    return record, info


def ring_key(
    envelope: Envelope,
    info: KeyInfo,
    record: Mapping[str, Any],
    parsed: Mapping[ParsedKey, JoseKey] | None = None,
) -> tuple[RingKey, ParsedKey]:
    """The ring's key of a file whose metadata seal was checked, and what it is remembered
    under: its sealed private key, opened unless ``parsed`` holds it, or the public half a
    destroyed key keeps (no KEK call)."""
    if info.destroyed_at is not None:
        return RingKey.build_destroyed(info, record[PUBLIC]), kept_key(info, record)
    sealed = base64.urlsafe_b64decode(str(record["sealed"]))
    cache_key = parsed_key(info.purpose, info.kid, info.alg, sealed)
    cached = (parsed or {}).get(cache_key)
    jose_key = open_key(envelope, info, sealed) if cached is None else cached
    return RingKey.build(info, jose_key), cache_key


def read_key(
    envelope: Envelope,
    purpose: Purpose,
    path: Path,
    parsed: Mapping[ParsedKey, JoseKey],
    checked: Set[SealedMeta],
    profile: str | None,
) -> tuple[RingKey, ParsedKey, SealedMeta]:
    """A key file read and checked for ``profile`` (:class:`keys.FileKeyRepository`): its key,
    what it is remembered under, and its metadata seal as checked. ``parsed`` and ``checked``
    are what the caller remembers (nothing is opened or unsealed again)."""
    try:
        record, info = parse_record(purpose, path, read_file(path))
        meta_key = check_meta(envelope, purpose, record, path.name, checked)
        if record.get(PROFILE) == DEVELOPMENT and profile not in (None, DEVELOPMENT):
            raise ProfileRefused(
                f"key file {path.name[:60]!r} of {purpose} holds a development key, refused "
                f"in profile {profile[:40]!r}: make keys with keys init in a new directory"
            )
        key, cache_key = ring_key(envelope, info, record, parsed)
    except KeysError:
        raise
    except _RECORD_ERRORS as exc:
        raise KeyStoreError(f"key file {path.name[:60]!r}: {type(exc).__name__}") from exc
    return key, cache_key, meta_key


def kept_key(info: KeyInfo, record: Mapping[str, Any]) -> ParsedKey:
    """What a destroyed key's public half is remembered under (as :func:`parsed_key`)."""
    public = json.dumps(record[PUBLIC], sort_keys=True).encode()
    # its own key space: no sealed blob's digest can name a public half
    return (info.purpose, info.kid, f"{info.alg}#public", hashlib.sha256(public).digest())


def destroy_change(
    envelope: Envelope, directory: Path, key: RingKey, moment: datetime
) -> tuple[FileChange, KeyInfo]:
    """A retired key's file with its sealed private key taken out: ``status`` retired,
    ``destroyed_at`` ``moment``, the public half kept (``public``), all under a new metadata
    seal; and the key's new metadata. Nothing is written here."""
    info = key.info
    path = directory / info.purpose.value / f"{info.kid}.json"
    try:  # read again under the lock: it must still be the file the ring was read from
        raw = read_file(path)
        record, again = parse_record(info.purpose, path, raw)
    except _RECORD_ERRORS as exc:
        raise KeyStoreError(f"key file {path.name[:60]!r}: {type(exc).__name__}") from exc
    check_meta(envelope, info.purpose, record, path.name, set())
    if again != info:
        raise KeyStoreError(f"key file {path.name[:60]!r} changed since it was read: run again")
    del record["sealed"]
    record["status"] = KeyStatus.RETIRED.value
    record[DESTROYED_AT] = moment.isoformat()
    record[PUBLIC] = {k: v for k, v in key.public.jwk.items() if k not in ("kid", "use", "alg")}
    record[META_SEAL] = seal_meta(envelope, record)
    updated = dataclasses.replace(info, status=KeyStatus.RETIRED, destroyed_at=moment)
    return FileChange(path, raw, encode_record(record)), updated


def import_private(data: dict[str, Any]) -> JoseKey:
    key = import_key(data)
    if not isinstance(key, (ECKey, OKPKey, RSAKey)) or not key.is_private:
        raise KeyInvalid("sealed key is not an allowed private key")
    return key


def open_key(envelope: Envelope, info: KeyInfo, sealed: bytes) -> JoseKey:
    """Unseal a file's private key for its purpose, kid and alg (the associated data)."""
    aad = key_aad(info.purpose, info.kid, info.alg)
    return import_private(json.loads(envelope.unseal(sealed, aad)))


def check_meta(
    envelope: Envelope,
    purpose: Purpose,
    record: dict[str, Any],
    name: str,
    checked: Set[SealedMeta],
) -> SealedMeta:
    """Check a file's metadata against its seal, unless ``checked`` holds that very metadata and
    seal body already; what was checked. A missing or broken seal is a KeyStoreError."""
    if record.get(META_SEAL) is None:
        raise KeyStoreError(f"key file {name[:60]!r}: {UNSEALED_METADATA}")
    blob = base64.urlsafe_b64decode(str(record[META_SEAL]))
    aad = meta_aad(record)
    meta_key = sealed_meta(purpose, record)
    if meta_key in checked:
        return meta_key
    try:
        opened = envelope.unseal(blob, aad)
    except EnvelopeRejected as exc:
        raise KeyStoreError(
            f"key file {name[:60]!r}: metadata (status, dates) does not match its seal: changed "
            "outside the keys commands; restore the file from the key directory's backup"
        ) from exc
    if opened:
        raise KeyStoreError(f"key file {name[:60]!r}: metadata seal is not empty")
    return meta_key


def plan_meta_seals(
    directory: Path, envelope: Envelope, reseal: Set[str]
) -> tuple[list[FileChange], list[KeyInfo]]:
    """The files to give a metadata seal (those without one, and those whose kid is in
    ``reseal``), sealed in memory; and their keys. Nothing is written here."""
    changes: list[FileChange] = []
    infos: list[KeyInfo] = []
    for purpose in Purpose:
        folder = directory / purpose.value
        try:
            names = sorted(os.listdir(folder)) if folder.is_dir() else []
        except OSError as exc:
            raise KeyStoreError(f"cannot list {purpose} keys: {type(exc).__name__}") from exc
        for name in filter(KID_FILE.fullmatch, names):
            path = folder / name
            try:
                raw = read_file(path)
                record, info = parse_record(purpose, path, raw)
                if record.get(META_SEAL) is not None and info.kid not in reseal:
                    continue
                if info.destroyed_at is not None:
                    # Only keys destroy seals such a file: a public half proves nothing about
                    # the KEK, and one planted here would be trusted for what it signs.
                    raise KeyStoreError(
                        f"key file {name[:60]!r} says its key was destroyed: only keys destroy "
                        "seals that; restore the file from the key directory's backup"
                    )
                ring_key(envelope, info, record)  # opens, or refuses
            except KeysError:
                raise
            except _RECORD_ERRORS as exc:
                raise KeyStoreError(f"key file {name[:60]!r}: {type(exc).__name__}") from exc
            record[META_SEAL] = seal_meta(envelope, record)
            changes.append(FileChange(path, raw, encode_record(record)))
            infos.append(info)
    return changes, infos
