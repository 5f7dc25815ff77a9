"""The gateway's one way to open its key repository (``keys/``) from the settings.

:func:`open_key_repository` opens the file repository under ``settings.keys_dir`` with the
configured key-encryption key (:func:`keys.kek_config.open_kek`, as the keys CLI opens it: an HSM
over PKCS#11, Vault transit, ``MAPPA_KEK`` inline or ``MAPPA_KEK_FILE``), also opening what a
previous KEK (``MAPPA_PREVIOUS_KEKS``, ``MAPPA_PREVIOUS_KEK_FILES``) wrapped during a KEK rotation.
In the ``development`` profile missing keys of every purpose (and a missing KEK file) are generated
and the directory is marked with :data:`gateway.settings.DEV_KEYS_MARKER`, so that any other
profile refuses to start on it; elsewhere the repository is opened as it is and a missing key is an
error for whoever asks for it. Every part of the gateway that needs keys (access-token signing,
audit checkpoint signing, the case-data envelope) opens them here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from pathlib import Path

from gateway.settings import DEV_KEYS_MARKER, Settings
from keys import (
    Envelope,
    FileKeyRepository,
    KekSource,
    KeyRepository,
    KeysError,
    generate_development_keys,
    generate_kek_file,
)
from keys.kek_config import open_envelope
from keys.kek_config import open_kek as open_configured_kek

__all__ = ["KeyRepositoryUnavailable", "open_envelope_for", "open_kek", "open_key_repository"]


class KeyRepositoryUnavailable(RuntimeError):
    """The key repository cannot be opened (or generated) under this configuration."""


def _kek(settings: Settings) -> KekSource:
    config = settings.kek_config
    if config.source == "file" and settings.profile == "development":
        path = Path(str(settings.kek_file))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            return generate_kek_file(path)
    return open_configured_kek(config)


def _envelope(settings: Settings) -> Envelope:
    return open_envelope(settings.kek_config, _kek(settings))


def open_kek(settings: Settings) -> KekSource:
    """The configured key-encryption key (case data at rest is sealed under it too)."""
    try:
        return _kek(settings)
    except KeysError as exc:
        raise KeyRepositoryUnavailable(f"KEK: {exc.code}: {exc.reason}") from exc


def open_envelope_for(settings: Settings) -> Envelope:
    """An envelope sealing under the configured KEK and opening under it or a previous KEK."""
    try:
        return _envelope(settings)
    except KeysError as exc:
        raise KeyRepositoryUnavailable(f"KEK: {exc.code}: {exc.reason}") from exc


#: One repository per configuration in a process, so that every part of the gateway (token
#: signing, payload sealing, audit checkpoints) shares one set of parsed keys and sees a rotation
#: at the same moment.
_OPEN: dict[tuple[str, str, str, float], KeyRepository] = {}
_OPEN_LOCK = threading.Lock()


def _config_key(settings: Settings) -> tuple[str, str, str, float]:
    # The KEK configuration as the variables that name it (the inline KEK among them): hashed.
    kek = json.dumps(settings.kek_config.to_env(), sort_keys=True)
    return (
        str(Path(settings.keys_dir).resolve()),
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
        envelope = _envelope(settings)
        if settings.profile == "development":
            Path(settings.keys_dir).mkdir(parents=True, exist_ok=True)
            generate_development_keys(settings.keys_dir, envelope, "development", now=now)
            (Path(settings.keys_dir) / DEV_KEYS_MARKER).touch()
        refresh = dt.timedelta(seconds=settings.key_refresh_seconds)
        return FileKeyRepository(
            settings.keys_dir, envelope, refresh_interval=refresh, profile=settings.profile
        )
    except KeysError as exc:
        raise KeyRepositoryUnavailable(f"key repository: {exc.code}: {exc.reason}") from exc
