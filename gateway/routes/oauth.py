"""OAuth routes: the token endpoint, discovery (RFC 8414), the JWKS, and ``/v1/whoami``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from gateway.flow.authenticate import Caller, authenticate
from gateway.http.problems import openapi_problems
from gateway.oauth import mtls
from gateway.oauth.endpoint import handle_token_request
from gateway.oauth.jose import ALLOWED_ALGS
from gateway.state import GatewayState

__all__ = ["router"]

router = APIRouter()

_ALGS = sorted(ALLOWED_ALGS)
_TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "description": "private_key_jwt: client_assertion_type and client_assertion."
                    " tls_client_auth (RFC 8705, behind the trusted proxy): client_id and the"
                    " client certificate on the TLS connection, no assertion.",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_assertion_type": {
                            "type": "string",
                            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                        },
                        "client_assertion": {"type": "string", "description": "RFC 7523 JWT"},
                        "scope": {"type": "string"},
                        "client_id": {
                            "type": "string",
                            "description": "required for tls_client_auth",
                        },
                    },
                }
            }
        },
    },
    "parameters": [
        {
            "name": "DPoP",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "RFC 9449 DPoP proof for POST to this URL: required with"
            " private_key_jwt; with tls_client_auth, binds the token to this key instead of"
            " the certificate",
        }
    ],
}


class TokenResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    access_token: str
    token_type: str
    expires_in: int
    scope: str


class WhoAmI(BaseModel):
    """What the gateway understood of the caller: no token, no key, nothing personal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency_id: str
    agency_type: str
    role: str
    area: str
    scopes: list[str]
    officer: str
    legal_basis: str
    purpose: str


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


@router.post(
    "/oauth/token",
    tags=["authentication"],
    summary="Get a sender-constrained access token (client_credentials; private_key_jwt and"
    " DPoP, or tls_client_auth)",
    response_model=TokenResponse,
    openapi_extra=_TOKEN_FORM,
)
async def token(request: Request) -> JSONResponse:
    state = _state(request)
    if state.token_limiter is not None:
        proxies = mtls.trusted_proxies(state.settings.trusted_proxies)
        state.token_limiter.check(mtls.client_address(request, proxies))
    result = await handle_token_request(state, request)
    return JSONResponse(
        result.body,
        status_code=result.status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.get(
    "/.well-known/oauth-authorization-server",
    tags=["authentication"],
    summary="Authorization server metadata (RFC 8414)",
)
async def metadata(request: Request) -> dict[str, Any]:
    settings = _state(request).settings
    issuer = settings.issuer
    # RFC 8705 only where a TLS-terminating proxy is trusted to forward client certificates.
    with_proxy = bool(settings.trusted_proxies)
    return {
        "issuer": issuer,
        "token_endpoint": settings.token_endpoint,
        "jwks_uri": issuer.rstrip("/") + "/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": (
            ["private_key_jwt", "tls_client_auth"] if with_proxy else ["private_key_jwt"]
        ),
        "token_endpoint_auth_signing_alg_values_supported": _ALGS,
        "dpop_signing_alg_values_supported": _ALGS,
        "response_types_supported": [],
        "authorization_response_iss_parameter_supported": False,
        "tls_client_certificate_bound_access_tokens": with_proxy,
        "service_documentation": issuer.rstrip("/") + "/openapi.json",
    }


@router.get(
    "/.well-known/jwks.json",
    tags=["authentication"],
    summary="The gateway's public keys (each with kid, use and alg)",
)
async def jwks(request: Request) -> JSONResponse:
    """Access-token signing, payload signing and payload encryption keys, current and still
    overlapping previous ones: partners verify tokens and answers, and encrypt bodies, to these."""
    state = _state(request)
    keys: list[dict[str, Any]] = []
    if state.sealer is not None:
        keys = state.sealer.repository.jwks(now=state.clock())["keys"]
    elif state.token_signer is not None:
        keys = state.token_signer.public_jwks(now=state.clock())
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/v1/whoami",
    tags=["authentication"],
    summary="Check an integration: who the gateway thinks is calling, and on what basis",
    response_model=WhoAmI,
    responses=openapi_problems(),
)
async def whoami(caller: Annotated[Caller, Depends(authenticate)]) -> WhoAmI:
    return WhoAmI(
        agency_id=caller.agency_id,
        agency_type=caller.agency_type,
        role=caller.role,
        area=caller.area,
        scopes=list(caller.scopes),
        officer=caller.officer,
        legal_basis=caller.legal_basis,
        purpose=caller.purpose,
    )
