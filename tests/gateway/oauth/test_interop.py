"""Interoperability: independent JOSE implementations play the agency.

``jwcrypto`` (in process) and the npm package ``jose`` (run with Node.js against a real gateway
process) build the client assertion and the DPoP proofs from the public contract alone, get a
token and call ``GET /v1/whoami``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwcrypto import jwk, jws
from jwcrypto.common import base64url_encode

from gateway import agencies
from gateway.state import GatewayState
from gateway.store import Database
from tests.gateway.oauth.support import (
    ASSERTION_TYPE,
    CONTEXT,
    ISSUER,
    TOKEN_URL,
    WHOAMI_URL,
    Clock,
    Replica,
    replica_env,
)

NODE_DIR = Path(__file__).resolve().parents[2] / "interop" / "node"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def jwcrypto_sign(key: jwk.JWK, header: dict[str, Any], claims: dict[str, Any]) -> str:
    token = jws.JWS(json.dumps(claims))
    token.add_signature(key, alg=header["alg"], protected=json.dumps(header))
    return str(token.serialize(compact=True))


@pytest.mark.parametrize(
    ("kty", "crv", "alg"),
    [
        ("EC", "P-256", "ES256"),  # ECDSA over P-256
        ("OKP", "Ed25519", "EdDSA"),  # Ed25519
    ],
)
async def test_jwcrypto_agency_gets_a_token_and_calls_whoami(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    clock: Clock,
    kty: str,
    crv: str,
    alg: str,
) -> None:
    """An agency built on jwcrypto authenticates and makes a protected call."""
    kid = f"jwcrypto-{alg.lower()}"
    agency_key = jwk.JWK.generate(kty=kty, crv=crv, kid=kid)
    await agencies.add_agency(
        gateway_state.db,
        agency_id="yot-bristol",
        name="Bristol YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="avon-somerset",
        scopes=["case:read"],
        jwks={"keys": [json.loads(agency_key.export_public())]},
    )
    dpop_key = jwk.JWK.generate(kty="EC", crv="P-256")
    dpop_public = json.loads(dpop_key.export_public())

    def proof(htm: str, htu: str, token: str | None = None) -> str:
        claims: dict[str, Any] = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": clock.ts}
        if token:
            claims["ath"] = base64url_encode(hashlib.sha256(token.encode()).digest())
        return jwcrypto_sign(
            dpop_key, {"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop_public}, claims
        )

    assertion = jwcrypto_sign(
        agency_key,
        {"alg": alg, "kid": kid},
        {
            "iss": "yot-bristol",
            "sub": "yot-bristol",
            "aud": ISSUER,
            "iat": clock.ts,
            "exp": clock.ts + 60,
            "jti": str(uuid.uuid4()),
        },
    )
    response = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
        headers={"DPoP": proof("POST", TOKEN_URL)},
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    whoami = await http.get(
        "/v1/whoami",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": proof("GET", WHOAMI_URL, token),
            **CONTEXT,
        },
    )
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["agency_id"] == "yot-bristol"
    assert whoami.json()["officer"] == CONTEXT["MAPPA-Officer"]


def _node_ready() -> str:
    """The node binary with ``jose`` installed (npm ci), or skip (fail in CI)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if IN_CI:
            pytest.fail("Node.js and npm are required for the interop test in CI")
        pytest.skip("Node.js not installed")
    if not (NODE_DIR / "node_modules" / "jose").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return node


@pytest.mark.slow
async def test_node_jose_agency_gets_a_token_and_calls_whoami(
    sqlite_url: str, gateway_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """An agency written in JavaScript with the npm package jose works against a real process."""
    node = _node_ready()
    from joserfc.jwk import OKPKey

    key = OKPKey.generate_key("Ed25519")
    private = {**key.as_dict(private=True), "kid": "node-ed25519"}
    db = Database(sqlite_url)
    try:
        await agencies.add_agency(
            db,
            agency_id="em-provider",
            name="Electronic monitoring",
            agency_type="electronic_monitoring",
            role="duty_to_cooperate",
            area="avon-somerset",
            scopes=["case:read"],
            jwks={"keys": [{**key.as_dict(private=False), "kid": "node-ed25519"}]},
        )
    finally:
        await db.dispose()
    replica = Replica(replica_env(sqlite_url, *gateway_keys), tmp_path / "gateway.log")
    try:
        replica.wait_ready()
        process = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / "agency.mjs"),
            env={
                **os.environ,
                "GATEWAY_URL": replica.url,
                "ISSUER": ISSUER,
                "CLIENT_ID": "em-provider",
                "AGENCY_JWK": json.dumps(private),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        replica.stop()
    log = (tmp_path / "gateway.log").read_text()
    assert process.returncode == 0, stderr.decode() + log
    whoami = json.loads(stdout)
    assert whoami["agency_id"] == "em-provider"
    assert whoami["officer"] == "DC-1187"
