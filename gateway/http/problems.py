"""Every error becomes an RFC 9457 ``application/problem+json`` response here, and only here.

The body carries ``type``, ``title``, ``status``, a stable machine ``code`` and the
``request_id``; ``detail`` only where it helps the caller fix its own request. Nothing from an
exception's diagnostics, and no traceback, ever leaves through this module.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway import errors
from gateway.logs import get_logger

__all__ = [
    "PROBLEM_JSON",
    "STATUS",
    "install",
    "openapi_problem",
    "openapi_problems",
    "problem_body",
    "problem_response",
    "status_for",
]

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://mappa-gateway.invalid/problems/"

#: The one place that knows which HTTP status each error class means (most specific first).
STATUS: dict[type[errors.GatewayError], int] = {
    errors.PayloadTooLarge: 413,
    errors.HeadersTooLarge: 431,
    errors.UnsupportedMediaType: 415,
    errors.ValidationFailed: 422,
    errors.IdempotencyConflict: 422,
    errors.InvalidOAuthRequest: 400,
    errors.BadRequest: 400,
    errors.InvalidClient: 401,
    errors.InvalidDPoPProof: 401,
    errors.InvalidToken: 401,
    errors.AuthenticationFailed: 401,
    errors.AccessDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.RateLimited: 429,
    errors.Unavailable: 503,
    errors.GatewayError: 500,
}

_STARLETTE_CODES = {
    404: ("not_found", "No such resource"),
    405: ("method_not_allowed", "This method is not allowed here"),
    406: ("not_acceptable", "No acceptable representation"),
}

log = get_logger("gateway.problems")

#: RFC 9457 problem details as this module writes them, for the OpenAPI document.
_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "code", "request_id"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "Stable, machine-readable: act on this"},
        "request_id": {"type": ["string", "null"]},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Where a body failed validation (never what it held)",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
#: The refusals every API route may answer, and those only a route with a sealed body may
#: (each with its codes; docs/api.md, Errors, has them all).
_REFUSALS = {
    400: "A context header, query parameter or path id is malformed (invalid_context, "
    "invalid_parameter, bad_header)",
    401: "The token or DPoP proof is refused (invalid_token, invalid_dpop_proof)",
    403: "The legal basis, purpose or scope does not allow this call (lawful_basis_refused, "
    "insufficient_scope, forbidden)",
    404: "No such resource, or one the caller may not know of (not_found): the same answer",
    429: "Over the agency's quota (rate_limited; Retry-After says when to try again)",
    503: "Nothing was released or stored: the store, the audit log or a key is unavailable "
    "(store_unavailable, audit_unavailable, keys_unavailable, recipient_key_unavailable)",
}
_BODY_REFUSALS = {
    400: "The sealed body cannot be opened or verified (unreadable_body, malformed_body, "
    "body_too_deep), the Idempotency-Key is missing (idempotency_key_missing), or a context "
    "header, query parameter or path id is malformed (invalid_context, invalid_parameter)",
    409: "The change conflicts with the resource's state (conflict)",
    413: "The body is larger than the gateway accepts (payload_too_large)",
    415: "The body is not application/jose (unsupported_media_type)",
    422: "The body inside the seal fails the contract (validation_failed), or the "
    "Idempotency-Key was used for another request (idempotency_key_reused)",
}


def openapi_problem(description: str) -> dict[str, Any]:
    """The OpenAPI response of one more problem a route may answer (beside `openapi_problems`)."""
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM}}}


def openapi_problems(*, body: bool = False, query: bool = False) -> dict[int | str, Any]:
    """The OpenAPI ``responses`` of the problems a route may answer: those of every API route,
    those of a sealed body (``body``), a 422 for query parameters FastAPI validates (``query``),
    and a default. A 422 or a default of the route's own also keeps FastAPI from describing its
    HTTPValidationError, which the gateway never answers (:func:`_on_validation_error`)."""
    refusals = {**_REFUSALS, **_BODY_REFUSALS} if body else dict(_REFUSALS)
    if query and not body:
        refusals[422] = "A query parameter fails validation (validation_failed)"
    problems: dict[int | str, Any] = {
        status: openapi_problem(text) for status, text in sorted(refusals.items())
    }
    problems["default"] = openapi_problem(
        "Any other problem (internal_error): nothing was released or stored"
    )
    return problems


def status_for(exc: errors.GatewayError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _request_id(scope_or_request: Any) -> str | None:
    state = scope_or_request.get("state") if isinstance(scope_or_request, dict) else None
    if state is None and hasattr(scope_or_request, "scope"):
        state = scope_or_request.scope.get("state")
    return (state or {}).get("request_id")


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    request_id: str | None,
    detail: str | None = None,
    errors_: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
        "request_id": request_id,
    }
    if detail:
        body["detail"] = detail
    if errors_:
        body["errors"] = errors_
    return body


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode(),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def gateway_problem(exc: errors.GatewayError, request_id: str | None) -> Response:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.AuthenticationFailed):
        headers["WWW-Authenticate"] = getattr(
            exc, "www_authenticate", 'DPoP algs="ES256 EdDSA", error="invalid_token"'
        )
    body = problem_body(
        status=status,
        code=exc.code,
        title=exc.title,
        request_id=request_id,
        detail=exc.detail,
        errors_=exc.errors,
    )
    oauth_error = getattr(exc, "oauth_error", None)
    if isinstance(oauth_error, str):
        # RFC 6749 section 5.2 / RFC 6750 section 3: OAuth clients read ``error``.
        body["error"] = oauth_error
    if status >= 500:
        log.warning("request_failed", code=exc.code, status=status)
    return problem_response(status, body, headers)


async def _on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.GatewayError)
    return gateway_problem(exc, _request_id(request))


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Say where and what kind of problem, never echo the offending input back.
    details = [
        {"loc": [str(p) for p in err.get("loc", ())], "type": str(err.get("type", ""))}
        for err in exc.errors()[:20]
    ]
    return gateway_problem(errors.ValidationFailed(errors=details), _request_id(request))


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _STARLETTE_CODES.get(exc.status_code, ("http_error", "The request failed"))
    body = problem_body(
        status=exc.status_code, code=code, title=title, request_id=_request_id(request)
    )
    return problem_response(exc.status_code, body, dict(exc.headers or {}))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``. Unexpected exceptions are the edge middleware's job, so
    that no traceback text reaches a log handler we do not control."""
    app.add_exception_handler(errors.GatewayError, _on_gateway_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
