"""The JOSE layer: signed JWTs, and ``application/jose`` bodies (sign, then encrypt).

Allow-lists, pinned here and nowhere else:

* JWS: ``ES256``, ``EdDSA`` (and ``Ed25519``, RFC 9864's name for the same algorithm);
* JWE key management: ``ECDH-ES+A256KW`` (P-256 only), ``RSA-OAEP-256``;
* JWE content encryption: ``A256GCM``.

Each key is pinned to its algorithms (:class:`keys.jwk.PublicKey`); a token's ``alg`` must be
both in the caller's list and pinned to the key that its ``kid`` names. Before any key is
touched, :mod:`keys._compact` caps the sizes and refuses hostile headers. Every failure, from
a malformed token to a bad signature, raises one class, :class:`keys.errors.JoseRejected`,
whose ``reason`` (for the audit, never for the caller) says precisely what failed.

Case data bodies are nested: a compact JWS signed by the sender, encrypted as a compact JWE to
the recipient with ``cty: "JWT"``. :func:`unseal_from` returns the inner JWS as evidence of
origin beside the payload.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jws import JWSRegistry

from . import _compact
from ._compact import Limits
from .errors import JoseRejected, KeysError, jose_rejected_from
from .jwk import ENC_ALGS, SIG_ALGS, PublicKey, Use, public_key_from_jwk, public_keys_from_jwks
from .ring import KeyRing, RingKey, utcnow

__all__ = [
    "CONTENT_ENCRYPTION",
    "DEFAULT_LIMITS",
    "ENC_ALGS",
    "SIG_ALGS",
    "KeyResolver",
    "Limits",
    "Unsealed",
    "VerificationKeys",
    "VerifiedJwt",
    "seal_for",
    "sign_jwt",
    "unseal_from",
    "verify_jws",
    "verify_jwt",
]

#: JWE "enc" allow-list.
CONTENT_ENCRYPTION: frozenset[str] = frozenset({"A256GCM"})
#: The size caps the gateway seals and opens with; the partner SDK (``adapters/``) opens what
#: the gateway seals with the same ones.
DEFAULT_LIMITS = Limits()
_MAX_TRIED_KEYS = 8

#: Looks a kid up; returns None when unknown. May raise a KeysError (e.g. KeyRetired).
KeyResolver = Callable[[str], PublicKey | None]
#: What verification accepts: {kid: PublicKey}, a resolver, or a JWKS (dict or list of JWKs).
VerificationKeys = Mapping[str, PublicKey] | KeyResolver | Mapping[str, Any] | Sequence[Any]


class _Registry(JWSRegistry):
    """joserfc's registry restricted to our allow-list (no deprecation warning for EdDSA)."""

    def get_alg(self, name: str) -> Any:
        if name not in SIG_ALGS or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


def _jws_registry(limits: Limits) -> _Registry:
    registry = _Registry(algorithms=sorted(SIG_ALGS))
    registry.max_header_length = limits.max_header_bytes
    registry.max_payload_length = limits.max_token_bytes
    registry.max_signature_length = 1024
    return registry


def _jwe_registry(alg: str, limits: Limits) -> jwe.JWERegistry:
    registry = jwe.JWERegistry(algorithms=[alg, *CONTENT_ENCRYPTION])
    registry.max_protected_header_length = limits.max_header_bytes
    registry.max_ciphertext_length = limits.max_token_bytes
    registry.max_encrypted_key_length = 1024
    return registry


_REGISTRIES: dict[tuple[str, Limits], Any] = {}


def _cached_registry(kind: str, limits: Limits) -> Any:
    key = (kind, limits)
    registry = _REGISTRIES.get(key)
    if registry is None:
        registry = _jws_registry(limits) if kind == "jws" else _jwe_registry(kind, limits)
        _REGISTRIES[key] = registry
    return registry


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    """A JWT whose signature, algorithm, type and time claims were checked."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    kid: str


@dataclass(frozen=True, slots=True)
class Unsealed:
    """An opened ``application/jose`` body."""

    payload: bytes = field(repr=False)
    #: The sender's compact JWS, kept as evidence of origin.
    jws: str = field(repr=False)
    sender_kid: str
    recipient_kid: str

    def json(self) -> Any:
        """The payload parsed as JSON (duplicate members and NaN refused)."""
        return _compact.parse_json_object(self.payload, "payload")


# -- signing -------------------------------------------------------------------------------


def _sign(payload: bytes, key: RingKey, typ: str | None, limits: Limits) -> str:
    if key.info.use != "sig":
        raise JoseRejected(f"sign: key {key.kid[:64]!r} is not a signing key")
    header: dict[str, Any] = {"alg": key.info.alg, "kid": key.kid}
    if typ is not None:
        header["typ"] = typ
    try:
        return jws.serialize_compact(
            header, payload, key.jose_key, registry=_cached_registry("jws", limits)
        )
    except Exception as exc:
        raise jose_rejected_from(exc, "sign") from exc


def sign_jwt(
    claims: Mapping[str, Any],
    ring: KeyRing,
    *,
    typ: str = "JWT",
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Sign ``claims`` with the ring's current key; ``typ`` names the token kind (e.g. at+jwt)."""
    body = json.dumps(dict(claims), separators=(",", ":"), allow_nan=False).encode()
    return _sign(body, ring.current(now=now), typ, limits)


