"""Strict compact-JWS handling for the three token kinds the gateway reads.

Every JWS that reaches the gateway (a client assertion, a DPoP proof, an access token) goes
through :func:`parse_compact` before any key is looked up: the length is checked before anything
is decoded (bounded memory), the header must be a small JSON object holding only the parameters
that kind allows (``jku``, ``x5u``, ``x5c``, ``crit`` and friends are refused, never followed),
and ``alg`` must be in the allow-list pinned for that kind, compared exactly (so ``none`` in
any casing, ``HS256`` and everything else is refused). Only then does :func:`verify_signature`
ask joserfc to check the signature, with the one algorithm the key is pinned to.

Failures raise :class:`JoseRefused` with a short machine ``reason``; callers turn it into the
outward error of their stage and keep the reason for the audit record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry

__all__ = [
    "ALLOWED_ALGS",
    "MAX_NUMERIC_DATE",
    "Compact",
    "JoseRefused",
    "b64url",
    "numeric_date",
    "parse_compact",
    "sha256_b64url",
    "verify_signature",
]

#: JWS algorithms the gateway accepts from agencies (FAPI 2.0: ES256 and EdDSA only).
ALLOWED_ALGS: frozenset[str] = frozenset({"ES256", "EdDSA"})

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_MAX_HEADER_CHARS = 1024
_MAX_SIGNATURE_CHARS = 128
#: The latest NumericDate taken from an agency's JWS: 9999-12-31T23:59:59Z, the last second a
#: datetime holds.
MAX_NUMERIC_DATE = 253402300799


class _PinnedRegistry(JWSRegistry):
    """joserfc's JWS registry held to our allow-list.

    ``EdDSA`` is looked up without joserfc's deprecation warning (RFC 9864 prefers the name
    ``Ed25519``; both name the same algorithm on the same keys, and FAPI 2.0 names ``EdDSA``).
    """

    def get_alg(self, name: str) -> Any:
        if name not in ALLOWED_ALGS or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


_REGISTRY = _PinnedRegistry(algorithms=sorted(ALLOWED_ALGS))


class JoseRefused(Exception):
    """A JWS was refused; ``reason`` is a short machine code for the audit record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Compact:
    """A compact JWS that passed the structural checks (its signature is not yet verified)."""

    raw: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]

    @property
    def alg(self) -> str:
        return str(self.header["alg"])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sha256_b64url(text: str) -> str:
    """base64url(SHA-256(text)): the DPoP ``ath`` of an access token."""
    return b64url(hashlib.sha256(text.encode("ascii")).digest())


def _b64decode(segment: str, what: str) -> bytes:
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise JoseRefused(f"{what}_not_base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JoseRefused(f"{what}_not_base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member")
        out[key] = value
    return out


def numeric_date(value: object) -> int | None:
    """``value`` as a NumericDate in whole seconds, or None if it is not one the gateway takes.

    RFC 7519 section 2 allows a fraction (dropped here, as before). Refused: a boolean, anything
    not a JSON number, a number that is not finite (JSON's ``1e400`` parses as infinity, which
    ``int`` cannot convert), and one outside 0 to :data:`MAX_NUMERIC_DATE`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not 0 <= value <= MAX_NUMERIC_DATE:
        return None
    return int(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object. Numbers stay as the parser reads them (``1e400`` is infinity): every claim
    read as a number goes through :func:`numeric_date`, which refuses that with the claim's own
    reason, after the signature and the caller are known, so the refusal is audited as theirs."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JoseRefused(f"{what}_not_json") from exc
    if not isinstance(value, dict):
        raise JoseRefused(f"{what}_not_object")
    return value


def parse_compact(
    token: str,
    *,
    max_chars: int,
    allowed_header: Collection[str],
    required_header: Collection[str],
    algs: Collection[str] = ALLOWED_ALGS,
) -> Compact:
    """Check the structure, the header and ``alg`` of a compact JWS; decode its claims.

    ``allowed_header`` lists every header parameter the kind may carry; any other (``jku``,
    ``x5u``, ``x5c``, ``crit``, an unexpected ``jwk``) is refused.
    """
    if not isinstance(token, str) or not token:
        raise JoseRefused("empty")
    if len(token) > max_chars:
        raise JoseRefused("too_large")
    if not token.isascii():
        raise JoseRefused("not_ascii")
    parts = token.split(".")
    if len(parts) == 5:
        raise JoseRefused("jwe_not_jws")
    if len(parts) != 3:
        raise JoseRefused("not_compact_jws")
    header_b64, payload_b64, signature_b64 = parts
    if len(header_b64) > _MAX_HEADER_CHARS:
        raise JoseRefused("header_too_large")
    if len(signature_b64) > _MAX_SIGNATURE_CHARS:
        raise JoseRefused("signature_too_large")
    header = _json_object(_b64decode(header_b64, "header"), "header")
    unexpected = set(header) - set(allowed_header)
    if unexpected:
        # The names are ours to report only when they are ones we know to refuse.
        known = {"jku", "x5u", "x5c", "jwk", "crit", "b64", "zip", "enc", "cty", "kid", "typ"}
        named = sorted(unexpected & known)
        raise JoseRefused("header_" + (named[0] if named else "unknown") + "_refused")
    missing = [name for name in required_header if name not in header]
    if missing:
        raise JoseRefused(f"header_{sorted(missing)[0]}_missing")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algs:
        raise JoseRefused("alg_refused")
    if not signature_b64:
        raise JoseRefused("signature_missing")
    _b64decode(signature_b64, "signature")
    claims = _json_object(_b64decode(payload_b64, "payload"), "payload")
    return Compact(raw=token, header=header, claims=claims)


def verify_signature(compact: Compact, key: ECKey | OKPKey, key_algs: Collection[str]) -> None:
    """Verify the signature of ``compact`` with ``key``, pinned to the algorithms of that key."""
    alg = compact.alg
    if alg not in key_algs or alg not in ALLOWED_ALGS:
        raise JoseRefused("alg_not_for_key")
    try:
        jws.deserialize_compact(compact.raw, key, registry=_REGISTRY)
    except JoseError as exc:
        raise JoseRefused("bad_signature") from exc
    except (ValueError, TypeError) as exc:
        raise JoseRefused("bad_signature") from exc
