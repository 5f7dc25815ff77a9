"""The gateway's exceptions: one tree, each class with a stable machine ``code``.

::

    GatewayError
    ├── BadRequest                 malformed or unacceptable input (nothing is stored)
    │   ├── MalformedBody            not parseable: invalid JSON, invalid UTF-8, NaN, huge numbers
    │   ├── BodyTooDeep              JSON nested beyond the configured depth
    │   ├── ValidationFailed         well-formed but wrong: unknown fields, wrong types, bad enums
    │   ├── UnsupportedMediaType     the Content-Type is not the one this resource takes
    │   ├── PayloadTooLarge          the body exceeds the limit (refused before it is all read)
    │   ├── HeadersTooLarge          request headers exceed the limit
    │   ├── BadHeader                a header is malformed (injection, bad context header)
    │   │   ├── InvalidContext         MAPPA-Legal-Basis / -Purpose / -Officer missing or malformed
    │   │   └── IdempotencyKeyMissing  a write without a well-formed Idempotency-Key
    │   ├── InvalidParameter         a query parameter is unknown, repeated or malformed
    │   ├── IdempotencyConflict      an Idempotency-Key reused with another body
    │   ├── UnreadableBody           an application/jose body that does not open (one opaque error)
    │   └── InvalidOAuthRequest      a token request that breaks RFC 6749 (invalid_request)
    │       ├── UnsupportedGrantType   grant_type other than client_credentials
    │       ├── UnauthorizedClient     the client may not use this grant
    │       └── InvalidScope           a scope the agency is not registered for
    ├── AuthenticationFailed       no or bad credentials (token, DPoP proof, client assertion)
    │   ├── InvalidClient            client assertion refused (RFC 7523: key, claims, replay)
    │   ├── InvalidDPoPProof         DPoP proof missing, malformed, replayed or for another key
    │   └── InvalidToken             access token missing, malformed, expired, or agency suspended
    ├── AccessDenied               authenticated, but this endpoint is not for this caller
    │   ├── LawfulBasisRefused       no, unknown or unfitting legal basis / purpose for this caller
    │   ├── InsufficientScope        the access token lacks the scope this endpoint needs
    │   └── CsrfRejected             a console form without its session's CSRF token
    ├── NotFound                   no such resource, or one the caller may not know of
    ├── Conflict                   the resource changed or exists
    ├── RateLimited                the caller is over its quota
    ├── InternalError              a bug: the caller learns nothing more
    └── Unavailable                the gateway cannot serve safely right now
        ├── RecipientKeyUnavailable  no usable encryption key for the recipient: nothing is sent
        ├── RedactionFailed          redaction could not complete: nothing is released
        ├── StoreUnavailable         the database cannot be reached or written
        ├── KeysUnavailable          the gateway's own key store does not load (a damaged file)
        ├── AuditUnavailable         the audit entry cannot be written, so nothing is released
        ├── CaseDataUnreadable       a sealed case-data column does not open (key or tampering)
        └── AuditLogInconsistent     the stored audit log does not hold together (see the verifier)

What the caller sees is ``code`` and the class's public ``title``; ``detail`` is shown only where
it helps the caller fix its own request and never carries data from the store. ``diagnostics``
carries the full reason for the audit log and is never sent outward. HTTP status codes live in
:mod:`gateway.http.problems`, nowhere else.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AccessDenied",
    "AuditLogInconsistent",
    "AuditUnavailable",
    "AuthenticationFailed",
    "BadHeader",
    "BadRequest",
    "BodyTooDeep",
    "CaseDataUnreadable",
    "Conflict",
    "CsrfRejected",
    "GatewayError",
    "HeadersTooLarge",
    "IdempotencyConflict",
    "IdempotencyKeyMissing",
    "InsufficientScope",
    "InternalError",
    "InvalidClient",
    "InvalidContext",
    "InvalidDPoPProof",
    "InvalidOAuthRequest",
    "InvalidParameter",
    "InvalidScope",
    "InvalidToken",
    "KeysUnavailable",
    "LawfulBasisRefused",
    "MalformedBody",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RecipientKeyUnavailable",
    "RedactionFailed",
    "StoreUnavailable",
    "UnauthorizedClient",
    "Unavailable",
    "UnreadableBody",
    "UnsupportedGrantType",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""

    code: ClassVar[str] = "gateway_error"
    title: ClassVar[str] = "The request could not be completed"

    def __init__(
        self,
        detail: str | None = None,
        *,
        diagnostics: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.diagnostics: dict[str, Any] = dict(diagnostics or {})
        self.errors = errors

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r})"


class BadRequest(GatewayError):
    code = "bad_request"
    title = "The request is not acceptable"


class MalformedBody(BadRequest):
    code = "malformed_body"
    title = "The body could not be parsed"


class BodyTooDeep(BadRequest):
    code = "body_too_deep"
    title = "The body is nested too deeply"


class ValidationFailed(BadRequest):
    code = "validation_failed"
    title = "The body or parameters are not valid"


class UnsupportedMediaType(BadRequest):
    code = "unsupported_media_type"
    title = "This resource does not accept that content type"


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    title = "The body is larger than this gateway accepts"


class HeadersTooLarge(BadRequest):
    code = "headers_too_large"
    title = "The request headers are larger than this gateway accepts"


class BadHeader(BadRequest):
    code = "bad_header"
    title = "A request header is malformed"


class InvalidParameter(BadRequest):
    code = "invalid_parameter"
    title = "A query parameter is unknown, repeated or malformed"


class IdempotencyConflict(BadRequest):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


class UnreadableBody(BadRequest):
    code = "unreadable_body"
    title = "The sealed body could not be opened"


class InvalidContext(BadHeader):
    code = "invalid_context"
    title = "MAPPA-Legal-Basis, MAPPA-Purpose and MAPPA-Officer must be present and well formed"


class IdempotencyKeyMissing(BadHeader):
    code = "idempotency_key_missing"
    title = "Every write carries one Idempotency-Key of 1-128 letters, digits and . _ : -"


class InvalidOAuthRequest(BadRequest):
    """A token request that breaks RFC 6749; ``oauth_error`` is the RFC 6749 ``error`` value."""

    code = "invalid_request"
    title = "The token request is malformed"
    oauth_error: ClassVar[str] = "invalid_request"


class UnsupportedGrantType(InvalidOAuthRequest):
    code = "unsupported_grant_type"
    title = "Only grant_type=client_credentials is supported"
    oauth_error = "unsupported_grant_type"


class UnauthorizedClient(InvalidOAuthRequest):
    code = "unauthorized_client"
    title = "This client may not use this grant"
    oauth_error = "unauthorized_client"


class TokenRequestProofRefused(InvalidOAuthRequest):
    """A DPoP proof refused at the token endpoint: RFC 9449 section 5 answers it as an RFC 6749
    section 5.2 error (400, ``error`` = ``invalid_dpop_proof``), not with a 401 challenge."""

    code = "invalid_dpop_proof"
    title = "The DPoP proof is missing or not acceptable"
    oauth_error = "invalid_dpop_proof"


class InvalidScope(InvalidOAuthRequest):
    code = "invalid_scope"
    title = "A requested scope is not registered for this agency"
    oauth_error = "invalid_scope"


class AuthenticationFailed(GatewayError):
    """No or bad credentials. ``www_authenticate`` is the challenge sent with the 401."""

    code = "unauthenticated"
    title = "Authentication failed"
    oauth_error: ClassVar[str | None] = None

    @property
    def www_authenticate(self) -> str:
        challenge = 'DPoP algs="ES256 EdDSA"'
        if self.oauth_error:
            challenge += f', error="{self.oauth_error}"'
        return challenge


class InvalidClient(AuthenticationFailed):
    code = "invalid_client"
    title = "Client authentication failed"
    oauth_error = "invalid_client"


class InvalidDPoPProof(AuthenticationFailed):
    code = "invalid_dpop_proof"
    title = "The DPoP proof is missing or not acceptable"
    oauth_error = "invalid_dpop_proof"


class InvalidToken(AuthenticationFailed):
    code = "invalid_token"
    title = "The access token is missing or not acceptable"
    oauth_error = "invalid_token"


class InvalidCertificateBoundToken(InvalidToken):
    """A certificate-bound token (RFC 8705) refused: the same problem as any invalid token, with
    the RFC 6750 ``Bearer`` challenge its scheme calls for instead of DPoP's. A variant of
    :class:`InvalidToken` with its code, so (like :class:`TokenRequestProofRefused`) it is not
    in ``__all__``, which lists one class per code."""

    @property
    def www_authenticate(self) -> str:
        return f'Bearer error="{self.oauth_error}"'


class AccessDenied(GatewayError):
    code = "forbidden"
    title = "This caller may not use this endpoint"


class LawfulBasisRefused(AccessDenied):
    code = "lawful_basis_refused"
    title = "The stated legal basis and purpose do not allow this request"


class InsufficientScope(AccessDenied):
    code = "insufficient_scope"
    title = "The access token does not carry the scope this endpoint needs"


class CsrfRejected(AccessDenied):
    code = "csrf_rejected"
    title = "The form is missing its CSRF token, or the token is not this session's"


class NotFound(GatewayError):
    code = "not_found"
    title = "No such resource"


class Conflict(GatewayError):
    code = "conflict"
    title = "The resource is in a state that does not allow this"


class RateLimited(GatewayError):
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_after = retry_after


class InternalError(GatewayError):
    code = "internal_error"
    title = "The gateway failed to handle the request"


class Unavailable(GatewayError):
    code = "unavailable"
    title = "The gateway cannot serve this request safely right now"


class RecipientKeyUnavailable(Unavailable):
    code = "recipient_key_unavailable"
    title = "The recipient has no usable encryption key; nothing was sent"


class RedactionFailed(Unavailable):
    code = "redaction_failed"
    title = "The response could not be prepared safely; nothing was released"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class KeysUnavailable(Unavailable):
    """The gateway's key store does not load a ring it needs (a damaged or foreign key file, no
    current key, the KEK): the gateway's fault, never the caller's."""

    code = "keys_unavailable"


class AuditUnavailable(Unavailable):
    code = "audit_unavailable"


class CaseDataUnreadable(Unavailable):
    code = "case_data_unreadable"


class AuditLogInconsistent(Unavailable):
    code = "audit_log_inconsistent"
