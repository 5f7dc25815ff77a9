"""Key rings: one per purpose, the current key plus previous ones, like ``MultiFernet``.

A :class:`KeyRing` is an immutable snapshot. It signs and encrypts-to with its current key (one
current key per algorithm: the payload-encryption ring holds an EC P-256 key for
``ECDH-ES+A256KW`` and an RSA-3072 key for ``RSA-OAEP-256``) and verifies or decrypts with any
listed key that is not retired. A previous key is retired once its ``retire_after`` has passed
(judged against an injected ``now``), or when marked so; a retired key is refused, and never
published. Rotation builds a new ring (see :mod:`keys.repository`), so a reader holding a ring
keeps a consistent view while another thread rotates.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from . import _hazmat
from .errors import KeyInvalid, KeyRetired, KeyUnknown
from .jwk import JoseKey, PublicKey, Use, public_key_from_jwk

__all__ = [
    "DEFAULT_OVERLAP",
    "MIN_OVERLAP",
    "PURPOSE_ALGS",
    "KeyInfo",
    "KeyRing",
    "KeyStatus",
    "Purpose",
    "RingKey",
    "Signature",
    "utcnow",
]


class Purpose(StrEnum):
    """What a ring's keys are for. Keys never serve two purposes."""

    TOKEN_SIGNING = "token-signing"  # noqa: S105 (a purpose name, not a secret)
    PAYLOAD_SIGNING = "payload-signing"
    PAYLOAD_ENCRYPTION = "payload-encryption"
    CHECKPOINT_SIGNING = "checkpoint-signing"


class KeyStatus(StrEnum):
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"


#: The algorithms each purpose holds a current key for, in order of preference.
PURPOSE_ALGS: Mapping[Purpose, tuple[str, ...]] = {
    Purpose.TOKEN_SIGNING: ("ES256",),
    Purpose.PAYLOAD_SIGNING: ("ES256",),
    Purpose.PAYLOAD_ENCRYPTION: ("ECDH-ES+A256KW", "RSA-OAEP-256"),
    Purpose.CHECKPOINT_SIGNING: ("Ed25519",),
}

#: How long a rotated-away key goes on verifying and decrypting, unless ``--overlap-hours`` says.
DEFAULT_OVERLAP = timedelta(hours=24)
#: The shortest overlap ``keys rotate`` gives a purpose's old key. A push is signed with the
#: payload-signing key once, when it is queued, and may be delivered (or pulled) up to
#: ``gateway.flow.signed_push.PUSH_MAX_AGE`` (7 days) later, a partner verifying it against the
#: gateway's published JWKS: an old key unpublished sooner makes every push still queued
#: undeliverable (bad_signature, retried, dead-lettered). ``keys`` does not import the gateway;
#: tests/keys/test_keys_cli.py checks that the two agree. A compromised key is retired at once
#: with ``keys retire``, whatever the overlap.
MIN_OVERLAP: Mapping[Purpose, timedelta] = {Purpose.PAYLOAD_SIGNING: timedelta(days=7)}

ALG_KIND: Mapping[str, _hazmat.KeyKind] = {
    "ES256": "EC-P256",
    "ECDH-ES+A256KW": "EC-P256",
    "RSA-OAEP-256": "RSA-3072",
    "Ed25519": "OKP-Ed25519",
    "EdDSA": "OKP-Ed25519",
}
ALG_USE: Mapping[str, Use] = {
    "ES256": "sig",
    "EdDSA": "sig",
    "Ed25519": "sig",
    "ECDH-ES+A256KW": "enc",
    "RSA-OAEP-256": "enc",
}


