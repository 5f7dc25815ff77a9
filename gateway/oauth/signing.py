"""The gateway's access-token signing keys: the ``token-signing`` ring of ``keys/``.

:class:`TokenSigner` is the only thing the OAuth modules know about keys: it signs with the
ring's current ES256 key (:func:`keys.sign_jwt`), finds a verification key by ``kid`` among the
ring's usable keys (current and still-overlapping previous ones; an in-memory lookup, so a
``kid`` never reaches a file, a table or a shell), and lists the public JWKS. The ring comes
from a :class:`keys.KeyRepository`, re-read by the repository on its own schedule, so a
rotation done with the keys CLI is picked up without a restart.

:func:`load_token_signer` opens the file repository under ``settings.keys_dir`` with the
configured KEK. In the ``development`` profile missing keys (and a missing KEK file) are
generated and the directory is marked with :data:`gateway.settings.DEV_KEYS_MARKER`, so that any
other profile refuses to start on it; elsewhere a missing key stops the start-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from gateway.settings import DEV_KEYS_MARKER, Settings
from keys import (
    FileKeyRepository,
    KekSource,
    KeyRepository,
    KeyRing,
    KeysError,
    Purpose,
    generate_development_keys,
    generate_kek_file,
    kek_from_env,
    kek_from_file,
    sign_jwt,
)

__all__ = ["SIGNING_ALG", "SigningKeyUnavailable", "TokenSigner", "load_token_signer"]

SIGNING_ALG = "ES256"


class SigningKeyUnavailable(RuntimeError):
    """The token signing key cannot be loaded (or generated) under this configuration."""


class TokenSigner:
    """Signs access tokens with the ring's current key; verifies with any usable key by kid."""

    def __init__(self, ring: Callable[[], KeyRing]) -> None:
        self._ring = ring

    @classmethod
    def from_repository(cls, repository: KeyRepository) -> TokenSigner:
        return cls(lambda: repository.ring(Purpose.TOKEN_SIGNING))

    def sign(self, claims: Mapping[str, Any], *, typ: str, now: dt.datetime) -> str:
        return sign_jwt(claims, self._ring(), typ=typ, now=now)

    def verification_key(self, kid: str, *, now: dt.datetime) -> ECKey | None:
        """The public key named ``kid`` if it may verify tokens now, else None."""
        key = self._ring().public_keys(now=now).get(kid)
        if key is None or SIGNING_ALG not in key.algs or not isinstance(key.jose_key, ECKey):
            return None
        return key.jose_key

    def public_jwks(self, *, now: dt.datetime) -> list[dict[str, Any]]:
        """The public halves of the usable keys, each with ``kid``, ``use`` and ``alg``."""
        return [dict(k) for k in self._ring().jwks(now=now)["keys"]]


def _kek(settings: Settings) -> KekSource:
    if settings.kek is not None:
        return kek_from_env("MAPPA_KEK", environ={"MAPPA_KEK": settings.kek.get_secret_value()})
    if settings.kek_file is None:
        raise SigningKeyUnavailable("no KEK configured (MAPPA_KEK or MAPPA_KEK_FILE)")
    path = Path(settings.kek_file)
    if not path.exists() and settings.profile == "development":
        path.parent.mkdir(parents=True, exist_ok=True)
        return generate_kek_file(path)
    return kek_from_file(path)


def load_token_signer(settings: Settings, *, now: dt.datetime | None = None) -> TokenSigner:
    """The signer over ``settings.keys_dir``; development keys are generated when missing."""
    try:
        kek = _kek(settings)
        if settings.profile == "development":
            Path(settings.keys_dir).mkdir(parents=True, exist_ok=True)
            repository = generate_development_keys(settings.keys_dir, kek, "development", now=now)
            (Path(settings.keys_dir) / DEV_KEYS_MARKER).touch()
        else:
            repository = FileKeyRepository(settings.keys_dir, kek)
        signer = TokenSigner.from_repository(repository)
        repository.ring(Purpose.TOKEN_SIGNING).current(SIGNING_ALG, now=now)
    except KeysError as exc:
        raise SigningKeyUnavailable(f"token signing key: {exc.code}: {exc.reason}") from exc
    return signer
