"""A real, minimal OIDC provider on 127.0.0.1 over TLS, for the console's sign-in tests.

Discovery, an authorization endpoint that signs the configured subject straight in (checking
client, redirect URI, scope and the S256 code challenge), a token endpoint (client_secret_basic,
single-use codes bound to their redirect URI and PKCE verifier) issuing ID tokens signed ES256
with joserfc, and a JWKS. ``tamper`` turns the next ID tokens hostile: wrong audience, issuer or
nonce, expired, ``alg`` none, HS256 keyed with the public key, a key not in the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.gateway.delivery.stub import make_pki

CLIENT_ID = "mappa-ig-console"
CLIENT_SECRET = "s3cret-of-the-console-client-at-the-idp"
SUBJECT = "5f1c9a7e-officer-at-idp"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class OidcProvider:
    issuer: str
    redirect_uri: str
    subject: str = SUBJECT
    tamper: str | None = None
    advertised_issuer: str | None = None
    key: ECKey = field(
        default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "idp-1"})
    )
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0
    #: More claims in the ID token (what a provider may add: groups, roles, its own names).
    extra_claims: dict[str, Any] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.advertised_issuer or self.issuer,
                "authorization_endpoint": self.issuer + "/authorize",
                "token_endpoint": self.issuer + "/token",
                "jwks_uri": self.issuer + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if (
            q.get("response_type") != "code"
            or q.get("client_id") != CLIENT_ID
            or q.get("redirect_uri") != self.redirect_uri
            or "openid" not in q.get("scope", "").split()
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or not q.get("state")
            or not q.get("nonce")
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "nonce": q["nonce"],
            "redirect_uri": q["redirect_uri"],
        }
        query = urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = self.codes.pop(str(form.get("code", "")), None)  # a code works once
        verifier = str(form.get("code_verifier", ""))
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant["redirect_uri"]
            or _b64(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(24),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant["nonce"]),
            }
        )

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": CLIENT_ID,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            **self.extra_claims,
        }
        header: dict[str, Any] = {"alg": "ES256", "kid": "idp-1", "typ": "JWT"}
        key: Any = self.key
        match self.tamper:
            case "wrong_aud":
                claims["aud"] = "another-client"
            case "wrong_iss":
                claims["iss"] = "https://evil.example"
            case "wrong_nonce":
                claims["nonce"] = "not-the-nonce-sent"
            case "no_nonce":
                del claims["nonce"]
            case "expired":
                claims["exp"], claims["iat"] = now - 600, now - 900
            case "future_iat":
                claims["iat"] = now + 3600
            case "two_audiences":
                claims["aud"] = [CLIENT_ID, "another-client"]
            case "alg_none":
                head = _b64(json.dumps({"alg": "none", "kid": "idp-1"}).encode())
                return f"{head}.{_b64(json.dumps(claims).encode())}."
            case "hs256":
                public = json.dumps(self.key.as_dict(private=False)).encode()
                header["alg"] = "HS256"
                key = OctKey.import_key(public)
                return jwt.encode(header, claims, key, algorithms=["HS256"])
            case "other_key":
                key = ECKey.generate_key("P-256", parameters={"kid": "idp-1"})
        return jwt.encode(header, claims, key)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningProvider:
    """The provider served by uvicorn with TLS in a background thread."""

    def __init__(self, directory: Path, redirect_uri: str) -> None:
        pki = make_pki(directory)
        self.ca_file = directory / "idp-ca.pem"
        self.ca_file.write_text(pki.ca_pem)
        port = _free_port()
        self.provider = OidcProvider(f"https://127.0.0.1:{port}", redirect_uri)
        config = uvicorn.Config(
            self.provider.app(),
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(pki.cert_file),
            ssl_keyfile=str(pki.key_file),
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> OidcProvider:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test OIDC provider did not start")
            time.sleep(0.02)
        return self.provider

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