def utcnow() -> datetime:
    """The default clock: timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise KeyInvalid("datetimes in keys/ must be timezone-aware")
    return moment


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public metadata of one key: safe to list, log and audit."""

    purpose: Purpose
    kid: str
    alg: str
    use: Use
    status: KeyStatus
    created_at: datetime
    retire_after: datetime | None = None
    #: When its private half was destroyed (``keys destroy``); only a retired key's can be.
    destroyed_at: datetime | None = None

    def __post_init__(self) -> None:
        _aware(self.created_at)
        if self.retire_after is not None:
            _aware(self.retire_after)
        if self.destroyed_at is not None:
            _aware(self.destroyed_at)
            if self.status is not KeyStatus.RETIRED:
                raise KeyInvalid(f"key {self.kid[:64]!r}: destroyed but not retired")
        if ALG_USE.get(self.alg) != self.use or self.alg not in PURPOSE_ALGS[self.purpose]:
            raise KeyInvalid(f"key {self.kid[:64]!r}: alg {self.alg!r} unfit for {self.purpose}")

    def status_at(self, now: datetime) -> KeyStatus:
        """The effective status at ``now``: past ``retire_after`` a key is retired."""
        if self.status is KeyStatus.RETIRED:
            return KeyStatus.RETIRED
        if self.retire_after is not None and _aware(now) >= self.retire_after:
            return KeyStatus.RETIRED
        return self.status

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready form, with the effective status at ``now``."""
        return {
            "purpose": self.purpose.value,
            "kid": self.kid,
            "alg": self.alg,
            "use": self.use,
            "status": self.status_at(now or utcnow()).value,
            "created_at": self.created_at.isoformat(),
            "retire_after": self.retire_after.isoformat() if self.retire_after else None,
            "destroyed_at": self.destroyed_at.isoformat() if self.destroyed_at else None,
        }


@dataclass(frozen=True, slots=True)
class Signature:
    """A raw signature and the kid of the key that made it."""

    kid: str
    value: bytes


@dataclass(frozen=True, slots=True, eq=False)
class RingKey:
    """A private key in a ring with its metadata. Its key material never leaves ``keys/``."""

    info: KeyInfo
    jose_key: JoseKey = field(repr=False)
    public: PublicKey = field(repr=False)

    @classmethod
    def build(cls, info: KeyInfo, jose_key: JoseKey) -> RingKey:
        """Pair metadata with a private key, checking the key's public half matches the kid."""
        if not jose_key.is_private:
            raise KeyInvalid(f"key {info.kid[:64]!r}: not a private key")
        if jose_key.thumbprint() != info.kid:
            raise KeyInvalid(f"key {info.kid[:64]!r}: kid is not the key's RFC 7638 thumbprint")
        public_jwk = dict(jose_key.as_dict(private=False))
        public_jwk.update({"kid": info.kid, "use": info.use, "alg": info.alg})
        return cls(info, jose_key, public_key_from_jwk(public_jwk, use=info.use))

    @classmethod
    def build_destroyed(cls, info: KeyInfo, public_jwk: Mapping[str, Any]) -> RingKey:
        """A retired key whose private half was destroyed: its public half alone, checked
        against the kid. It is never current nor usable (it is retired), so nothing asks it to
        sign or decrypt; its ``jose_key`` is the public key."""
        if info.destroyed_at is None:
            raise KeyInvalid(f"key {info.kid[:64]!r}: a public half alone for a live key")
        jwk = {**public_jwk, "kid": info.kid, "use": info.use, "alg": info.alg}
        public = public_key_from_jwk(jwk, use=info.use)
        if public.jose_key.is_private or public.jose_key.thumbprint() != info.kid:
            raise KeyInvalid(f"key {info.kid[:64]!r}: kept public half is not the kid's")
        return cls(info, public.jose_key, public)

    @property
    def kid(self) -> str:
        return self.info.kid


