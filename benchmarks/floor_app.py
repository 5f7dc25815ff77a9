"""The floor: a FastAPI endpoint that does only the cryptography a full read cannot avoid.

A full read (``GET /v1/nominals/{id}``) verifies the caller's DPoP proof (ES256), opens the
nominal's details sealed at rest (AES key unwrap + AES-GCM), signs the answer (ES256), encrypts
it to the caller (ECDH-ES+A256KW, A256GCM) and takes the answer's digest for the audit entry.
This app does that per request and nothing else: no token, no database, no policy, no audit
row. It leaves out two small things a read also does: importing the proof's public key from its
header (about 0.03 ms) and verifying the access token (which the gateway caches per token).
Served by the same uvicorn settings as the bare endpoint, its throughput, as a ratio to the bare
endpoint of the same run, is what the cryptography alone allows on this machine.

Two routes, so the cost of the library the product must use is visible beside the primitives:

- ``/floor/cryptography``: the primitives called directly through ``cryptography``;
- ``/floor/joserfc``: the same work as the gateway writes it, JWS and JWE through ``joserfc``
  with the product's algorithm allow-lists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from fastapi import FastAPI, Response
from joserfc import jwe, jws
from joserfc.jwk import ECKey

#: What a nominal's details weigh sealed at rest, and an answer's JSON (bytes).
DETAILS_BYTES = 1200
CURVE = ec.SECP256R1()


def create_app() -> FastAPI:
    """The floor app: keys made once at start, as the gateway parses its keys once."""
    app = FastAPI()
    caller_sig = ec.generate_private_key(CURVE)  # the caller's DPoP key
    caller_enc = ec.generate_private_key(CURVE)  # the caller's encryption key
    gateway_sig = ec.generate_private_key(CURVE)  # the gateway's signing key
    kek = os.urandom(32)
    data_key = os.urandom(32)
    nonce = os.urandom(12)
    wrapped = aes_key_wrap(kek, data_key)
    at_rest = AESGCM(data_key).encrypt(nonce, os.urandom(DETAILS_BYTES), b"nominal")

    # A DPoP proof as a client sends it: a compact ES256 JWS over a small claim set.
    claims = {"htm": "GET", "htu": "http://127.0.0.1/v1/nominals/n", "iat": int(time.time())}
    caller_jwk = ECKey.import_key(caller_sig)
    proof = jws.serialize_compact(
        {"alg": "ES256", "typ": "dpop+jwt"}, json.dumps(claims).encode(), caller_jwk
    )
    proof_public = ECKey.import_key(caller_sig.public_key())
    enc_public = ECKey.import_key(caller_enc.public_key())
    sig_jwk = ECKey.import_key(gateway_sig)
    signing_input, _, encoded_signature = proof.rpartition(".")
    raw_signature = base64.urlsafe_b64decode(encoded_signature + "==")

    @app.get("/floor/cryptography")
    async def primitives() -> Response:
        # DPoP proof verified (a DER signature: what ``cryptography`` takes).
        r = int.from_bytes(raw_signature[:32], "big")
        s = int.from_bytes(raw_signature[32:], "big")
        caller_sig.public_key().verify(
            encode_dss_signature(r, s), signing_input.encode(), ec.ECDSA(hashes.SHA256())
        )
        details = AESGCM(aes_key_unwrap(kek, wrapped)).decrypt(nonce, at_rest, b"nominal")
        answer = details.hex().encode()[:DETAILS_BYTES]
        signature = gateway_sig.sign(answer, ec.ECDSA(hashes.SHA256()))
        ephemeral = ec.generate_private_key(CURVE)
        shared = ephemeral.exchange(ec.ECDH(), caller_enc.public_key())
        kek_answer = hashlib.sha256(b"\x00\x00\x00\x01" + shared + b"ECDH-ES+A256KW").digest()
        cek = os.urandom(32)
        wrapped_cek = aes_key_wrap(kek_answer, cek)
        sealed = AESGCM(cek).encrypt(os.urandom(12), answer + signature, b"header")
        digest = hashlib.sha256(sealed).hexdigest()
        return Response(wrapped_cek + sealed[:16], headers={"Digest": digest})

    @app.get("/floor/joserfc")
    async def with_joserfc() -> Response:
        jws.deserialize_compact(proof, proof_public, algorithms=["ES256"])
        details = AESGCM(aes_key_unwrap(kek, wrapped)).decrypt(nonce, at_rest, b"nominal")
        answer = details.hex().encode()[:DETAILS_BYTES]
        signed = jws.serialize_compact({"alg": "ES256"}, answer, sig_jwk, algorithms=["ES256"])
        sealed = jwe.encrypt_compact(
            {"alg": "ECDH-ES+A256KW", "enc": "A256GCM"},
            signed,
            enc_public,
            algorithms=["ECDH-ES+A256KW", "A256GCM"],
        )
        digest = hashlib.sha256(sealed.encode()).hexdigest()
        return Response(sealed, media_type="application/jose", headers={"Digest": digest})

    return app