# -- verification --------------------------------------------------------------------------


def _resolver(keys: VerificationKeys, use: Use) -> tuple[KeyResolver, list[PublicKey]]:
    """Normalise the accepted key inputs to a lookup plus the list to try when kid is absent."""
    if callable(keys):
        return keys, []
    if isinstance(keys, Mapping) and "keys" in keys:
        parsed = public_keys_from_jwks(keys, use=use)
    elif isinstance(keys, Mapping):
        parsed = {}
        for kid, value in keys.items():
            parsed[kid] = (
                value if isinstance(value, PublicKey) else public_key_from_jwk(value, use=use)
            )
    else:
        parsed = public_keys_from_jwks(keys, use=use)
    return parsed.get, list(parsed.values())


def _candidates(kid: Any, alg: str, keys: VerificationKeys, use: Use, what: str) -> list[PublicKey]:
    lookup, everything = _resolver(keys, use)
    if kid is not None:
        try:
            found = lookup(kid)
        except KeysError as exc:
            raise JoseRejected(f"{what}: {exc.code}: {exc.reason}") from exc
        if found is None:
            raise JoseRejected(f"{what}: kid {str(kid)[:64]!r} unknown")
        if alg not in found.algs:
            raise JoseRejected(f"{what}: alg {alg!r} is not pinned to kid {str(kid)[:64]!r}")
        return [found]
    pinned = [key for key in everything if alg in key.algs][:_MAX_TRIED_KEYS]
    if not pinned:
        raise JoseRejected(f"{what}: no kid, and no key pinned to {alg!r}")
    return pinned


def verify_jws(
    token: str | bytes,
    keys: VerificationKeys,
    *,
    algs: Collection[str] = ("ES256",),
    typ: str | None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[dict[str, Any], bytes, str]:
    """Verify a compact JWS; returns (protected header, payload, kid of the verifying key).

    ``typ`` None means the header's typ is not checked; otherwise it must match.
    """
    allowed = [a for a in algs if a in SIG_ALGS]
    segments = _compact.split_compact(token, 3, limits.max_token_bytes)
    header = _compact.parse_header(segments[0], limits, "jws")
    alg = _compact.check_jws_header(header, allowed)
    if typ is not None:
        got = header.get("typ")
        if not isinstance(got, str) or _compact.normalise_typ(got) != _compact.normalise_typ(typ):
            raise JoseRejected(f"jws: typ {str(got)[:40]!r} where {typ!r} is required")
    payload = _compact.b64url_decode(segments[1], "jws payload")
    if len(payload) > limits.max_payload_bytes:
        raise JoseRejected(f"jws: payload over {limits.max_payload_bytes} bytes")
    _compact.b64url_decode(segments[2], "jws signature")
    compact = b".".join(segments)
    registry = _cached_registry("jws", limits)
    for key in _candidates(header.get("kid"), alg, keys, "sig", "jws"):
        try:
            jws.deserialize_compact(compact, key.jose_key, registry=registry)
        except Exception as exc:
            failure = exc
            continue
        return header, payload, key.kid
    raise jose_rejected_from(failure, "jws verify") from failure


#: The largest NumericDate magnitude taken: 9999-12-31T23:59:59Z, the last second a datetime
#: holds. JSON integers have no bound, and a longer one overflows ``math.isfinite`` and
#: ``float``; ``1e400`` parses as infinity.
_MAX_NUMERIC_DATE = 253402300799


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or not -_MAX_NUMERIC_DATE <= value <= _MAX_NUMERIC_DATE
    ):
        raise JoseRejected(f"jwt: {name} is not a NumericDate")
    return float(value)


def verify_jwt(
    token: str | bytes,
    keys: VerificationKeys,
    *,
    algs: Collection[str] = ("ES256",),
    typ: str | None,
    now: datetime | None = None,
    leeway: timedelta = timedelta(seconds=60),
    require: Collection[str] = ("exp",),
    limits: Limits = DEFAULT_LIMITS,
) -> VerifiedJwt:
    """Verify a JWT's signature, alg, typ and time claims against ``keys`` at ``now``.

    ``exp`` must be in the future (no leeway); ``nbf`` and ``iat`` may be at most ``leeway``
    ahead of ``now``. Claims named in ``require`` must be present. Audience, issuer and the
    rest are for the caller to check on :attr:`VerifiedJwt.claims`.
    """
    header, payload, kid = verify_jws(token, keys, algs=algs, typ=typ, limits=limits)
    claims = _compact.parse_json_object(payload, "jwt claims")
    for name in require:
        if name not in claims:
            raise JoseRejected(f"jwt: required claim {name!r} missing")
    instant = (now or utcnow()).timestamp()
    ahead = instant + leeway.total_seconds()
    exp, nbf, iat = (_number(claims, n) for n in ("exp", "nbf", "iat"))
    if exp is not None and instant >= exp:
        raise JoseRejected("jwt: expired")
    if nbf is not None and nbf > ahead:
        raise JoseRejected("jwt: not yet valid (nbf)")
    if iat is not None and iat > ahead:
        raise JoseRejected("jwt: issued in the future (iat)")
    return VerifiedJwt(header=header, claims=claims, kid=kid)


