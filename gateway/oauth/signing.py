"""The gateway's access-token signing keys: the ``token-signing`` ring of ``keys/``.

:class:`TokenSigner` is the only thing the OAuth modules know about keys: it signs with the
ring's current ES256 key (:func:`keys.sign_jwt`), finds a verification key by ``kid`` among the
ring's usable keys (current and still-overlapping previous ones; an in-memory lookup, so a
``kid`` never reaches a file, a table or a shell), and lists the public JWKS. The ring comes
from a :class:`keys.KeyRepository`, re-read by the repository on its own schedule, so a
rotation done with the keys CLI is picked up without a restart.

:func:`load_token_signer` opens the key repository with
:func:`gateway.keyring.open_key_repository` (which generates development keys in the
``development`` profile only); elsewhere a missing key stops the start-up.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from joserfc.jwk import ECKey

from gateway.keyring import KeyRepositoryUnavailable, open_key_repository
from gateway.settings import Settings
from keys import KeyRepository, KeyRing, KeysError, Purpose, sign_jwt

if TYPE_CHECKING:
    from gateway.oauth.tokens import AccessToken

__all__ = [
    "SIGNING_ALG",
    "SigningKeyUnavailable",
    "TokenSigner",
    "VerifiedTokens",
    "load_token_signer",
]

SIGNING_ALG = "ES256"


class SigningKeyUnavailable(RuntimeError):
    """The token signing key cannot be loaded (or generated) under this configuration."""


class VerifiedTokens:
    """Tokens that passed verification: ``(token, issuer, audience)`` -> ``(kid, claims)``.

    Least recently used first out, at most ``size`` (each a few hundred bytes). One per
    :class:`TokenSigner`; used from the event loop's thread only."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str, str], tuple[str, AccessToken]] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> tuple[str, AccessToken] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, str, str], value: tuple[str, AccessToken]) -> None:
        self._entries[key] = value
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, key: tuple[str, str, str]) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class TokenSigner:
    """Signs access tokens with the ring's current key; verifies with any usable key by kid."""

    def __init__(
        self, ring: Callable[[], KeyRing], ring_knowing: Callable[[str], KeyRing] | None = None
    ) -> None:
        self._ring = ring
        self._ring_knowing = ring_knowing or (lambda _kid: ring())
        #: Tokens its keys verified (see :func:`gateway.oauth.tokens.verify_access_token`).
        self.verified = VerifiedTokens()

    @classmethod
    def from_repository(cls, repository: KeyRepository) -> TokenSigner:
        return cls(
            lambda: repository.ring(Purpose.TOKEN_SIGNING),
            lambda kid: repository.ring_knowing(Purpose.TOKEN_SIGNING, kid),
        )

    def sign(self, claims: Mapping[str, Any], *, typ: str, now: dt.datetime) -> str:
        return sign_jwt(claims, self._ring(), typ=typ, now=now)

    def verification_key(self, kid: str, *, now: dt.datetime) -> ECKey | None:
        """The public key named ``kid`` if it may verify tokens now, else None."""
        # A kid we do not know may be another replica's freshly rotated key: re-read once.
        found = self._ring_knowing(kid).usable_key(kid, now=now)
        if found is None:
            return None
        key = found.public
        if SIGNING_ALG not in key.algs or not isinstance(key.jose_key, ECKey):
            return None
        return key.jose_key

    def refusal_for(self, kid: str) -> str:
        """Why a token naming ``kid`` has no verification key: ``key_retired`` for a key of this
        gateway's ring that may no longer verify (retired, or rotated out of its overlap), else
        ``key_unknown``. Kids are published in the JWKS while usable, so neither says more."""
        return "key_retired" if self._ring().knows(kid) else "key_unknown"

    def public_jwks(self, *, now: dt.datetime) -> list[dict[str, Any]]:
        """The public halves of the usable keys, each with ``kid``, ``use`` and ``alg``."""
        return [dict(k) for k in self._ring().jwks(now=now)["keys"]]


def load_token_signer(settings: Settings, *, now: dt.datetime | None = None) -> TokenSigner:
    """The signer over ``settings.keys_dir``; development keys are generated when missing."""
    try:
        repository = open_key_repository(settings, now=now)
        signer = TokenSigner.from_repository(repository)
        repository.ring(Purpose.TOKEN_SIGNING).current(SIGNING_ALG, now=now)
    except KeyRepositoryUnavailable as exc:
        raise SigningKeyUnavailable(str(exc)) from exc
    except KeysError as exc:
        raise SigningKeyUnavailable(f"token signing key: {exc.code}: {exc.reason}") from exc
    return signer
