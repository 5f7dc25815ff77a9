"""Round trips with independent JOSE implementations, in both directions.

* jwcrypto: ECDH-ES+A256KW and RSA-OAEP-256 bodies, ES256 and EdDSA signatures, JWTs.
* python-jose: RSA-OAEP-256 with A256GCM around ES256 (it has no ECDH-ES or EdDSA).
* npm ``jose`` (Node): bodies both ways and JWTs; ``npm ci`` installs it from the lock file
  into tests/keys/node/node_modules when missing. Skipped only when node or npm is absent.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jose import jwe as pj_jwe
from jose import jws as pj_jws
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws
from jwcrypto import jwt as jc_jwt

from keys import Purpose, seal_for, sign_jwt, unseal_from, verify_jwt
from tests.keys.keys_support import Party
from tests.support import skip_or_fail_in_ci

NODE_DIR = Path(__file__).parent / "node"


# -- jwcrypto ------------------------------------------------------------------------------


def jwcrypto_seal(
    payload: bytes, signer: jc_jwk.JWK, sign_alg: str, recipient: dict[str, Any]
) -> str:
    inner = jc_jws.JWS(payload)
    inner.add_signature(
        signer,
        None,
        json.dumps({"alg": sign_alg, "kid": signer.export_public(as_dict=True)["kid"]}),
    )
    header = {"alg": recipient["alg"], "enc": "A256GCM", "cty": "JWT", "kid": recipient["kid"]}
    outer = jc_jwe.JWE(inner.serialize(compact=True).encode(), protected=json.dumps(header))
    outer.add_recipient(jc_jwk.JWK(**recipient))
    return str(outer.serialize(compact=True))


@pytest.mark.parametrize("recipient", ["ec", "rsa"])
@pytest.mark.parametrize(
    ("kty", "crv", "alg"), [("EC", "P-256", "ES256"), ("OKP", "Ed25519", "EdDSA")]
)
def test_jwcrypto_seals_to_us_and_we_unseal(
    gateway: Party, recipient: str, kty: str, crv: str, alg: str
) -> None:
    """An agency using jwcrypto signs (ES256/EdDSA) and encrypts to our key; we open it."""
    signer = jc_jwk.JWK.generate(kty=kty, crv=crv, kid=f"agency-{alg}")
    jwk = gateway.ec_public() if recipient == "ec" else gateway.rsa_public()
    token = jwcrypto_seal(b'{"referral":"R-9"}', signer, alg, jwk)
    sender_jwks = {"keys": [signer.export_public(as_dict=True)]}
    opened = unseal_from(token, gateway.decryption, sender_jwks)
    assert opened.payload == b'{"referral":"R-9"}'
    assert opened.sender_kid == f"agency-{alg}"


@pytest.mark.parametrize(("kty", "size"), [("EC", None), ("RSA", 3072)])
def test_we_seal_and_jwcrypto_unseals_and_verifies(
    gateway: Party, kty: str, size: int | None
) -> None:
    """We seal to a jwcrypto key; jwcrypto decrypts and verifies our signature from our JWKS."""
    if kty == "EC":
        agency = jc_jwk.JWK.generate(kty="EC", crv="P-256", kid="housing-enc")
    else:
        agency = jc_jwk.JWK.generate(kty="RSA", size=size, kid="housing-enc")
    token = seal_for(b"hazard flag", gateway.signing, agency.export_public(as_dict=True))
    outer = jc_jwe.JWE()
    outer.deserialize(token, key=agency)
    assert outer.jose_header["cty"] == "JWT"
    our_keys = jc_jwk.JWKSet.from_json(json.dumps(gateway.signing.jwks()))
    inner = jc_jws.JWS()
    inner.deserialize(outer.payload.decode())
    inner.verify(our_keys.get_key(inner.jose_header["kid"]), alg="ES256")
    assert inner.payload == b"hazard flag"


def test_jwcrypto_verifies_our_jwt_and_we_verify_theirs(gateway: Party) -> None:
    """Access-token shaped JWTs cross both ways with typ at+jwt."""
    ring = gateway.repository.ring(Purpose.TOKEN_SIGNING)
    ours = sign_jwt({"sub": "police-01", "exp": 4_000_000_000}, ring, typ="at+jwt")
    keyset = jc_jwk.JWKSet.from_json(json.dumps(ring.jwks()))
    checked = jc_jwt.JWT(jwt=ours, key=keyset, algs=["ES256"])
    assert json.loads(checked.claims)["sub"] == "police-01"

    theirs_key = jc_jwk.JWK.generate(kty="EC", crv="P-256", kid="police-sig")
    theirs = jc_jwt.JWT(
        header={"alg": "ES256", "kid": "police-sig", "typ": "at+jwt"},
        claims={"sub": "police-01", "exp": 4_000_000_000},
    )
    theirs.make_signed_token(theirs_key)
    verified = verify_jwt(
        theirs.serialize(), [theirs_key.export_public(as_dict=True)], typ="at+jwt"
    )
    assert verified.claims["sub"] == "police-01"


# -- python-jose ---------------------------------------------------------------------------


def test_python_jose_seals_with_rsa_oaep_256_and_we_unseal(gateway: Party) -> None:
    """python-jose signs ES256 and encrypts RSA-OAEP-256/A256GCM to our RSA key."""
    signer = jc_jwk.JWK.generate(kty="EC", crv="P-256", kid="probation-sig")
    inner = pj_jws.sign(
        b"level 2 minutes",
        signer.export_private(as_dict=True),
        headers={"kid": "probation-sig"},
        algorithm="ES256",
    )
    recipient = gateway.rsa_public()
    token = pj_jwe.encrypt(
        inner.encode(),
        recipient,
        encryption="A256GCM",
        algorithm="RSA-OAEP-256",
        cty="JWT",
        kid=str(recipient["kid"]),
    )
    opened = unseal_from(token, gateway.decryption, [signer.export_public(as_dict=True)])
    assert opened.payload == b"level 2 minutes"
    assert opened.sender_kid == "probation-sig"


def test_we_seal_with_rsa_oaep_256_and_python_jose_unseals(gateway: Party) -> None:
    """python-jose decrypts our RSA-OAEP-256 body and verifies our ES256 signature."""
    agency = jc_jwk.JWK.generate(kty="RSA", size=3072, kid="probation-enc")
    token = seal_for(b"action points", gateway.signing, agency.export_public(as_dict=True))
    inner = pj_jwe.decrypt(token, agency.export_private(as_dict=True))
    assert inner is not None
    kid = pj_jws.get_unverified_header(inner)["kid"]
    key = next(k for k in gateway.signing.jwks()["keys"] if k["kid"] == kid)
    assert pj_jws.verify(inner, key, algorithms=["ES256"]) == b"action points"


# -- npm jose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> Any:
    """Run tests/keys/node/interop.mjs; install npm jose with `npm ci` on first use."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        skip_or_fail_in_ci("node and npm are not installed on this machine")
    if not (NODE_DIR / "node_modules" / "jose").is_dir():
        subprocess.run(
            [npm_bin, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def call(request: dict[str, Any]) -> Any:
        done = subprocess.run(
            [node_bin, "interop.mjs"],
            cwd=NODE_DIR,
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return json.loads(done.stdout)

    return call


@pytest.mark.parametrize("recipient", ["ec", "rsa"])
@pytest.mark.parametrize("sign_alg", ["ES256", "EdDSA"])
def test_npm_jose_seals_to_us_and_we_unseal(
    node: Any, gateway: Party, recipient: str, sign_alg: str
) -> None:
    """npm jose signs and encrypts to our JWKS key; keys/jose.py opens it."""
    jwk = gateway.ec_public() if recipient == "ec" else gateway.rsa_public()
    answer = node(
        {
            "action": "seal",
            "payload": base64.b64encode(b'{"from":"node"}').decode(),
            "signAlg": sign_alg,
            "recipientJwk": jwk,
        }
    )
    opened = unseal_from(answer["jwe"], gateway.decryption, [answer["senderJwk"]])
    assert opened.json() == {"from": "node"}
    assert opened.sender_kid == answer["senderJwk"]["kid"]


@pytest.mark.parametrize(("alg", "gen"), [("ECDH-ES+A256KW", "ES256"), ("RSA-OAEP-256", "RS256")])
def test_we_seal_and_npm_jose_unseals_and_verifies(
    node: Any, gateway: Party, alg: str, gen: str
) -> None:
    """We seal to a key made by npm jose; it decrypts and verifies us against our JWKS."""
    pair = node({"action": "keygen", "alg": gen})
    public = {k: v for k, v in pair["public"].items() if k != "alg"}
    token = seal_for(b"\x00\x01 binary ok", gateway.signing, public)
    answer = node(
        {
            "action": "unseal",
            "jwe": token,
            "privateJwk": {**pair["private"], "alg": alg},
            "senderJwks": gateway.signing.jwks(),
        }
    )
    assert base64.b64decode(answer["payload"]) == b"\x00\x01 binary ok"
    assert answer["kid"] == gateway.signing.current().kid and answer["cty"] == "JWT"


def test_npm_jose_jwts_cross_both_ways(node: Any, gateway: Party) -> None:
    """npm jose verifies our at+jwt; we verify an at+jwt it signs."""
    ring = gateway.repository.ring(Purpose.TOKEN_SIGNING)
    ours = sign_jwt({"sub": "housing-3", "exp": 4_000_000_000}, ring, typ="at+jwt")
    answer = node({"action": "verifyJwt", "token": ours, "jwks": ring.jwks(), "typ": "at+jwt"})
    assert answer["payload"]["sub"] == "housing-3" and answer["kid"] == ring.current().kid
    signed = node(
        {
            "action": "signJwt",
            "claims": {"sub": "housing-3", "exp": 4_000_000_000},
            "alg": "ES256",
            "typ": "at+jwt",
        }
    )
    verified = verify_jwt(signed["token"], [signed["jwk"]], typ="at+jwt")
    assert verified.claims["sub"] == "housing-3"
