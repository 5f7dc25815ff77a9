"""``private_key_jwt`` client assertions (RFC 7523 section 2.2, as FAPI 2.0 profiles it).

The assertion is a JWS signed ES256 or EdDSA with a current (or still-overlapping) key of the
agency's registered JWKS, chosen by ``kid``: never a key carried in the header. Its claims:
``iss`` = ``sub`` = the client id, ``aud`` = the issuer identifier (a string, nothing else),
``exp`` not past and at most ``max_lifetime`` seconds ahead, ``iat`` (and ``nbf`` if present) at
most ``future_skew`` seconds ahead, and a ``jti`` that the caller spends in the replay store,
kept there until ``exp + leeway + future_skew``: accepted until ``exp + leeway``, and kept
``future_skew`` longer, as far as another replica's clock may run ahead of the one accepting.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, OKPKey

from gateway.oauth.clients import ClientRecord
from gateway.oauth.jose import (
    Compact,
    JoseRefused,
    numeric_date,
    parse_compact,
    verify_signature,
)
from gateway.oauth.jwks import KID_PATTERN

__all__ = [
    "ASSERTION_TYPE",
    "MAX_ASSERTION_CHARS",
    "VerifiedAssertion",
    "parse_assertion",
    "verify_assertion",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_CHARS = 8192
_MAX_JTI = 256
_ACCEPTED_TYP = {"jwt", "client-authentication+jwt"}


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    client_id: str
    jti: str
    kid: str
    replay_until: dt.datetime


def parse_assertion(assertion: str) -> Compact:
    """Structural checks only (size, header, ``alg``): enough to know who claims to call."""
    compact = parse_compact(
        assertion,
        max_chars=MAX_ASSERTION_CHARS,
        allowed_header=("alg", "kid", "typ"),
        required_header=("alg",),
    )
    typ = compact.header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP):
        raise JoseRefused("assertion_typ")
    kid = compact.header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid)):
        raise JoseRefused("kid_malformed")
    return compact


def _numeric(claims: Any, name: str, *, required: bool) -> int | None:
    """The claim as a NumericDate; one that is not a finite number in range (``1e400`` parses
    as infinity) is refused like one that is not a number at all."""
    value = claims.get(name)
    if value is None and not required:
        return None
    seconds = numeric_date(value)
    if seconds is None:
        raise JoseRefused(f"assertion_{name}_missing" if value is None else f"assertion_{name}")
    return seconds


def verify_assertion(
    compact: Compact,
    client: ClientRecord,
    *,
    issuer: str,
    now: dt.datetime,
    leeway: int,
    future_skew: int,
    max_lifetime: int,
) -> VerifiedAssertion:
    """Verify signature and claims of a parsed assertion for ``client``."""
    kid = compact.header.get("kid")
    candidates = [
        k
        for k in client.usable_keys(now)
        if (kid is None or k.kid == kid) and compact.alg in k.algs
    ]
    if not candidates:
        raise JoseRefused("key_retired" if kid and client.knows_kid(str(kid)) else "key_unknown")
    for key in candidates:
        assert isinstance(key.key, (ECKey, OKPKey))
        try:
            verify_signature(compact, key.key, key.algs)
        except JoseRefused:
            continue
        used_kid = key.kid
        break
    else:
        raise JoseRefused("bad_signature")

    claims = compact.claims
    for name in ("iss", "sub"):
        if name not in claims:
            raise JoseRefused(f"assertion_{name}_missing")
    if claims["iss"] != client.client_id or claims["sub"] != client.client_id:
        raise JoseRefused("assertion_iss_sub")
    if "aud" not in claims:
        raise JoseRefused("assertion_aud_missing")
    if claims["aud"] != issuer:
        raise JoseRefused("assertion_aud")
    clock = int(now.timestamp())
    exp = _numeric(claims, "exp", required=True)
    iat = _numeric(claims, "iat", required=True)
    nbf = _numeric(claims, "nbf", required=False)
    assert exp is not None and iat is not None
    if exp <= clock - leeway:
        raise JoseRefused("assertion_expired")
    if exp > clock + max_lifetime + leeway:
        raise JoseRefused("assertion_exp_too_far")
    if iat > clock + future_skew:
        raise JoseRefused("assertion_iat_future")
    if nbf is not None and nbf > clock + future_skew:
        raise JoseRefused("assertion_nbf_future")
    jti = claims.get("jti")
    if jti is None:
        raise JoseRefused("assertion_jti_missing")
    if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
        raise JoseRefused("assertion_jti")
    # Accepted while ``exp > clock - leeway`` on any replica. A replica whose clock is ahead
    # (by up to the tolerated ``future_skew``) purges spent jtis by its own clock: the row is
    # kept that much longer, so no replica can accept the assertion again once it is purged
    # (DPoP proofs keep the same margin: gateway/oauth/dpop.py).
    replay_until = dt.datetime.fromtimestamp(exp + leeway + future_skew, dt.UTC)
    return VerifiedAssertion(
        client_id=client.client_id, jti=jti, kid=used_kid, replay_until=replay_until
    )