class KeyRing:
    """The keys of one purpose at one moment: sign/encrypt with current, accept any unretired."""

    __slots__ = ("_by_kid", "purpose")

    def __init__(self, purpose: Purpose, keys: Iterable[RingKey]) -> None:
        self.purpose = purpose
        self._by_kid: dict[str, RingKey] = {}
        for key in keys:
            if key.info.purpose is not purpose:
                raise KeyInvalid(f"key {key.kid[:64]!r} belongs to {key.info.purpose}")
            if key.kid in self._by_kid:
                raise KeyInvalid(f"key {key.kid[:64]!r} listed twice")
            self._by_kid[key.kid] = key

    def __repr__(self) -> str:
        return f"KeyRing({self.purpose.value!r}, kids={list(self._by_kid)!r})"

    def __len__(self) -> int:
        return len(self._by_kid)

    def infos(self) -> list[KeyInfo]:
        """Metadata of every key in the ring, retired ones included."""
        return [key.info for key in self._by_kid.values()]

    def current(self, alg: str | None = None, *, now: datetime | None = None) -> RingKey:
        """The current key (for ``alg``, or the purpose's preferred algorithm)."""
        moment = now or utcnow()
        wanted = alg or PURPOSE_ALGS[self.purpose][0]
        newest: RingKey | None = None
        for key in self._by_kid.values():
            info = key.info
            if info.alg == wanted and info.status_at(moment) is KeyStatus.CURRENT:
                if newest is None or info.created_at > newest.info.created_at:
                    newest = key
        if newest is None:
            raise KeyUnknown(f"ring {self.purpose}: no current {wanted} key")
        return newest

    def get(self, kid: str, *, now: datetime | None = None) -> RingKey:
        """A key that may verify or decrypt now: current or previous, never retired."""
        key = self._by_kid.get(kid)
        if key is None:
            raise KeyUnknown(f"ring {self.purpose}: kid {kid[:64]!r} unknown")
        if key.info.status_at(now or utcnow()) is KeyStatus.RETIRED:
            raise KeyRetired(f"ring {self.purpose}: kid {kid[:64]!r} retired")
        return key

    def usable(self, *, now: datetime | None = None) -> list[RingKey]:
        """Every key that may verify or decrypt now, newest first."""
        moment = now or utcnow()
        keys = [
            k for k in self._by_kid.values() if k.info.status_at(moment) is not KeyStatus.RETIRED
        ]
        return sorted(keys, key=lambda k: k.info.created_at, reverse=True)

    def held(self, kid: str) -> RingKey | None:
        """The key named ``kid``, retired or not (for the keys commands, never to use)."""
        return self._by_kid.get(kid)

    def retired_keys(self, kids: Iterable[str] | None, *, now: datetime) -> list[RingKey]:
        """The keys named in ``kids`` (every retired key when None) whose private half is still
        held, each retired at ``now``: for ``keys destroy``. A kid unknown, or not retired
        (current, or previous within its overlap), raises."""
        if kids is None:
            chosen = [
                k for k in self._by_kid.values() if k.info.status_at(now) is KeyStatus.RETIRED
            ]
        else:
            chosen = []
            for kid in dict.fromkeys(kids):
                key = self._by_kid.get(kid)
                if key is None:
                    raise KeyUnknown(f"ring {self.purpose}: kid {kid[:64]!r} unknown")
                status = key.info.status_at(now)
                if status is not KeyStatus.RETIRED:
                    raise KeyInvalid(
                        f"ring {self.purpose}: kid {kid[:64]!r} is {status.value}, not retired: "
                        "retire it first (keys retire)"
                    )
                chosen.append(key)
        return [key for key in chosen if key.info.destroyed_at is None]

    def knows(self, kid: str) -> bool:
        """Whether the ring holds a key named ``kid`` (retired ones included)."""
        return kid in self._by_kid

    def usable_key(self, kid: str, *, now: datetime | None = None) -> RingKey | None:
        """The key named ``kid`` if it may verify or decrypt now (one lookup, per request)."""
        key = self._by_kid.get(kid)
        if key is None or key.info.status_at(now or utcnow()) is KeyStatus.RETIRED:
            return None
        return key

    def public_keys(self, *, now: datetime | None = None) -> dict[str, PublicKey]:
        """``{kid: PublicKey}`` of the usable keys, for :func:`keys.jose.verify_jwt`."""
        return {key.kid: key.public for key in self.usable(now=now)}

    def jwks(self, *, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """The public halves (with kid, use, alg) of the usable keys, previous ones included."""
        return {"keys": [dict(key.public.jwk) for key in self.usable(now=now)]}

    def sign_raw(self, message: bytes, *, now: datetime | None = None) -> Signature:
        """Raw Ed25519 signature by the current key (checkpoint-signing: C2SP signed notes)."""
        key = self.current(now=now)
        if key.info.alg != "Ed25519":
            raise KeyInvalid(f"ring {self.purpose}: raw signing needs an Ed25519 key")
        return Signature(key.kid, _hazmat.ed25519_sign(key.jose_key.private_key, message))

    def public_raw(self, kid: str, *, now: datetime | None = None, retired: bool = False) -> bytes:
        """The 32-byte raw Ed25519 public key of a usable key (for a signed-note verifier key).

        ``retired``: a retired key's too, to check what it signed before it was retired (a
        public key verifies history; only signing and trusting new signatures must stop)."""
        if retired and kid in self._by_kid:
            key = self._by_kid[kid]
        else:
            key = self.get(kid, now=now)
        if key.info.alg != "Ed25519":
            raise KeyInvalid(f"ring {self.purpose}: kid {kid[:64]!r} is not an Ed25519 key")
        # from the public half, which a destroyed key keeps (RFC 8037: x is the raw key)
        x = str(key.public.jwk["x"])
        return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
