"""Published test vectors against keys/jose.py, taken from the copies shipped inside jwcrypto.

RFC 7520 (the JOSE cookbook) has no vector inside our allow-list, so each is asserted refused,
with the reason, and a control shows the refusal is policy, not a broken implementation: the
underlying library opens the same vector when its algorithm is allowed.

| vector        | alg / enc                          | why outside the allow-list        |
|---------------|------------------------------------|-----------------------------------|
| RFC 7520 4.1  | RS256                              | RSA PKCS#1 v1.5 signature         |
| RFC 7520 4.2  | PS384                              | RSA-PSS not allowed               |
| RFC 7520 4.3  | ES512 (P-521)                      | only ES256                        |
| RFC 7520 4.4  | HS256                              | symmetric MAC                     |
| RFC 7520 5.1  | RSA1_5 / A128CBC-HS256             | RSA PKCS#1 v1.5 encryption        |
| RFC 7520 5.2  | RSA-OAEP / A256GCM                 | SHA-1 OAEP (we take RSA-OAEP-256) |
| RFC 7520 5.3  | PBES2-HS512+A256KW / A128CBC-HS256 | password-based                    |
| RFC 7520 5.4  | ECDH-ES+A128KW / A128GCM (P-384)   | A128KW, and only P-256            |
| RFC 7520 5.5  | ECDH-ES / A128CBC-HS256            | direct key agreement              |
| RFC 7520 5.6  | dir / A128GCM                      | direct shared key                 |
| RFC 7520 5.7  | A256GCMKW / A128CBC-HS256          | symmetric key wrap                |
| RFC 7520 5.8  | A128KW / A128GCM                   | symmetric key wrap                |
| RFC 7520 5.9  | A128KW / A128GCM, zip DEF          | symmetric, and compressed         |

Inside the allow-list, and verified by keys/jose.py: RFC 7515 appendix A.3 (ES256) and RFC 8037
appendix A.4 (EdDSA over Ed25519), both from jwcrypto's own test data.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jwcrypto
import pytest
from joserfc import jwe as rfc_jwe
from joserfc import jws as rfc_jws
from joserfc.jwk import import_key

from keys import JoseRejected, public_key_from_jwk, unseal_from, verify_jws
from tests.keys.keys_support import Party

JWCRYPTO = Path(jwcrypto.__file__).parent


def _load(name: str, filename: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, JWCRYPTO / filename)
    assert spec is not None and spec.loader is not None, filename
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COOKBOOK = _load("jwcrypto_rfc7520_cookbook", "tests-cookbook.py")
JWCRYPTO_TESTS = _load("jwcrypto_vectors", "tests.py")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


RFC7520_JWS = [
    ("JWS_compact_4_1_3", "allow-list"),  # RS256
    ("JWS_compact_4_2_3", "allow-list"),  # PS384
    ("JWS_compact_4_3_3", "allow-list"),  # ES512
    ("JWS_compact_4_4_3", "symmetric"),  # HS256
]
RFC7520_JWE = [
    ("JWE_compact_5_1_5", "PKCS#1 v1.5"),
    ("JWE_compact_5_2_5", "allow-list"),
    ("JWE_compact_5_3_5", "password-based"),
    ("JWE_compact_5_4_5", "allow-list"),
    ("JWE_compact_5_5_5", "allow-list"),
    ("JWE_compact_5_6_4", "direct key"),
    ("JWE_compact_5_7_5", "allow-list"),
    ("JWE_compact_5_8_5", "allow-list"),
    ("JWE_compact_5_9_5", "allow-list"),
]


def test_every_rfc7520_compact_vector_is_listed() -> None:
    """The tables above cover every compact vector jwcrypto ships, so none is skipped silently."""
    shipped = {n for n in dir(COOKBOOK) if n.startswith(("JWS_compact_", "JWE_compact_"))}
    assert shipped == {name for name, _ in RFC7520_JWS + RFC7520_JWE}


@pytest.mark.parametrize(("name", "reason"), RFC7520_JWS)
def test_rfc7520_signature_vectors_outside_the_allow_list_are_refused(
    name: str, reason: str
) -> None:
    """RS256, PS384, ES512 and HS256 cookbook signatures are refused on their alg."""
    keys = [COOKBOOK.RSA_Public_Key_3_3, COOKBOOK.EC_Public_Key_3_1]
    with pytest.raises(JoseRejected, match=reason):
        verify_jws(getattr(COOKBOOK, name), keys, algs=("ES256", "EdDSA"), typ=None)


@pytest.mark.parametrize(("name", "reason"), RFC7520_JWE)
def test_rfc7520_encryption_vectors_outside_the_allow_list_are_refused(
    gateway: Party, police: Party, name: str, reason: str
) -> None:
    """Every cookbook JWE is refused on its alg before any key is used."""
    with pytest.raises(JoseRejected, match=reason):
        unseal_from(getattr(COOKBOOK, name), gateway.decryption, police.signing.jwks())


def test_control_the_library_opens_the_refused_cookbook_vectors_when_allowed() -> None:
    """Refusal is our policy: joserfc verifies 4.1 and 4.3 and decrypts 5.2 when permitted."""
    rsa = import_key(COOKBOOK.RSA_Public_Key_3_3)
    ec = import_key(COOKBOOK.EC_Public_Key_3_1)
    payload = base64.urlsafe_b64decode(COOKBOOK.Payload_plaintext_b64_4 + "==")
    assert rfc_jws.deserialize_compact(COOKBOOK.JWS_compact_4_1_3, rsa, ["RS256"]).payload == (
        payload
    )
    assert rfc_jws.deserialize_compact(COOKBOOK.JWS_compact_4_3_3, ec, ["ES512"]).payload == (
        payload
    )
    private = import_key(COOKBOOK.RSA_key_5_2_1)
    opened = rfc_jwe.decrypt_compact(COOKBOOK.JWE_compact_5_2_5, private, ["RSA-OAEP", "A256GCM"])
    assert opened.plaintext == COOKBOOK.Payload_plaintext_5


def test_rfc7515_a3_es256_vector_verifies() -> None:
    """RFC 7515 A.3: the ES256 example signature verifies with its published key."""
    example: dict[str, Any] = JWCRYPTO_TESTS.A3_example
    public = {k: v for k, v in example["key"].items() if k != "d"}
    token = ".".join(
        [
            b64(example["protected"].encode()),
            b64(example["payload"]),
            b64(example["signature"]),
        ]
    )
    key = public_key_from_jwk(public, use="sig")
    header, payload, kid = verify_jws(token, {key.kid: key}, algs=("ES256",), typ=None)
    assert header == {"alg": "ES256"}
    assert json.loads(payload)["iss"] == "joe"
    assert kid == key.kid


def test_rfc7515_a3_vector_with_one_bit_changed_is_refused() -> None:
    """The same vector with its payload altered fails verification."""
    example: dict[str, Any] = JWCRYPTO_TESTS.A3_example
    public = {k: v for k, v in example["key"].items() if k != "d"}
    altered = example["payload"].replace(b"joe", b"Joe")
    token = ".".join([b64(example["protected"].encode()), b64(altered), b64(example["signature"])])
    with pytest.raises(JoseRejected, match="bad_signature"):
        verify_jws(token, [public], algs=("ES256",), typ=None)


def test_rfc8037_a4_eddsa_vector_verifies() -> None:
    """RFC 8037 A.4: the Ed25519 example signature verifies (alg EdDSA)."""
    example: dict[str, Any] = JWCRYPTO_TESTS.E_Ed25519
    private = json.loads(example["key_json"])
    public = {k: v for k, v in private.items() if k != "d"}
    header, payload, _kid = verify_jws(
        example["jws_serialization_compact"], [public], algs=("EdDSA",), typ=None
    )
    assert header == {"alg": "EdDSA"}
    assert payload == example["payload"].encode()


def test_rfc8037_a4_vector_is_refused_when_eddsa_is_not_asked_for() -> None:
    """The caller's algs narrow the allow-list: an EdDSA token is refused where ES256 is pinned."""
    example: dict[str, Any] = JWCRYPTO_TESTS.E_Ed25519
    public = {k: v for k, v in json.loads(example["key_json"]).items() if k != "d"}
    with pytest.raises(JoseRejected, match="allow-list"):
        verify_jws(example["jws_serialization_compact"], [public], algs=("ES256",), typ=None)
