"""Cheap checks on a JOSE compact serialization, run before any key is touched.

Size caps on the whole token and on the protected header, strict base64url, a protected header
that is a JSON object without duplicate members, and the allow-lists of :mod:`keys.jose`:
``none``, ``RSA1_5``, ``PBES2*`` and ``dir`` (in any casing), ``zip``, ``jku``, ``x5u``,
``x5c``, an embedded ``jwk`` and any ``crit`` are refused here with a precise reason, and an
ECDH-ES ephemeral key must be a point on P-256. Everything raises
:class:`keys.errors.JoseRejected`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ._hazmat import p256_point_is_valid
from .errors import JoseRejected

__all__ = [
    "JWE_HEADER_MEMBERS",
    "JWS_HEADER_MEMBERS",
    "Limits",
    "b64url_decode",
    "check_jwe_header",
    "check_jws_header",
    "normalise_typ",
    "parse_json_object",
    "split_compact",
]

_B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")
_B64_TAIL_BITS = {2: 0x0F, 3: 0x03}
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

#: Protected header members we accept; anything else is refused.
JWS_HEADER_MEMBERS = frozenset({"alg", "kid", "typ", "cty"})
JWE_HEADER_MEMBERS = frozenset({"alg", "enc", "kid", "typ", "cty", "epk", "apu", "apv"})
_NEVER = {
    "jku": "jku refused (keys are never fetched)",
    "x5u": "x5u refused (keys are never fetched)",
    "x5c": "x5c refused (embedded certificates are never trusted)",
    "jwk": "embedded jwk refused (keys come from the registered key set)",
    "zip": "zip refused (compressed plaintext)",
    "crit": "crit refused (no extension is understood)",
    "b64": "b64 refused (unencoded payloads are not accepted)",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Size caps. The token cap follows from the payload cap (base64 twice, plus headers)."""

    max_payload_bytes: int = 1 << 20
    max_header_bytes: int = 4096

    @property
    def max_token_bytes(self) -> int:
        return math.ceil(self.max_payload_bytes * 16 / 9) + 4 * self.max_header_bytes + 2048


def _reject(reason: str) -> JoseRejected:
    return JoseRejected(reason)


def split_compact(token: str | bytes, parts: int, max_bytes: int) -> list[bytes]:
    """Split a compact token into ``parts`` segments after checking type, size and alphabet."""
    if isinstance(token, str):
        if len(token) > max_bytes:
            raise _reject(f"token: {len(token)} characters over the cap of {max_bytes}")
        if not token.isascii():
            raise _reject("token: not ASCII")
        raw = token.encode("ascii")
    elif isinstance(token, bytes):
        raw = token
    else:
        raise _reject("token: not a string")
    if len(raw) > max_bytes:
        raise _reject(f"token: {len(raw)} bytes over the cap of {max_bytes}")
    segments = raw.split(b".")
    if len(segments) != parts:
        raise _reject(f"token: {len(segments)} segments where {parts} are expected")
    return segments


def b64url_decode(segment: bytes, what: str) -> bytes:
    """Strict, canonical base64url without padding: one encoding per value, no tolerance."""
    remainder = len(segment) % 4
    if remainder == 1 or not _B64URL.fullmatch(segment):
        raise _reject(f"{what}: not base64url")
    if remainder in _B64_TAIL_BITS and _ALPHABET.index(segment[-1]) & _B64_TAIL_BITS[remainder]:
        raise _reject(f"{what}: non-canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - regex guards this
        raise _reject(f"{what}: not base64url") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key[:40]!r}")
        out[key] = value
    return out