# -- application/jose: sign then encrypt ---------------------------------------------------


def seal_for(
    payload: bytes | Mapping[str, Any],
    signer_ring: KeyRing,
    recipient_public_jwk: Mapping[str, Any] | PublicKey,
    *,
    typ: str | None = None,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """Sign ``payload`` with the signer ring's current key, then encrypt to the recipient.

    The result is a compact JWE (``cty: "JWT"``) around a compact JWS. A dict payload is
    serialised as JSON. The recipient key must be an EC P-256 or RSA (2048+) public key.
    """
    if isinstance(payload, Mapping):
        payload = json.dumps(dict(payload), separators=(",", ":"), allow_nan=False).encode()
    if len(payload) > limits.max_payload_bytes:
        raise JoseRejected(f"seal: payload over {limits.max_payload_bytes} bytes")
    try:
        recipient = (
            recipient_public_jwk
            if isinstance(recipient_public_jwk, PublicKey)
            else public_key_from_jwk(recipient_public_jwk, use="enc")
        )
    except KeysError as exc:
        raise JoseRejected(f"seal: recipient key: {exc.code}: {exc.reason}") from exc
    if recipient.use != "enc":
        raise JoseRejected("seal: recipient key is not an encryption key")
    inner = _sign(payload, signer_ring.current(now=now), typ, limits)
    alg = recipient.alg
    header = {"alg": alg, "enc": "A256GCM", "cty": "JWT", "kid": recipient.kid}
    try:
        return jwe.encrypt_compact(
            header, inner, recipient.jose_key, registry=_cached_registry(alg, limits)
        )
    except Exception as exc:
        raise jose_rejected_from(exc, "seal") from exc


def unseal_from(
    compact_jwe: str | bytes,
    decryption_ring: KeyRing,
    sender_public_jwks: VerificationKeys,
    *,
    typ: str | None = None,
    now: datetime | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Unsealed:
    """Decrypt with a usable key of the ring, then verify the inner JWS by one of the sender's.

    Refused: any header outside the allow-lists, a retired or unknown recipient key, an inner
    payload that is not a JWS, a JWS that is unsigned or signed by a key not in
    ``sender_public_jwks``. ``typ``, when given, is required on the inner JWS.
    """
    moment = now or utcnow()
    segments = _compact.split_compact(compact_jwe, 5, limits.max_token_bytes)
    header = _compact.parse_header(segments[0], limits, "jwe")
    alg, _enc = _compact.check_jwe_header(header, ENC_ALGS, CONTENT_ENCRYPTION)
    cty = header.get("cty")
    if not isinstance(cty, str) or _compact.normalise_typ(cty) != "jwt":
        raise JoseRejected("jwe: cty is not JWT (the body must be a signed JWS)")
    encrypted_key = _compact.b64url_decode(segments[1], "jwe encrypted key")
    iv = _compact.b64url_decode(segments[2], "jwe iv")
    _compact.b64url_decode(segments[3], "jwe ciphertext")
    tag = _compact.b64url_decode(segments[4], "jwe tag")
    if len(iv) != 12 or len(tag) != 16:
        raise JoseRejected("jwe: iv must be 96 bits and tag 128 bits for A256GCM")
    if alg == "ECDH-ES+A256KW" and len(encrypted_key) != 40:
        raise JoseRejected("jwe: encrypted key must be 40 bytes for ECDH-ES+A256KW")
    if alg == "RSA-OAEP-256" and not 256 <= len(encrypted_key) <= 512:
        raise JoseRejected("jwe: encrypted key length unfit for RSA-OAEP-256")

    kid = header.get("kid")
    if kid is not None:
        try:
            keys = [decryption_ring.get(kid, now=moment)]
        except KeysError as exc:
            raise JoseRejected(f"jwe: {exc.code}: {exc.reason}") from exc
    else:
        keys = [k for k in decryption_ring.usable(now=moment) if k.info.alg == alg]
    keys = [k for k in keys if k.info.alg == alg and k.info.use == "enc"][:_MAX_TRIED_KEYS]
    if not keys:
        raise JoseRejected(f"jwe: no usable {alg} key in ring {decryption_ring.purpose}")
    compact = b".".join(segments)
    registry = _cached_registry(alg, limits)
    for key in keys:
        try:
            plaintext = jwe.decrypt_compact(compact, key.jose_key, registry=registry).plaintext
        except Exception as exc:
            failure = exc
            continue
        if plaintext is None:  # pragma: no cover - joserfc always sets it
            continue
        _header, payload, sender_kid = verify_jws(
            plaintext, sender_public_jwks, algs=SIG_ALGS, typ=typ, limits=limits
        )
        return Unsealed(payload, plaintext.decode("ascii"), sender_kid, key.kid)
    raise jose_rejected_from(failure, "jwe decrypt") from failure
