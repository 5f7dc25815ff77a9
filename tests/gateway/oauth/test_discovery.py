"""Discovery (RFC 8414), the gateway's JWKS, and the mapping of Authlib's errors."""

from __future__ import annotations

import inspect

import httpx
import pytest
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749 import errors as oauth_errors

from gateway import errors
from gateway.oauth.server import OAUTH_ERROR_MAP, translate_oauth_error
from tests.gateway.oauth.support import ISSUER, AgencyClient


async def test_metadata_names_issuer_endpoints_and_algorithms(http: httpx.AsyncClient) -> None:
    """RFC 8414 metadata: private_key_jwt only, ES256 and EdDSA for assertions and DPoP."""
    meta = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert meta["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert meta["token_endpoint_auth_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert meta["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert meta["grant_types_supported"] == ["client_credentials"]


async def test_jwks_holds_public_keys_only_each_with_kid_use_alg(
    http: httpx.AsyncClient,
) -> None:
    """The published keys have kid, use and alg, and no private member."""
    keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
    assert keys
    for key in keys:
        assert {"kid", "use", "alg"} <= set(key)
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)


async def test_issued_token_verifies_with_the_published_jwks(
    http: httpx.AsyncClient, police: AgencyClient
) -> None:
    """A resource server could check our tokens from the JWKS alone (at+jwt, ES256, kid)."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    token = await police.token(http)
    keys = KeySet.import_key_set((await http.get("/.well-known/jwks.json")).json())
    decoded = jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    claims = decoded.claims
    assert claims["client_id"] == claims["sub"] == "police-avon"
    assert claims["aud"] == ISSUER + "/v1"
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["cnf"]["jkt"] == police.dpop_key.thumbprint()
    assert claims["scope"] == "case:read case:write"
    assert {claims["agency_type"], claims["role"], claims["area"]} == {
        "police",
        "responsible_authority",
        "avon-somerset",
    }


async def test_token_request_may_narrow_scope(
    http: httpx.AsyncClient, police: AgencyClient
) -> None:
    """A registered subset of scopes is granted as asked."""
    response = await police.token_response(http, scope="case:read")
    assert response.status_code == 200
    assert response.json()["scope"] == "case:read"


async def test_eddsa_agency_gets_a_token(http: httpx.AsyncClient, housing: AgencyClient) -> None:
    """EdDSA (Ed25519) client assertions are accepted as well as ES256."""
    token = await housing.token(http)
    response = await http.get("/v1/whoami", headers=housing.resource_headers(token))
    assert response.status_code == 200
    assert response.json()["agency_type"] == "housing"


def _authlib_error_classes() -> list[type[OAuth2Error]]:
    return [
        cls
        for _, cls in inspect.getmembers(oauth_errors, inspect.isclass)
        if issubclass(cls, OAuth2Error)
    ]


@pytest.mark.parametrize("cls", _authlib_error_classes(), ids=lambda c: c.__name__)
def test_every_authlib_error_is_mapped_explicitly(cls: type[OAuth2Error]) -> None:
    """Each Authlib OAuth2Error class has its own entry, so an upgrade adding one is noticed."""
    assert cls in OAUTH_ERROR_MAP
    try:
        instance = cls()
    except TypeError:
        instance = cls("x")  # UnsupportedGrantTypeError and friends take the offending value
    translated = translate_oauth_error(instance)
    assert isinstance(translated, errors.GatewayError)
    assert "reason" in translated.diagnostics