def _no_constants(value: str) -> Any:
    raise ValueError(f"{value} is not JSON")


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object, refusing duplicate members and NaN/Infinity."""
    try:
        parsed = json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _reject(f"{what}: not a JSON object ({str(exc)[:60]})") from exc
    if not isinstance(parsed, dict):
        raise _reject(f"{what}: not a JSON object")
    return parsed


def parse_header(segment: bytes, limits: Limits, what: str) -> dict[str, Any]:
    if len(segment) > limits.max_header_bytes:
        raise _reject(f"{what}: header over {limits.max_header_bytes} bytes")
    return parse_json_object(b64url_decode(segment, f"{what} header"), f"{what} header")


def _check_alg(alg: Any, allowed: Collection[str], what: str) -> str:
    if not isinstance(alg, str) or not alg:
        raise _reject(f"{what}: alg missing or not a string")
    folded = alg.casefold()
    shown = alg[:40]
    if folded == "none":
        raise _reject(f"{what}: alg {shown!r} refused (unsecured)")
    if folded == "rsa1_5":
        raise _reject(f"{what}: alg {shown!r} refused (RSA PKCS#1 v1.5)")
    if folded.startswith("pbes2"):
        raise _reject(f"{what}: alg {shown!r} refused (password-based)")
    if folded == "dir":
        raise _reject(f"{what}: alg {shown!r} refused (direct key)")
    if folded.startswith("hs"):
        raise _reject(f"{what}: alg {shown!r} refused (symmetric MAC)")
    if alg not in allowed:
        raise _reject(f"{what}: alg {shown!r} not in the allow-list")
    return alg


def _check_members(header: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    for name in header:
        if name in _NEVER:
            raise _reject(f"{what}: {_NEVER[name]}")
        if name not in allowed:
            raise _reject(f"{what}: header member {name[:40]!r} not allowed")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 0 < len(kid) <= 256):
        raise _reject(f"{what}: kid is not a string of 1 to 256 characters")
    for name in ("typ", "cty", "apu", "apv"):
        value = header.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 256):
            raise _reject(f"{what}: {name} is not a short string")


def check_jws_header(header: dict[str, Any], algs: Collection[str]) -> str:
    """Check a JWS protected header; returns its alg."""
    alg = _check_alg(header.get("alg"), algs, "jws")
    _check_members(header, JWS_HEADER_MEMBERS, "jws")
    return alg


def check_jwe_header(
    header: dict[str, Any], algs: Collection[str], encs: Collection[str]
) -> tuple[str, str]:
    """Check a JWE protected header (and its ephemeral key); returns (alg, enc)."""
    alg = _check_alg(header.get("alg"), algs, "jwe")
    _check_members(header, JWE_HEADER_MEMBERS, "jwe")
    enc = header.get("enc")
    if not isinstance(enc, str) or enc not in encs:
        raise _reject(f"jwe: enc {str(enc)[:40]!r} not in the allow-list")
    if alg.startswith("ECDH-ES"):
        _check_epk(header.get("epk"))
    elif "epk" in header or "apu" in header or "apv" in header:
        raise _reject(f"jwe: epk/apu/apv present with alg {alg!r}")
    return alg, enc


def _check_epk(epk: Any) -> None:
    if not isinstance(epk, dict):
        raise _reject("jwe: epk missing or not an object")
    if set(epk) - {"kty", "crv", "x", "y"}:
        raise _reject("jwe: epk has members other than kty, crv, x, y")
    if epk.get("kty") != "EC" or epk.get("crv") != "P-256":
        raise _reject(f"jwe: epk is not an EC P-256 key ({str(epk.get('crv'))[:20]!r})")
    x, y = epk.get("x"), epk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise _reject("jwe: epk coordinates missing")
    x_raw = b64url_decode(x.encode("ascii", "replace"), "jwe epk x")
    y_raw = b64url_decode(y.encode("ascii", "replace"), "jwe epk y")
    if not p256_point_is_valid(x_raw, y_raw):
        raise _reject("jwe: epk is not a point on P-256")


def normalise_typ(value: str) -> str:
    """RFC 7515 4.1.9: compare media types case-insensitively, ``application/`` optional."""
    lowered = value.lower()
    return lowered[len("application/") :] if lowered.startswith("application/") else lowered
