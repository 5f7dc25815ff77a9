"""RFC 9068 access tokens (``at+jwt``), sender-constrained, issued and verified by the gateway.

Issued tokens carry ``iss``, ``sub`` = ``client_id`` = the agency id, ``aud`` (the data API,
not the issuer, so a client assertion can never pass for a token), ``iat``, ``nbf``, ``exp``
(at most 5 minutes on), a random ``jti``, ``scope``, the agency's ``agency_type``, ``role`` and
``area``, and exactly one binding in ``cnf``: ``jkt``, the DPoP key's thumbprint (RFC 9449), or
``x5t#S256``, the client certificate's (RFC 8705, for an agency that authenticated with
``tls_client_auth`` and sent no DPoP proof). A token with neither, or both, is refused.

:func:`verify_access_token` refuses, before any key is touched: oversized tokens, JWE, headers
with anything but ``alg``/``typ``/``kid``, ``alg`` other than ES256 (so ``none`` in any casing
and HS256 keyed with our public key never reach a verifier), ``typ`` other than ``at+jwt``, and
a ``kid`` that is not a known key's (looked up in memory: no file, table or shell sees it).

An agency presents the same token on every call for its five minutes, so a token that passed
every check is remembered by its exact text (bounded: :class:`~gateway.oauth.signing.
VerifiedTokens`). The next presentation skips the JSON and the signature, not the checks whose
answer can change: that its key is still usable and that it has not expired, judged again then.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.oauth.jose import JoseRefused, parse_compact, verify_signature
from gateway.oauth.jwks import KID_PATTERN
from gateway.oauth.signing import SIGNING_ALG, TokenSigner

__all__ = [
    "ACCESS_TOKEN_TYP",
    "MAX_TOKEN_CHARS",
    "X5T_S256",
    "AccessToken",
    "issue_access_token",
    "verify_access_token",
]

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret
MAX_TOKEN_CHARS = 4096
_TYPS = {"at+jwt", "application/at+jwt"}
#: RFC 8705 section 3.1: the confirmation member of a certificate-bound token.
X5T_S256 = "x5t#S256"


@dataclass(frozen=True, slots=True)
class AccessToken:
    """The claims of a verified (or freshly issued) access token that the gateway relies on."""

    jti: str
    client_id: str
    agency_type: str
    role: str
    area: str
    scopes: tuple[str, ...]
    #: The DPoP key's thumbprint, or the client certificate's: exactly one is set.
    jkt: str | None
    issued_at: dt.datetime
    expires_at: dt.datetime
    x5t: str | None = None


def issue_access_token(
    signer: TokenSigner,
    *,
    issuer: str,
    audience: str,
    client_id: str,
    agency_type: str,
    role: str,
    area: str,
    scopes: Sequence[str],
    jkt: str | None = None,
    x5t: str | None = None,
    now: dt.datetime,
    lifetime: int,
) -> tuple[str, AccessToken]:
    """Sign a new access token bound to ``jkt`` (a DPoP key) or ``x5t`` (a client
    certificate), exactly one; return it and what it says."""
    if (jkt is None) == (x5t is None):
        raise ValueError("a token is bound to a DPoP key or to a certificate, exactly one")
    iat = int(now.timestamp())
    jti = secrets.token_urlsafe(24)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": client_id,
        "client_id": client_id,
        "aud": audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "jti": jti,
        "scope": " ".join(scopes),
        "cnf": {"jkt": jkt} if jkt is not None else {X5T_S256: x5t},
        "agency_type": agency_type,
        "role": role,
        "area": area,
    }
    token = signer.sign(claims, typ=ACCESS_TOKEN_TYP, now=now)
    return token, _described(claims)


def _described(claims: dict[str, Any]) -> AccessToken:
    return AccessToken(
        jti=claims["jti"],
        client_id=claims["client_id"],
        agency_type=claims["agency_type"],
        role=claims["role"],
        area=claims["area"],
        scopes=tuple(claims["scope"].split()),
        jkt=claims["cnf"].get("jkt"),
        issued_at=dt.datetime.fromtimestamp(claims["iat"], dt.UTC),
        expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
        x5t=claims["cnf"].get(X5T_S256),
    )


def _str(claims: dict[str, Any], name: str, limit: int = 256) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise JoseRefused(f"token_{name}")
    return value


def _time(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise JoseRefused(f"token_{name}")
    return value


def verify_access_token(
    token: str,
    signer: TokenSigner,
    *,
    issuer: str,
    audience: str,
    now: dt.datetime,
    leeway: int,
) -> AccessToken:
    """Verify an access token completely; raise :class:`JoseRefused` with the reason."""
    remembered_as = (token, issuer, audience)
    remembered = signer.verified.get(remembered_as)
    if remembered is not None:
        kid, described = remembered
        if signer.verification_key(kid, now=now) is None:
            signer.verified.forget(remembered_as)
            raise JoseRefused(signer.refusal_for(kid))
        if described.expires_at.timestamp() <= now.timestamp() - leeway:
            signer.verified.forget(remembered_as)
            raise JoseRefused("token_expired")
        return described
    compact = parse_compact(
        token,
        max_chars=MAX_TOKEN_CHARS,
        allowed_header=("alg", "typ", "kid"),
        required_header=("alg", "typ", "kid"),
        algs=(SIGNING_ALG,),
    )
    typ = compact.header["typ"]
    if not isinstance(typ, str) or typ.lower() not in _TYPS:
        raise JoseRefused("token_typ")
    kid = compact.header["kid"]
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise JoseRefused("kid_malformed")
    key = signer.verification_key(kid, now=now)
    if key is None:
        raise JoseRefused(signer.refusal_for(kid))
    verify_signature(compact, key, (SIGNING_ALG,))

    claims = dict(compact.claims)
    if claims.get("iss") != issuer:
        raise JoseRefused("token_iss")
    if claims.get("aud") != audience:
        raise JoseRefused("token_aud")
    clock = int(now.timestamp())
    exp, iat = _time(claims, "exp"), _time(claims, "iat")
    if exp <= clock - leeway:
        raise JoseRefused("token_expired")
    if iat > clock + leeway:
        raise JoseRefused("token_iat_future")
    if "nbf" in claims and _time(claims, "nbf") > clock + leeway:
        raise JoseRefused("token_not_yet_valid")
    client_id = _str(claims, "client_id", 64)
    if _str(claims, "sub", 64) != client_id:
        raise JoseRefused("token_sub")
    _str(claims, "jti", 64)
    for name in ("agency_type", "role", "area"):
        _str(claims, name, 64)
    if not isinstance(claims.get("scope"), str):
        raise JoseRefused("token_scope")
    cnf = claims.get("cnf")
    bindings = (
        [value for name, value in cnf.items() if name in ("jkt", X5T_S256)]
        if isinstance(cnf, dict)
        else []
    )
    if len(bindings) != 1 or not isinstance(bindings[0], str) or not bindings[0]:
        raise JoseRefused("token_not_bound")
    described = _described(claims)
    signer.verified.put(remembered_as, (kid, described))
    return described
