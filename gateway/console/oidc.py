"""OIDC sign-in for the console: the authorization code flow with PKCE, ``state`` and ``nonce``.

The gateway is a confidential OIDC client of the organisation's identity provider (Entra ID,
Keycloak, ...). Authlib builds the protocol messages (the authorization request with its S256
code challenge, the token request); httpx carries them over an explicit TLS context (the system's
CAs, or ``console_oidc_ca_file``; TLS 1.2 at least; no redirects followed); joserfc checks the ID
token. The flow:

1. ``begin``: fresh ``state``, ``nonce`` and PKCE verifier, kept in ``console_oidc_logins``
   (the state hashed, with the hash of a binding token that goes to the browser in a
   ``__Host-`` cookie); the browser is sent to the provider's authorization endpoint, found by
   discovery (``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must be exactly
   the configured one).
2. ``complete``: the callback's ``state`` takes its row (deleted: a state, hence a code, works
   once, for ten minutes, only in the browser that began it); the code is exchanged with the
   verifier and the client's secret (``client_secret_basic``); the ID token must be a JWS signed
   with an asymmetric algorithm (RS256, PS256, ES256, EdDSA; never ``none`` or HMAC) by a key of
   the provider's JWKS, with ``iss`` the issuer, ``aud`` holding the client id (and ``azp`` the
   client id when there are several audiences), ``exp`` in the future, ``iat`` not in the
   future, ``nonce`` the one sent, and a ``sub``.

Only the issuer and subject are read from the token. Whether they are an IG officer is decided
by the caller (`gateway.console.accounts.oidc_officer`): an identity the gateway has not been
told of is refused, whatever the provider says. Every failure is a `OidcLoginFailed` with a
stable reason code, for the audit entry; the browser sees only the generic sign-in refusal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import delete

from gateway.settings import Settings
from gateway.store import Database
from gateway.store.models import ConsoleOidcLogin

__all__ = [
    "CALLBACK_PATH",
    "ID_TOKEN_ALGORITHMS",
    "OIDC_COOKIE",
    "OidcIdentity",
    "OidcLoginFailed",
    "OidcSignIn",
]

CALLBACK_PATH: Final = "/console/login/oidc/callback"
#: The browser's binding to the sign-in it began (SameSite=Lax: the callback is a top-level
#: navigation from the provider's site, which a Strict cookie would not accompany).
OIDC_COOKIE: Final = "__Host-mappa-console-oidc"
ID_TOKEN_ALGORITHMS: Final = ("RS256", "PS256", "ES256", "EdDSA")
_LIFETIME: Final = dt.timedelta(minutes=10)
_METADATA_SECONDS: Final = 3600
_MAX_DOCUMENT: Final = 256 * 1024
_MAX_PARAM: Final = 2048


class OidcLoginFailed(Exception):
    """An OIDC sign-in that did not yield an identity; ``reason`` is the audit code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    issuer: str
    subject: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def _tls(settings: Settings) -> ssl.SSLContext | bool:
    issuer = settings.console_oidc_issuer or ""
    if issuer.startswith("http://"):  # settings allow this only for a development loopback
        return False
    ca = settings.console_oidc_ca_file
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class OidcSignIn:
    """The console's OIDC client for one configured provider (one per process)."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.console_oidc_secret()
        if not (settings.console_oidc_issuer and settings.console_oidc_client_id and secret):
            raise ValueError("console OIDC is not configured")
        self.issuer = settings.console_oidc_issuer
        self.client_id = settings.console_oidc_client_id
        self._secret = secret
        self.redirect_uri = settings.issuer.rstrip("/") + CALLBACK_PATH
        self._leeway = settings.clock_leeway_seconds
        self._verify = _tls(settings)
        self._timeout = settings.console_oidc_timeout_seconds
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None

    # -- talking to the provider ----------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self._verify, timeout=self._timeout, follow_redirects=False, trust_env=False
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self._client() as client:
            response = await client.get(url, headers={"Accept": "application/json"})
        return _document(response)

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (cached for an hour)."""
        if self._metadata is None or time.monotonic() - self._metadata_at > _METADATA_SECONDS:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                document = await self._get_json(url)
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcLoginFailed("oidc_discovery_failed") from exc
            endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if document.get("issuer") != self.issuer or not all(
                isinstance(document.get(name), str) and _secure(self.issuer, document[name])
                for name in endpoints
            ):
                raise OidcLoginFailed("oidc_discovery_invalid")
            self._metadata, self._metadata_at, self._keys = document, time.monotonic(), None
        return self._metadata

    async def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            metadata = await self.metadata()
            try:
                self._keys = KeySet.import_key_set(await self._get_json(metadata["jwks_uri"]))  # type: ignore[arg-type]
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                raise OidcLoginFailed("oidc_jwks_unavailable") from exc
        return self._keys

    # -- the two steps ---------------------------------------------------------------------------

    async def begin(self, db: Database, *, now: dt.datetime) -> tuple[str, str]:
        """Start a sign-in; returns the provider URL to send the browser to and the binding
        token for its cookie."""
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        binding = secrets.token_urlsafe(32)
        async with db.write() as session:
            await session.execute(  # sign-ins abandoned long ago
                delete(ConsoleOidcLogin).where(ConsoleOidcLogin.expires_at < now)
            )
            session.add(
                ConsoleOidcLogin(
                    state_hash=_hash(state),
                    binding_hash=_hash(binding),
                    nonce=nonce,
                    code_verifier=verifier,
                    created_at=now,
                    expires_at=now + _LIFETIME,
                )
            )
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=self.redirect_uri,
            scope="openid",
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return url, binding

    async def complete(
        self,
        db: Database,
        *,
        state: str | None,
        code: str | None,
        binding: str | None,
        now: dt.datetime,
    ) -> OidcIdentity:
        """Finish a sign-in from the callback's parameters; the identity the ID token proves."""
        if not state or len(state) > _MAX_PARAM:
            raise OidcLoginFailed("oidc_state_missing")
        login = await _take(db, _hash(state))
        if login is None:
            raise OidcLoginFailed("oidc_state_unknown")
        if now >= login.expires_at:
            raise OidcLoginFailed("oidc_state_expired")
        if not binding or _hash(binding) != login.binding_hash:
            raise OidcLoginFailed("oidc_browser_mismatch")
        if not code or len(code) > _MAX_PARAM:
            raise OidcLoginFailed("oidc_code_missing")
        id_token = await self._exchange(code, login.code_verifier)
        return await self._identity(id_token, login.nonce, now)

    async def _exchange(self, code: str, verifier: str) -> str:
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=self.redirect_uri, code_verifier=verifier
        )
        try:
            async with self._client() as client:
                response = await client.post(
                    metadata["token_endpoint"],
                    content=body,
                    auth=(self.client_id, self._secret),
                    headers={
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Accept": "application/json",
                    },
                )
            answer = _document(response)
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcLoginFailed("oidc_code_refused") from exc
        id_token = answer.get("id_token")
        if not isinstance(id_token, str) or len(id_token) > 16_384:
            raise OidcLoginFailed("oidc_no_id_token")
        return id_token

    async def _identity(self, id_token: str, nonce: str, now: dt.datetime) -> OidcIdentity:
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
            except InvalidKeyIdError:  # the provider may have rotated: read its JWKS once more
                keys = await self._key_set(refresh=True)
                token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise OidcLoginFailed("oidc_id_token_signature") from exc
        claims = token.claims
        registry = JWTClaimsRegistry(
            now=int(now.timestamp()),
            leeway=self._leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            claim = getattr(exc, "claim", None) or "claims"
            raise OidcLoginFailed(f"oidc_id_token_{claim}"[:64]) from exc
        if int(claims["iat"]) > int(now.timestamp()) + self._leeway:
            raise OidcLoginFailed("oidc_id_token_iat")
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.client_id:
            raise OidcLoginFailed("oidc_id_token_azp")
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise OidcLoginFailed("oidc_id_token_sub")
        return OidcIdentity(self.issuer, subject)


async def _take(db: Database, state_hash: str) -> ConsoleOidcLogin | None:
    """Delete and return the sign-in under way with this state (one caller only gets it)."""
    async with db.write() as session:
        login = await session.get(ConsoleOidcLogin, state_hash)
        if login is None:
            return None
        deleted = await session.execute(
            delete(ConsoleOidcLogin).where(ConsoleOidcLogin.state_hash == state_hash)
        )
        if getattr(deleted, "rowcount", 0) != 1:
            return None
        session.expunge(login)
        return login


def _document(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200 or len(response.content) > _MAX_DOCUMENT:
        raise ValueError(f"provider answered {response.status_code}")
    value = json.loads(response.content)
    if not isinstance(value, dict):
        raise ValueError("provider document is not a JSON object")
    return value


def _secure(issuer: str, url: str) -> bool:
    """An endpoint is https, or plain http only where the issuer itself is (dev loopback)."""
    return url.startswith("https://") or (
        issuer.startswith("http://") and url.startswith("http://")
    )
