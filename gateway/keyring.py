"""The gateway's one way to open its key repository (``keys/``) from the settings.

:func:`open_key_repository` opens the file repository under ``settings.keys_dir`` with the
configured key-encryption key (``MAPPA_KEK`` inline, else ``MAPPA_KEK_FILE``). In the
``development`` profile missing keys of every purpose (and a missing KEK file) are generated and
the directory is marked with :data:`gateway.settings.DEV_KEYS_MARKER`, so that any other profile
refuses to start on it; elsewhere the repository is opened as it is and a missing key is an error
for whoever asks for it. Every part of the gateway that needs keys (access-token signing, audit
checkpoint signing, the case-data envelope) opens them here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from pathlib import Path

from gateway.settings import DEV_KEYS_MARKER, Settings
from keys import (
    FileKeyRepository,
    KekSource,
    KeyRepository,
    KeysError,
    generate_development_keys,
    generate_kek_file,
    kek_from_env,
    kek_from_file,
)

__all__ = ["KeyRepositoryUnavailable", "open_kek", "open_key_repository"]


class KeyRepositoryUnavailable(RuntimeError):
    """The key repository cannot be opened (or generated) under this configuration."""


def _kek(settings: Settings) -> KekSource:
    if settings.kek is not None:
        return kek_from_env("MAPPA_KEK", environ={"MAPPA_KEK": settings.kek.get_secret_value()})
    if settings.kek_file is None:
        raise KeyRepositoryUnavailable("no KEK configured (MAPPA_KEK or MAPPA_KEK_FILE)")
    path = Path(settings.kek_file)
    if not path.exists() and settings.profile == "development":
        path.parent.mkdir(parents=True, exist_ok=True)
        return generate_kek_file(path)
    return kek_from_file(path)


def open_kek(settings: Settings) -> KekSource:
    """The configured key-encryption key (case data at rest is sealed under it too)."""
    try:
        return _kek(settings)
    except KeysError as exc:
        raise KeyRepositoryUnavailable(f"KEK: {exc.code}: {exc.reason}") from exc


#: One repository per configuration in a process, so that every part of the gateway (token
#: signing, payload sealing, audit checkpoints) shares one set of parsed keys and sees a rotation
#: at the same moment.
_OPEN: dict[tuple[str, str, str, str, float], KeyRepository] = {}
_OPEN_LOCK = threading.Lock()


def _config_key(settings: Settings) -> tuple[str, str, str, str, float]:
    kek = settings.kek.get_secret_value() if settings.kek is not None else ""
    return (
        str(Path(settings.keys_dir).resolve()),
        str(settings.kek_file) if settings.kek_file is not None else "",
        hashlib.sha256(kek.encode()).hexdigest(),
        settings.profile,
        settings.key_refresh_seconds,
    )


def open_key_repository(settings: Settings, *, now: dt.datetime | None = None) -> KeyRepository:
    """The repository over ``settings.keys_dir``; development keys are generated when missing.

    Opened once per configuration and process; later calls return the same repository."""
    key = _config_key(settings)
    with _OPEN_LOCK:
        repository = _OPEN.get(key)
        if repository is None:
            repository = _open(settings, now=now)
            _OPEN[key] = repository
        return repository


def _open(settings: Settings, *, now: dt.datetime | None = None) -> KeyRepository:
    try:
        kek = _kek(settings)
        if settings.profile == "development":
            Path(settings.keys_dir).mkdir(parents=True, exist_ok=True)
            generate_development_keys(settings.keys_dir, kek, "development", now=now)
            (Path(settings.keys_dir) / DEV_KEYS_MARKER).touch()
        refresh = dt.timedelta(seconds=settings.key_refresh_seconds)
        return FileKeyRepository(
            settings.keys_dir, kek, refresh_interval=refresh, profile=settings.profile
        )
    except KeysError as exc:
        raise KeyRepositoryUnavailable(f"key repository: {exc.code}: {exc.reason}") from exc
