"""The agency side of the contract: one client that every adapter, the demo and the tests use.

:class:`GatewayClient` gets an access token with ``private_key_jwt`` and a DPoP proof, renews it
before it expires, sends every call with a fresh DPoP proof (``ath`` bound to the token) and the
MAPPA context headers (or, with ``mutual_tls``, authenticates with the client certificate the
``httpx`` client presents, RFC 8705 ``tls_client_auth``, and sends its certificate-bound token
as ``Bearer`` over that same mutual TLS, with no proof), seals request bodies (JWS by the
agency's signing key inside a JWE to the gateway's encryption key) and opens
``application/jose`` answers (decrypted with the agency's encryption key, signature checked
against the gateway's published JWKS). Algorithms are pinned: ES256 to sign, ECDH-ES+A256KW with
A256GCM to encrypt.

The gateway's JWKS (``/.well-known/jwks.json`` under the issuer, which must be ``https``, or
plain ``http`` to this machine) is fetched through the client's own ``http`` by
:class:`adapters.gateway_keys.GatewayJwks`, as the receiver fetches it: first when needed, then
again only when the keys held do not do, at most once per ``jwks_refetch_every`` (30 s):

* an answer signed with a ``kid`` not held (the gateway rotated its payload-signing key) fetches
  them again; a ``kid`` they still do not name is refused as a bad signature
  (``joserfc.errors.BadSignatureError``), never verified with anything else;
* a body is encrypted to the gateway's current encryption key, the first ``ECDH-ES+A256KW`` key
  of its JWKS (the gateway lists each purpose's keys newest first: the current key, then a
  previous one still in its overlap). When the gateway refuses the body (400
  ``unreadable_body``, the one code it gives for any body it cannot open) and the keys fetched
  again no longer name the key it was sealed to (rotated, and since retired), the call is sent
  once more, sealed to the key now current, with a fresh DPoP proof and the same
  ``Idempotency-Key``. Any other refusal, or one while that key is still published, is the
  caller's, as it came.

A fetch that fails raises :class:`adapters.gateway_keys.KeysUnavailable` (with ``retry_after``).

:meth:`GatewayClient.send` makes an adapter's :class:`~adapters.sdk.Outbound` call; when it
names the nominal by an identifier, :meth:`GatewayClient.lookup_nominal` finds the nominal first
(``POST /v1/nominals/lookup``, the identifier sealed in the body, never in a URL).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwe, jws
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import ECKey, Key, KeySet

from adapters.compact import MalformedSignature, jwe_registry, jws_registry, signing_kid
from adapters.gateway_keys import REFETCH_EVERY, GatewayJwks, KeysUnavailable
from adapters.identity import AgencyIdentity
from adapters.sdk import IDENTIFIER_KINDS, Outbound
from gateway.contract.envelope import BODY_TYP, JOSE_MEDIA_TYPE, SignedBody
from gateway.errors import UnreadableBody
from gateway.flow.signed_push import SignedPush

__all__ = ["ContextHeaders", "GatewayClient", "GatewayResponseError", "Opened"]

LOOKUP_PATH = "/v1/nominals/lookup"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGN_ALG = "ES256"
ENC_ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
RENEW_BEFORE = dt.timedelta(seconds=30)

_SIGN_REGISTRY = jws_registry([SIGN_ALG])
_JWE_REGISTRY = jwe_registry([ENC_ALG, ENC])
#: Retry-After in seconds: ASCII digits, at most nine (``str.isdigit`` also passes "\u00b2",
#: which ``float`` refuses).
_DELAY_SECONDS = re.compile(r"[0-9]{1,9}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class GatewayResponseError(Exception):
    """The gateway answered with a problem (``problem`` holds its JSON) or an unusable body."""

    def __init__(self, status: int, problem: dict[str, Any] | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem or {}

    @property
    def code(self) -> str | None:
        value = self.problem.get("code")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class ContextHeaders:
    """Why the call is made and for whom: the lawful basis, purpose and officer."""

    legal_basis: str
    purpose: str
    officer: str

    def as_headers(self) -> dict[str, str]:
        return {
            "MAPPA-Legal-Basis": self.legal_basis,
            "MAPPA-Purpose": self.purpose,
            "MAPPA-Officer": self.officer,
        }


@dataclass(frozen=True)
class Opened:
    """An opened answer: the body, the gateway's JWS (evidence) and the HTTP response."""

    body: dict[str, Any]
    jws: str
    response: httpx.Response


