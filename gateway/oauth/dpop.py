"""DPoP proof verification (RFC 9449), at the token endpoint and on every protected call.

A proof is a JWS with ``typ`` ``dpop+jwt``, ``alg`` ES256 or EdDSA, and the public key in the
header's ``jwk`` (its only place: there is no ``kid``, ``jku`` or ``x5u`` to follow). Its claims
bind it to one request: ``htm`` (the method), ``htu`` (the URL without query or fragment),
``iat`` (fresh: at most ``max_age`` seconds old and not in the future beyond the skew), a unique
``jti`` (spent in the replay store by the caller, who holds the transaction) and, with an
access token, ``ath`` = base64url(SHA-256(token)).
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from joserfc.jwk import ECKey, OKPKey

from gateway.oauth.jose import (
    JoseRefused,
    numeric_date,
    parse_compact,
    sha256_b64url,
    verify_signature,
)
from gateway.oauth.jwks import KeyRefused, parse_jwk

__all__ = ["MAX_PROOF_CHARS", "DPoPProof", "normalise_htu", "verify_proof"]

MAX_PROOF_CHARS = 4096
_MAX_JTI = 128


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A verified proof: the RFC 7638 thumbprint of its key, its ``jti`` and when it expires."""

    jkt: str
    jti: str
    iat: int
    replay_until: dt.datetime


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _normalise_percent(match: re.Match[str]) -> str:
    """RFC 3986 6.2.2.1-2: an escaped unreserved character is that character; others upper-case."""
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalise_htu(url: str) -> str:
    """Scheme and host lower-cased, default port dropped, percent-encoding normalised (RFC 3986
    6.2.2: ``%2d`` and ``-`` are one path, ``%2F`` and ``/`` are not), query and fragment
    removed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise JoseRefused("dpop_htu") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    path = _PERCENT.sub(_normalise_percent, parts.path or "/")
    return urlunsplit((scheme, host, path, "", ""))


def _resource(url: str) -> str:
    """The normalised URL with its path percent-decoded: the resource the router will serve.

    The gateway routes on the decoded path, so a proof whose ``htu`` escapes a character the
    client sent escaped (or not) names the same resource; any other difference does not."""
    return unquote(normalise_htu(url))


def _numeric(claims: dict[str, Any] | Any, name: str) -> int:
    """The claim as a NumericDate; absent, not a number, not finite or out of range is refused
    alike (``1e400``, infinity to the JSON parser, is no ``iat`` either)."""
    value = numeric_date(claims.get(name))
    if value is None:
        raise JoseRefused(f"dpop_{name}_missing")
    return value


def verify_proof(
    proof: str | None,
    *,
    htm: str,
    htu: str,
    now: dt.datetime,
    max_age: int,
    future_skew: int,
    access_token: str | None = None,
) -> DPoPProof:
    """Verify one DPoP proof for a request; raise :class:`JoseRefused` with the reason."""
    if not proof:
        raise JoseRefused("dpop_missing")
    compact = parse_compact(
        proof,
        max_chars=MAX_PROOF_CHARS,
        allowed_header=("alg", "typ", "jwk"),
        required_header=("alg", "typ", "jwk"),
    )
    if compact.header.get("typ") != "dpop+jwt":
        raise JoseRefused("dpop_typ")
    try:
        parsed = parse_jwk(compact.header["jwk"])
    except KeyRefused as exc:
        raise JoseRefused("dpop_jwk_refused") from exc
    if parsed.use != "sig" or not isinstance(parsed.key, (ECKey, OKPKey)):
        raise JoseRefused("dpop_jwk_refused")
    verify_signature(compact, parsed.key, parsed.algs)

    claims = compact.claims
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
        raise JoseRefused("dpop_jti")
    if claims.get("htm") != htm:
        raise JoseRefused("dpop_htm")
    claimed_htu = claims.get("htu")
    if not isinstance(claimed_htu, str) or len(claimed_htu) > 2048:
        raise JoseRefused("dpop_htu")
    if _resource(claimed_htu) != _resource(htu):
        raise JoseRefused("dpop_htu")
    iat = _numeric(claims, "iat")
    clock = int(now.timestamp())
    if iat > clock + future_skew:
        raise JoseRefused("dpop_iat_future")
    if iat < clock - max_age:
        raise JoseRefused("dpop_iat_stale")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(
            ath.encode("ascii", "replace"), sha256_b64url(access_token).encode("ascii")
        ):
            raise JoseRefused("dpop_ath")
    replay_until = dt.datetime.fromtimestamp(max(iat, clock) + max_age + future_skew, dt.UTC)
    return DPoPProof(jkt=parsed.thumbprint, jti=jti, iat=iat, replay_until=replay_until)
