"""Public keys from JWKs, parsed once, each pinned to the algorithms it may be used with.

A :class:`PublicKey` is what the JOSE layer verifies with or encrypts to. It is built from a JWK
(an agency's registered key, a key of our own ring) after checks: no private members, only the
key types of our allow-list (EC P-256, OKP Ed25519, RSA of 2048 bits or more), ``use`` and
``alg`` consistent with the asked use. Parsing is cached on the canonical JSON of the JWK, so a
hot path may pass the same dict on every request without re-parsing or re-validating the point.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from .errors import KeyInvalid

__all__ = [
    "ENC_ALGS",
    "SIG_ALGS",
    "PublicKey",
    "Use",
    "public_key_from_jwk",
    "public_keys_from_jwks",
]

Use = Literal["sig", "enc"]
JoseKey = ECKey | OKPKey | RSAKey

#: JWS algorithms of the allow-list. "Ed25519" is RFC 9864's fully-specified name for EdDSA
#: over Ed25519; both name the same algorithm on the same keys.
SIG_ALGS: frozenset[str] = frozenset({"ES256", "EdDSA", "Ed25519"})
#: JWE key-management algorithms of the allow-list.
ENC_ALGS: frozenset[str] = frozenset({"ECDH-ES+A256KW", "RSA-OAEP-256"})

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048
_MAX_JWK_CHARS = 8192


@dataclass(frozen=True, slots=True, eq=False)
class PublicKey:
    """A parsed public key with its kid, its use and the algorithms pinned to it."""

    kid: str
    use: Use
    algs: frozenset[str]
    jwk: Mapping[str, Any] = field(repr=False)
    jose_key: JoseKey = field(repr=False)

    @property
    def alg(self) -> str:
        """The algorithm to announce when encrypting to (or publishing) this key."""
        return "EdDSA" if "EdDSA" in self.algs else min(self.algs)


def _algs_for(kind: str, use: Use, declared: str | None) -> frozenset[str]:
    natural: dict[tuple[str, Use], frozenset[str]] = {
        ("EC-P-256", "sig"): frozenset({"ES256"}),
        ("EC-P-256", "enc"): frozenset({"ECDH-ES+A256KW"}),
        ("OKP-Ed25519", "sig"): frozenset({"EdDSA", "Ed25519"}),
        ("RSA", "enc"): frozenset({"RSA-OAEP-256"}),
    }
    algs = natural.get((kind, use))
    if algs is None:
        raise KeyInvalid(f"jwk: a {kind} key is not allowed for use {use!r}")
    if declared is not None:
        if declared not in algs:
            raise KeyInvalid(f"jwk: alg {declared[:40]!r} is not allowed for a {kind} {use} key")
        if kind == "OKP-Ed25519":
            return algs
        return frozenset({declared})
    return algs


def _kind(data: Mapping[str, Any]) -> str:
    kty = data.get("kty")
    if kty == "EC" and data.get("crv") == "P-256":
        return "EC-P-256"
    if kty == "OKP" and data.get("crv") == "Ed25519":
        return "OKP-Ed25519"
    if kty == "RSA":
        return "RSA"
    raise KeyInvalid(f"jwk: key type {str(kty)[:20]!r}/{str(data.get('crv'))[:20]!r} not allowed")


@lru_cache(maxsize=2048)
def _parse(canonical: str, use: Use) -> PublicKey:
    data: dict[str, Any] = json.loads(canonical)
    leaked = _PRIVATE_MEMBERS.intersection(data)
    if leaked:
        raise KeyInvalid("jwk: holds private members; only public keys are accepted here")
    declared_use = data.get("use")
    if declared_use is not None and declared_use != use:
        raise KeyInvalid(f"jwk: use {str(declared_use)[:10]!r} where {use!r} is needed")
    declared_alg = data.get("alg")
    if declared_alg is not None and not isinstance(declared_alg, str):
        raise KeyInvalid("jwk: alg is not a string")
    kind = _kind(data)
    algs = _algs_for(kind, use, declared_alg)
    try:
        key = import_key(data)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise KeyInvalid(f"jwk: does not parse ({type(exc).__name__})") from exc
    if not isinstance(key, (ECKey, OKPKey, RSAKey)):
        raise KeyInvalid("jwk: unsupported key class")
    if isinstance(key, RSAKey) and key.public_key.key_size < _MIN_RSA_BITS:
        raise KeyInvalid(f"jwk: RSA key below {_MIN_RSA_BITS} bits")
    kid = data.get("kid")
    if kid is None:
        kid = key.thumbprint()
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise KeyInvalid("jwk: kid must be a non-empty string of at most 256 characters")
    public = key.as_dict(private=False)
    return PublicKey(kid=kid, use=use, algs=algs, jwk=public, jose_key=key)


def public_key_from_jwk(jwk: Mapping[str, Any], *, use: Use) -> PublicKey:
    """Parse and check one public JWK for ``use``; cached, so cheap to call per request."""
    try:
        canonical = json.dumps(dict(jwk), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise KeyInvalid("jwk: not JSON-serialisable") from exc
    if len(canonical) > _MAX_JWK_CHARS:
        raise KeyInvalid("jwk: too large")
    return _parse(canonical, use)


def public_keys_from_jwks(
    jwks: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    use: Use,
    strict: bool = False,
) -> dict[str, PublicKey]:
    """Parse a JWKS (``{"keys": [...]}`` or a list of JWKs) into ``{kid: PublicKey}``.

    Keys for the other ``use``, or outside the allow-list, are skipped, or refused when
    ``strict``. Two keys with the same kid are refused: a kid must name one key.
    """
    members: Iterable[Any]
    if isinstance(jwks, Mapping):
        members = jwks.get("keys", [])
        if not isinstance(members, list):
            raise KeyInvalid("jwks: 'keys' is not a list")
    else:
        members = jwks
    out: dict[str, PublicKey] = {}
    for member in members:
        if not isinstance(member, Mapping):
            raise KeyInvalid("jwks: member is not an object")
        try:
            key = public_key_from_jwk(member, use=use)
        except KeyInvalid:
            if strict:
                raise
            continue
        if key.kid in out:
            raise KeyInvalid(f"jwks: kid {key.kid[:64]!r} appears twice")
        out[key.kid] = key
    return out