class GatewayClient:
    def __init__(
        self,
        identity: AgencyIdentity,
        issuer: str,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        dpop_key: ECKey | None = None,
        max_retries: int = 3,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        mutual_tls: bool = False,
        jwks_refetch_every: dt.timedelta = REFETCH_EVERY,
    ) -> None:
        self.identity = identity
        #: Authenticate with the client certificate of ``http``'s TLS configuration
        #: (tls_client_auth) and use certificate-bound tokens: no assertion, no DPoP proofs.
        self.mutual_tls = mutual_tls
        self.issuer = issuer.rstrip("/")
        self.http = http
        self.clock = clock
        self.dpop_key = dpop_key or ECKey.generate_key("P-256", private=True)
        #: 429/503 with Retry-After: how often to retry, and the longest wait honoured.
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self._token: str | None = None
        self._token_expires: dt.datetime | None = None
        #: The gateway's keys as last fetched.
        self._gateway_keys: KeySet | None = None
        self._jwks = GatewayJwks(
            f"{self.issuer}/.well-known/jwks.json", refetch_every=jwks_refetch_every, http=http
        )

    # -- authentication ---------------------------------------------------------------------

    def _assertion(self) -> str:
        now = int(self.clock().timestamp())
        claims = {
            "iss": self.identity.agency_id,
            "sub": self.identity.agency_id,
            "aud": self.issuer,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        header = {"alg": SIGN_ALG, "kid": self.identity.signing_key.kid, "typ": "JWT"}
        return jws.serialize_compact(
            header, json.dumps(claims), self.identity.signing_key, registry=_SIGN_REGISTRY
        )

    def dpop_proof(self, method: str, url: str, token: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method.upper(),
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(self.clock().timestamp()),
        }
        if token is not None:
            claims["ath"] = _b64(hashlib.sha256(token.encode()).digest())
        header = {"typ": "dpop+jwt", "alg": SIGN_ALG, "jwk": self.dpop_key.as_dict(private=False)}
        return jws.serialize_compact(
            header, json.dumps(claims), self.dpop_key, registry=_SIGN_REGISTRY
        )

    async def token(self, *, scope: str | None = None) -> str:
        """A valid access token, fetched or renewed when it is within 30 s of expiry."""
        now = self.clock()
        if self._token and self._token_expires and now < self._token_expires - RENEW_BEFORE:
            return self._token
        url = f"{self.issuer}/oauth/token"
        form = {"grant_type": "client_credentials"}
        headers: dict[str, str] = {}
        if self.mutual_tls:
            form["client_id"] = self.identity.agency_id
        else:
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self._assertion()
            headers["DPoP"] = self.dpop_proof("POST", url)
        if scope:
            form["scope"] = scope
        response = await self.http.post(url, data=form, headers=headers)
        if response.status_code != 200:
            raise GatewayResponseError(response.status_code, _problem(response), "token refused")
        answer = response.json()
        expected = "Bearer" if self.mutual_tls else "DPoP"
        if answer.get("token_type") != expected:
            raise GatewayResponseError(
                200, None, f"the gateway issued a token that is not {expected}"
            )
        self._token = str(answer["access_token"])
        self._token_expires = now + dt.timedelta(seconds=int(answer["expires_in"]))
        return self._token

    def _authorization(self, method: str, url: str, token: str) -> dict[str, str]:
        """The headers that present ``token``: with a fresh DPoP proof, or (mutual TLS) as
        Bearer, the certificate on the connection being its proof."""
        if self.mutual_tls:
            return {"Authorization": f"Bearer {token}"}
        return {"Authorization": f"DPoP {token}", "DPoP": self.dpop_proof(method, url, token)}

    # -- sealing ----------------------------------------------------------------------------

    async def gateway_keys(self, *, refresh: bool = False) -> KeySet:
        """The gateway's keys: fetched the first time; with ``refresh``, fetched again unless
        the last fetch is less than ``jwks_refetch_every`` old (after a compromise, say)."""
        if self._gateway_keys is None or refresh:
            self._gateway_keys = await self._jwks.refresh(self.clock())
        return self._gateway_keys

    async def seal(self, body: dict[str, Any]) -> str:
        """Sign ``body`` as a SignedBody addressed to the gateway, then encrypt it to its
        current encryption key."""
        signed = SignedBody.wrap(
            body, iss=self.identity.agency_id, aud=self.issuer, now=self.clock()
        )
        header = {"alg": SIGN_ALG, "kid": self.identity.signing_key.kid, "typ": BODY_TYP}
        inner = jws.serialize_compact(
            header, signed.model_dump_json(), self.identity.signing_key, registry=_SIGN_REGISTRY
        )
        recipient = _current_encryption_key(await self.gateway_keys())
        jwe_header = {"alg": ENC_ALG, "enc": ENC, "cty": "JWT", "kid": recipient.kid}
        return jwe.encrypt_compact(jwe_header, inner, recipient, registry=_JWE_REGISTRY)

    async def _key_withdrawn(self, response: httpx.Response, sealed_to: str) -> bool:
        """Whether ``response`` refuses a body sealed to ``sealed_to`` because the gateway no
        longer holds that key: 400 ``unreadable_body`` (which it answers for any body it cannot
        open), and ``sealed_to`` gone from its keys fetched again (at most once per
        ``jwks_refetch_every``; a fetch that fails, or none due yet, says it is not gone)."""
        problem = _problem(response) if response.status_code == 400 else None
        if problem is None or problem.get("code") != UnreadableBody.code:
            return False
        try:
            self._gateway_keys = await self._jwks.refresh(self.clock())
        except KeysUnavailable:
            return False
        return all(key.kid != sealed_to for key in self._gateway_keys.keys)

    async def open(self, compact: str) -> tuple[SignedPush, str]:
        """Decrypt with the agency's key, verify the gateway's signature and the addressing.

        The key is the one the JWE's ``kid`` names, current or previous (a rotation not yet
        finished); a kid the agency does not hold, or none, is
        :class:`adapters.identity.UnknownEncryptionKey`.

        An answer or a pulled message: a message's ``kind`` (and its id, ``jti``) are signed
        in it; act on those, not on the inbox listing's."""
        inner = self.identity.decrypt(compact).decode("ascii")
        kid = signing_kid(inner, BODY_TYP)
        self._gateway_keys = await self._jwks.keys_naming(kid, self._gateway_keys, self.clock())
        try:
            key = self._gateway_keys.get_by_kid(kid)
        except InvalidKeyIdError as exc:
            raise BadSignatureError("signed by a key the gateway does not publish") from exc
        verified = jws.deserialize_compact(inner, key, registry=_SIGN_REGISTRY)
        signed = SignedPush.model_validate_json(verified.payload)
        if signed.aud != self.identity.agency_id or signed.iss != self.issuer:
            raise GatewayResponseError(0, None, "the sealed answer is not addressed to this agency")
        return signed, inner

    # -- back-pressure ----------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        token: str,
        content: str | None,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        """Send; on 429 or 503 with a ``Retry-After`` of at most ``max_retry_after`` seconds,
        wait that long and send again (the same body and Idempotency-Key, a fresh DPoP proof),
        up to ``max_retries`` times. Anything else, or a longer wait, goes back to the caller."""
        for attempt in range(self.max_retries + 1):
            response = await self.http.request(
                method, url, content=content, headers=headers, params=params
            )
            if response.status_code not in (429, 503) or attempt == self.max_retries:
                return response
            wait = _retry_after(response)
            if wait is None or wait > self.max_retry_after:
                return response
            await self.sleep(wait)
            headers = {**headers, **self._authorization(method, url, token)}
        return response

    # -- calls ------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        context: ContextHeaders,
        *,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        params: Mapping[str, str] | None = None,
        read: bool = False,
    ) -> Opened | httpx.Response:
        """One protected call; a sealed answer is opened, anything else returned as it is.

        A body is sealed, with ``idempotency_key`` (a fresh one if none is given) unless the
        call is a ``read`` whose question travels in the body (a lookup)."""
        token = await self.token()
        url = f"{self.issuer}{path}"
        headers = {**self._authorization(method, url, token), **context.as_headers()}
        content: str | None = None
        sealed_to: str | None = None
        if body is not None:
            content = await self.seal(dict(body))
            sealed_to = _recipient_kid(content)
            headers["Content-Type"] = JOSE_MEDIA_TYPE
            if not read:
                headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        response = await self._request(method, url, token, content, headers, params)
        if sealed_to is not None and await self._key_withdrawn(response, sealed_to):
            # Once more, sealed to the key current now, with the same Idempotency-Key: the
            # gateway could not open this body, but an earlier try inside _request (after a 503
            # with Retry-After) may have been written; the request digest covers the business
            # body, not the seal, so the same key then replays that answer, never writes twice.
            content = await self.seal(dict(body or {}))
            headers = {**headers, **self._authorization(method, url, token)}
            response = await self._request(method, url, token, content, headers, params)
        if response.status_code >= 400:
            raise GatewayResponseError(
                response.status_code, _problem(response), f"{method} {path} refused"
            )
        if response.headers.get("content-type", "").startswith(JOSE_MEDIA_TYPE):
            signed, evidence = await self.open(response.text)
            return Opened(signed.body, evidence, response)
        return response

    async def lookup_nominal(
        self, context: ContextHeaders, identifier: Mapping[str, str]
    ) -> dict[str, Any]:
        """The nominal with ``identifier`` (one of ``pnc``, ``crn``, ``visor``) as the gateway
        shows it to this agency; GatewayResponseError 404 if it has none this agency may know."""
        if len(identifier) != 1 or not set(identifier) <= IDENTIFIER_KINDS:
            raise ValueError("a lookup names exactly one of pnc, crn or visor")
        answer = await self.call("POST", LOOKUP_PATH, context, body=identifier, read=True)
        if not isinstance(answer, Opened) or not isinstance(answer.body.get("id"), str):
            raise GatewayResponseError(0, None, "the lookup's answer names no nominal")
        return answer.body

    async def _find(
        self, context: ContextHeaders, identifiers: Mapping[str, str]
    ) -> dict[str, Any]:
        """The nominal found by the first of ``identifiers`` the gateway knows it by."""
        missing: GatewayResponseError | None = None
        for kind, value in identifiers.items():
            try:
                return await self.lookup_nominal(context, {kind: value})
            except GatewayResponseError as exc:
                if exc.status != 404:
                    raise
                missing = exc
        assert missing is not None  # an Outbound's lookup names at least one identifier
        raise missing

    async def send(self, outbound: Outbound, context: ContextHeaders) -> Opened | httpx.Response:
        """Make an adapter's call, looking the nominal up first when the call needs it."""
        path, key = outbound.path, outbound.idempotency_key
        if outbound.lookup is not None:
            found = await self._find(context, outbound.lookup)
            path, key = outbound.resolved(str(found["id"]))
        return await self.call(
            outbound.method, path, context, body=outbound.body, idempotency_key=key
        )


def _current_encryption_key(keys: KeySet) -> Key:
    """The gateway's current ECDH-ES encryption key: the first its JWKS lists, since it lists
    each purpose's usable keys newest first (:meth:`keys.ring.KeyRing.usable`)."""
    for key in keys.keys:
        if key.get("use") == "enc" and key.get("alg") == ENC_ALG:
            return key
    raise GatewayResponseError(0, None, "the gateway publishes no ECDH-ES encryption key")


def _recipient_kid(sealed: str) -> str | None:
    """The kid a sealed body's JWE header names (the gateway key it is encrypted to), if any."""
    try:
        return signing_kid(sealed) or None
    except MalformedSignature:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the delta form; an HTTP date is not honoured)."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if _DELAY_SECONDS.fullmatch(value) else None


def _problem(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
