"""An agency adapter, synchronously and cheaply, for the load generator.

Per request it mints a fresh DPoP proof (``ath`` bound to the token); it fetches a token with
``private_key_jwt`` at start and again 30 s before expiry. The load generator shares the
machine's CPUs with the server it measures, so a proof is signed the lean way a compiled client
would: the header encoded once, the claims and the ES256 signature made with ``cryptography``
directly (about a third of what a general JOSE library's serialisation costs); the server
verifies it with joserfc like any other. Write bodies are sealed like
``GatewayClient.seal`` (JWS by the agency inside a JWE to the gateway) and re-sealed every two
minutes, well inside the five minutes a signed body stays fresh; each write has its own
``Idempotency-Key``, so each is a new write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwe, jws
from joserfc.jwk import ECKey, KeySet
from joserfc.jws import JWSRegistry

from adapters.identity import AgencyIdentity
from gateway.contract.envelope import BODY_TYP, SignedBody

__all__ = ["Agency", "load_state"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CONTEXT = {
    "MAPPA-Legal-Basis": "CJA2003-s325-4",
    "MAPPA-Purpose": "risk-management",
    "MAPPA-Officer": "BENCH-1",
}
_SIGN = JWSRegistry(algorithms=["ES256"])
_ENC = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"])


def load_state() -> dict[str, Any]:
    return dict(json.loads(Path(os.environ["MAPPA_BENCH_STATE"]).read_text()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Agency:
    def __init__(self, state: dict[str, Any], role: str, host: str, port: int) -> None:
        self.issuer = str(state["issuer"]).rstrip("/")
        self.identity = AgencyIdentity.load(state["agencies"][role]["dir"])
        self.base = f"http://{host}:{port}"
        self.dpop_key = ECKey.generate_key("P-256", private=True)
        self._dpop_header = json.dumps(
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.dpop_key.as_dict(private=False)}
        )
        self._dpop_signing_input = _b64(self._dpop_header.encode()) + "."
        self._dpop_private = self.dpop_key.private_key
        assert isinstance(self._dpop_private, ec.EllipticCurvePrivateKey)
        self._token = ""
        self._ath = ""
        self._expires = 0.0
        self._sealed = ""
        self._sealed_at = 0.0

    def proof(self, method: str, path: str, *, token: bool = True) -> str:
        claims: dict[str, Any] = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": self.issuer + path,
            "iat": int(time.time()),
        }
        if token:
            claims["ath"] = self._ath
        signing_input = self._dpop_signing_input + _b64(json.dumps(claims).encode())
        der = self._dpop_private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def token(self) -> str:
        if self._token and time.time() < self._expires - 30:
            return self._token
        now = int(time.time())
        assertion = jws.serialize_compact(
            {"alg": "ES256", "kid": self.identity.signing_key.kid, "typ": "JWT"},
            json.dumps(
                {
                    "iss": self.identity.agency_id,
                    "sub": self.identity.agency_id,
                    "aud": self.issuer,
                    "iat": now,
                    "exp": now + 60,
                    "jti": uuid.uuid4().hex,
                }
            ),
            self.identity.signing_key,
            registry=_SIGN,
        )
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            }
        ).encode()
        request = urllib.request.Request(
            self.base + "/oauth/token",
            data=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "DPoP": self.proof("POST", "/oauth/token", token=False),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        self._token = str(answer["access_token"])
        self._ath = _b64(hashlib.sha256(self._token.encode()).digest())
        self._expires = time.time() + int(answer["expires_in"])
        return self._token

    def seal(self, body: dict[str, Any]) -> str:
        if self._sealed and time.time() - self._sealed_at < 120:
            return self._sealed
        with urllib.request.urlopen(self.base + "/.well-known/jwks.json", timeout=30) as r:
            keys = KeySet.import_key_set(json.loads(r.read()))
        recipient = next(
            k for k in keys.keys if k.get("use") == "enc" and k.get("alg") == "ECDH-ES+A256KW"
        )
        signed = SignedBody(
            iss=self.identity.agency_id, aud=self.issuer, iat=int(time.time()), body=body
        )
        inner = jws.serialize_compact(
            {"alg": "ES256", "kid": self.identity.signing_key.kid, "typ": BODY_TYP},
            signed.model_dump_json(),
            self.identity.signing_key,
            registry=_SIGN,
        )
        self._sealed = jwe.encrypt_compact(
            {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": recipient.kid},
            inner,
            recipient,
            registry=_ENC,
        )
        self._sealed_at = time.time()
        return self._sealed

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        token = self.token()
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.base.removeprefix('http://')}",
            f"Authorization: DPoP {token}",
            f"DPoP: {self.proof(method, path)}",
            *(f"{k}: {v}" for k, v in CONTEXT.items()),
        ]
        payload = b""
        if body is not None:
            payload = self.seal(body).encode()
            lines += ["Content-Type: application/jose", f"Idempotency-Key: {uuid.uuid4()}"]
        lines.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def factory(
    role: str, method: str, body: dict[str, Any] | None
) -> Callable[..., Callable[[], bytes]]:
    def request_factory(host: str, port: int, path: str) -> Callable[[], bytes]:
        state = load_state()
        agency = Agency(state, role, host, port)
        concrete = path.format(**state)
        agency.token()
        return lambda: agency.request(method, concrete, body)

    return request_factory
