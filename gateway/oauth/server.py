"""Authlib's authorization-server core, adapted: client credentials + private_key_jwt + DPoP.

Authlib's :class:`~authlib.oauth2.rfc6749.AuthorizationServer` dispatches the grant, runs the
registered client-authentication method and shapes the token response; this module plugs in

- :class:`TokenRequest`, an ``OAuth2Request`` built from what the async endpoint already read
  (the form, the headers, the claimed client's :class:`~gateway.oauth.clients.ClientRecord`), so
  nothing in here does I/O and it can run in a worker thread;
- two client-authentication methods: ``private_key_jwt`` (RFC 7523, FAPI 2.0), and
  ``tls_client_auth`` (RFC 8705 section 2.1) for an agency that registered a certificate subject
  and CA, with the certificate a trusted proxy forwarded (:mod:`gateway.oauth.mtls`);
- :class:`DPoPClientCredentialsGrant`, which also verifies the DPoP proof and mints an RFC 9068
  token bound to its key; a ``tls_client_auth`` client that sends no proof gets a token bound
  to its certificate instead (``cnf.x5t#S256``, ``token_type`` ``Bearer``);
- :func:`translate_oauth_error`: every Authlib ``OAuth2Error`` becomes the most specific
  :class:`~gateway.errors.GatewayError`, so the problem+json module alone answers.

Spending the ``jti`` values, storing the issued-token record and auditing are the async
endpoint's job (:mod:`gateway.oauth.endpoint`), in one transaction after this core succeeds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749 import errors as oauth_errors
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request

from gateway import errors
from gateway.oauth.assertion import ASSERTION_TYPE, VerifiedAssertion, verify_assertion
from gateway.oauth.clients import AUTH_METHOD, ClientRecord
from gateway.oauth.dpop import DPoPProof, verify_proof
from gateway.oauth.jose import Compact, JoseRefused
from gateway.oauth.mtls import AUTH_METHOD as TLS_AUTH_METHOD
from gateway.oauth.mtls import CertificateRefused, ClientCertificate, verify_client_certificate
from gateway.oauth.signing import TokenSigner
from gateway.oauth.tokens import AccessToken, issue_access_token
from gateway.settings import Settings

__all__ = [
    "OAUTH_ERROR_MAP",
    "GatewayAuthorizationServer",
    "TokenRequest",
    "TokenResult",
    "translate_oauth_error",
]


@dataclass(frozen=True, slots=True)
class TokenResult:
    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]


class TokenRequest(OAuth2Request):  # type: ignore[misc]
    """A token request as the async endpoint read it, plus what it preloaded."""

    def __init__(
        self,
        *,
        uri: str,
        headers: dict[str, str],
        form: dict[str, str],
        client: ClientRecord | None,
        assertion: Compact | None,
        dpop_proof: str | None,
        now: dt.datetime,
        certificate: ClientCertificate | None = None,
    ) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form
        self.gateway_client = client
        self.assertion = assertion
        self.dpop_proof = dpop_proof
        self.now = now
        #: The client certificate a trusted proxy forwarded (None when none, or untrusted).
        self.certificate = certificate
        self.verified_assertion: VerifiedAssertion | None = None
        #: Set by Authlib to the method that authenticated the client.
        self.auth_method: str | None = None
        self.dpop: DPoPProof | None = None
        #: The certificate the token is bound to, when it is bound to one (no DPoP proof).
        self.bound_certificate: ClientCertificate | None = None
        self.issued: AccessToken | None = None

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


def _refused(cls: type[errors.GatewayError], reason: str) -> errors.GatewayError:
    return cls(diagnostics={"reason": reason})


def _claimed_client(request: TokenRequest) -> ClientRecord:
    """The registered, active client the request claims to be (not yet authenticated)."""
    if "client_secret" in request.form:
        raise _refused(errors.InvalidClient, "client_secret_refused")
    client = request.gateway_client
    if client is None:
        raise _refused(errors.InvalidClient, "client_unknown")
    if not client.active:
        raise _refused(errors.InvalidClient, "agency_suspended")
    return client


class DPoPClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """``client_credentials`` that needs ``private_key_jwt`` and a DPoP proof, or
    ``tls_client_auth`` and (optionally) a DPoP proof, and issues at+jwt."""

    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD, TLS_AUTH_METHOD]  # noqa: RUF012 - Authlib's

    request: TokenRequest
    server: GatewayAuthorizationServer

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: ClientRecord = self.request.client
        requested = (self.request.payload.scope or "").split()
        if any(scope not in client.scopes for scope in requested):
            raise oauth_errors.InvalidScopeError()
        settings = self.server.settings
        if self.request.auth_method == TLS_AUTH_METHOD and self.request.dpop_proof is None:
            # RFC 8705 section 3: bound to the certificate the client authenticated with.
            self.request.bound_certificate = self.request.certificate
            return
        try:
            self.request.dpop = verify_proof(
                self.request.dpop_proof,
                htm="POST",
                htu=settings.token_endpoint,
                now=self.request.now,
                max_age=settings.dpop_max_age_seconds,
                future_skew=settings.max_future_skew_seconds,
            )
        except JoseRefused as exc:
            raise _refused(errors.TokenRequestProofRefused, exc.reason) from exc

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: ClientRecord = self.request.client
        proof, certificate = self.request.dpop, self.request.bound_certificate
        assert (proof is None) != (certificate is None)
        scopes = client.get_allowed_scope(self.request.payload.scope).split()
        settings = self.server.settings
        token, described = issue_access_token(
            self.server.signer,
            issuer=settings.issuer,
            audience=settings.api_audience,
            client_id=client.client_id,
            agency_type=client.agency_type,
            role=client.role,
            area=client.area,
            scopes=scopes,
            jkt=proof.jkt if proof is not None else None,
            x5t=certificate.thumbprint if certificate is not None else None,
            now=self.request.now,
            lifetime=settings.access_token_lifetime_seconds,
        )
        self.request.issued = described
        body = {
            "access_token": token,
            "token_type": "DPoP" if proof is not None else "Bearer",
            "expires_in": settings.access_token_lifetime_seconds,
            "scope": " ".join(scopes),
        }
        self.save_token(body)
        return 200, body, list(self.TOKEN_RESPONSE_HEADER)


class GatewayAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """The Authlib server with the gateway's one grant and its two client-authentication
    methods."""

    def __init__(self, *, settings: Settings, signer: TokenSigner) -> None:
        super().__init__()
        self.settings = settings
        self.signer = signer
        self.register_grant(DPoPClientCredentialsGrant)
        self.register_client_auth_method(AUTH_METHOD, self._authenticate_private_key_jwt)
        self.register_client_auth_method(TLS_AUTH_METHOD, self._authenticate_tls_client)

    # -- Authlib framework hooks -------------------------------------------------------------
    def query_client(self, client_id: str) -> None:
        # Clients are preloaded by the async endpoint; nothing is looked up from here.
        return None

    def save_token(self, token: dict[str, Any], request: TokenRequest) -> None:
        # Persisted by the async endpoint, with the jti spends and the audit entry.
        return None

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: TokenRequest) -> TokenRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> TokenResult:
        return TokenResult(status=status, body=body, headers=list(headers))

    def handle_error_response(self, request: TokenRequest, error: OAuth2Error) -> TokenResult:
        raise translate_oauth_error(error) from error

    def issue(self, request: TokenRequest) -> TokenResult:
        """Run the token request through Authlib (synchronous: call it in a worker thread)."""
        result: TokenResult = self.create_token_response(request)
        return result

    # -- private_key_jwt ---------------------------------------------------------------------
    def _authenticate_private_key_jwt(self, query_client: Any, request: TokenRequest) -> Any:
        form = request.form
        if "client_assertion" not in form and request.certificate is not None:
            return None  # no assertion, but a certificate: tls_client_auth's turn
        if form.get("client_assertion_type") != ASSERTION_TYPE or request.assertion is None:
            raise _refused(errors.InvalidClient, "assertion_missing")
        client = _claimed_client(request)
        settings = self.settings
        try:
            request.verified_assertion = verify_assertion(
                request.assertion,
                client,
                issuer=settings.issuer,
                now=request.now,
                leeway=settings.clock_leeway_seconds,
                future_skew=settings.max_future_skew_seconds,
                max_lifetime=settings.assertion_max_lifetime_seconds,
            )
        except JoseRefused as exc:
            raise _refused(errors.InvalidClient, exc.reason) from exc
        return client

    # -- tls_client_auth (RFC 8705 section 2.1) ------------------------------------------
    def _authenticate_tls_client(self, query_client: Any, request: TokenRequest) -> Any:
        certificate = request.certificate
        if certificate is None:
            raise _refused(errors.InvalidClient, "client_cert_missing")
        client = _claimed_client(request)
        if not client.tls_client_auth:
            raise _refused(errors.InvalidClient, "tls_client_auth_not_registered")
        assert client.tls_ca_pem is not None and client.tls_subject_dn is not None
        try:
            verify_client_certificate(
                certificate,
                ca_pem=client.tls_ca_pem,
                subject_dn=client.tls_subject_dn,
                now=request.now,
            )
        except CertificateRefused as exc:
            raise _refused(errors.InvalidClient, exc.reason) from exc
        return client


#: Authlib's errors and the gateway error each becomes (the most specific class wins).
OAUTH_ERROR_MAP: dict[type[OAuth2Error], type[errors.GatewayError]] = {
    oauth_errors.InvalidClientError: errors.InvalidClient,
    oauth_errors.UnsupportedGrantTypeError: errors.UnsupportedGrantType,
    oauth_errors.UnauthorizedClientError: errors.UnauthorizedClient,
    oauth_errors.InvalidScopeError: errors.InvalidScope,
    oauth_errors.InvalidGrantError: errors.InvalidOAuthRequest,
    oauth_errors.InvalidRequestError: errors.InvalidOAuthRequest,
    oauth_errors.InsecureTransportError: errors.InvalidOAuthRequest,
    oauth_errors.UnsupportedResponseTypeError: errors.InvalidOAuthRequest,
    oauth_errors.AccessDeniedError: errors.AccessDenied,
    oauth_errors.ForbiddenError: errors.InvalidToken,
    oauth_errors.MissingAuthorizationError: errors.InvalidToken,
    oauth_errors.UnsupportedTokenTypeError: errors.InvalidToken,
    oauth_errors.MissingCodeException: errors.InvalidOAuthRequest,
    oauth_errors.MissingTokenException: errors.InvalidOAuthRequest,
    oauth_errors.MissingTokenTypeException: errors.InvalidOAuthRequest,
    oauth_errors.MismatchingStateException: errors.InvalidOAuthRequest,
    OAuth2Error: errors.InvalidOAuthRequest,
}


def translate_oauth_error(error: OAuth2Error) -> errors.GatewayError:
    """The gateway error for an Authlib error; its reason goes to diagnostics, not outward."""
    for klass in type(error).__mro__:
        target = OAUTH_ERROR_MAP.get(klass)
        if target is not None:
            return target(diagnostics={"reason": str(error.error or "oauth_error")[:64]})
    return errors.InvalidOAuthRequest(diagnostics={"reason": "oauth_error"})
