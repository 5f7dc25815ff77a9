"""Making keys: the first keys of a new installation (:func:`generate_keys`, ``keys init``) and
development keys (:func:`generate_development_keys`, ``keys init-dev`` and the development
profile), and telling a directory made for development (:func:`holds_development_keys`).

A development key's file says ``"profile": "development"`` under its metadata seal
(:mod:`keys._keyfiles`), so it stays a development key wherever the file is copied, and a
repository opened for another profile refuses its ring; the directory is also marked with
:data:`DEVELOPMENT_MARKER`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from ._keyfiles import KID_FILE, PROFILE
from ._keyrecord import read_file
from .blind_index import init_blind_index
from .envelope import Envelope
from .errors import KeyStoreError, ProfileRefused
from .kek import KekSource
from .repository import DEVELOPMENT as _DEVELOPMENT
from .repository import FileKeyRepository
from .ring import Purpose

__all__ = [
    "DEVELOPMENT_MARKER",
    "generate_development_keys",
    "generate_keys",
    "holds_development_keys",
]

#: A file written at the top of a key directory made for development (beside the ``profile``
#: field of each development key, which a copy of the purpose folders keeps).
DEVELOPMENT_MARKER = "DEVELOPMENT-KEYS"


def generate_development_keys(
    directory: str | os.PathLike[str],
    kek: KekSource | Envelope,
    profile: str,
    *,
    now: datetime | None = None,
) -> FileKeyRepository:
    """Create (if missing) a current key of every purpose, and the blind-index secret; seal the
    metadata of development keys made before metadata seals.

    Refused outside "development". The keys made are development keys (see
    :class:`FileKeyRepository`), refused by any other profile, and the directory is marked with
    :data:`DEVELOPMENT_MARKER`."""
    if profile != _DEVELOPMENT:
        raise ProfileRefused(f"development keys refused in profile {profile[:40]!r}")
    repository = FileKeyRepository(directory, kek, profile=_DEVELOPMENT)
    repository.seal_metadata()  # a development directory made before metadata seals
    for purpose in Purpose:
        repository.ensure(purpose, now=now)
    init_blind_index(directory, kek)
    try:
        (repository.directory / DEVELOPMENT_MARKER).touch()
    except OSError as exc:
        raise KeyStoreError(f"cannot mark the key directory: {type(exc).__name__}") from exc
    return repository


def generate_keys(
    directory: str | os.PathLike[str],
    kek: KekSource | Envelope,
    *,
    profile: str | None = None,
    now: datetime | None = None,
) -> FileKeyRepository:
    """The first keys of a new installation (``keys init``): a current key of every purpose,
    and the blind-index secret if there is none. Production keys, refused (nothing written) if
    the directory already holds a key file or was made for development: rotate those instead."""
    path = Path(directory)
    if (path / DEVELOPMENT_MARKER).exists():
        raise KeyStoreError(f"{path} was made for development: use a new key directory")
    for purpose in Purpose:
        folder = path / purpose.value
        try:
            names = os.listdir(folder) if folder.is_dir() else []
        except OSError as exc:
            raise KeyStoreError(f"cannot list {purpose} keys: {type(exc).__name__}") from exc
        if any(KID_FILE.fullmatch(name) for name in names):
            raise KeyStoreError(f"{path} already holds {purpose} keys: rotate them instead")
    repository = FileKeyRepository(path, kek, profile=profile)
    for purpose in Purpose:
        repository.ensure(purpose, now=now)
    init_blind_index(path, kek)
    return repository


def holds_development_keys(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` was made for development: its :data:`DEVELOPMENT_MARKER`, or a key
    file that says it holds a development key. A quick look (no KEK, no seal checked): a file
    whose mark was removed no longer matches its metadata seal and is refused when read."""
    path = Path(directory)
    if os.path.lexists(path / DEVELOPMENT_MARKER):
        return True
    for purpose in Purpose:
        folder = path / purpose.value
        try:
            names = os.listdir(folder) if folder.is_dir() else []
        except OSError:
            continue
        for name in filter(KID_FILE.fullmatch, names):
            try:
                record = json.loads(read_file(folder / name))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get(PROFILE) == _DEVELOPMENT:
                return True
    return False
