"""The only module that imports ``cryptography.hazmat`` (a ruff banned-api rule keeps it so).

Everything here is a small, fixed recipe: fixed curves, fixed key sizes, AES-256-GCM with a
random 96-bit nonce, HKDF-SHA256, X.509 certificates on P-256 signed with ECDSA-SHA256. Nothing
returns raw private key bytes except :func:`private_jwk`, which the key repository seals with the
envelope before it touches a disk, and :func:`x509_private_key_pem`, the PEM of a development
TLS server key (:mod:`keys.x509` writes it with mode 0600).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .errors import EnvelopeRejected, KeyInvalid

__all__ = [
    "AES_KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "Aead",
    "KeyKind",
    "ed25519_sign",
    "ed25519_verify",
    "generate_jose_key",
    "hkdf_sha256",
    "p256_point_is_valid",
    "random_bytes",
    "x509_ca_certificate",
    "x509_der",
    "x509_not_after",
    "x509_private_key_pem",
    "x509_server_certificate",
]

AES_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
RSA_BITS = 3072

KeyKind = Literal["EC-P256", "OKP-Ed25519", "RSA-3072"]
JoseKey = ECKey | OKPKey | RSAKey


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG."""
    return os.urandom(n)


class Aead:
    """AES-256-GCM under one key, parsed once. Thread-safe: no state between calls."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != AES_KEY_BYTES:
            raise KeyInvalid(f"AES-256-GCM key must be {AES_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Aead(<redacted>)"

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext || 16-byte tag."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext_and_tag: bytes, aad: bytes) -> bytes:
        """Open ciphertext || tag; any mismatch raises :class:`EnvelopeRejected`."""
        if len(nonce) != NONCE_BYTES or len(ciphertext_and_tag) < TAG_BYTES:
            raise EnvelopeRejected("aes-gcm: bad nonce or short ciphertext")
        try:
            return self._aead.decrypt(nonce, ciphertext_and_tag, aad)
        except InvalidTag as exc:
            raise EnvelopeRejected("aes-gcm: authentication failed") from exc


def generate_jose_key(kind: KeyKind, parameters: dict[str, str]) -> JoseKey:
    """Generate a fresh private key of a fixed kind, as a joserfc key carrying ``parameters``."""
    if kind == "EC-P256":
        native_ec = ec.generate_private_key(ec.SECP256R1())
        return ECKey(native_ec, native_ec, parameters)  # type: ignore[arg-type]
    if kind == "OKP-Ed25519":
        native_ed = Ed25519PrivateKey.generate()
        return OKPKey(native_ed, native_ed, parameters)  # type: ignore[arg-type]
    if kind == "RSA-3072":
        native_rsa = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        return RSAKey(native_rsa, native_rsa, parameters)  # type: ignore[arg-type]
    raise KeyInvalid(f"unknown key kind {kind!r}")


def p256_point_is_valid(x: bytes, y: bytes) -> bool:
    """True when (x, y) is a point on P-256 (32-byte big-endian coordinates)."""
    if len(x) != 32 or len(y) != 32:
        return False
    try:
        ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        return False
    return True


def ed25519_sign(private: object, message: bytes) -> bytes:
    """Raw Ed25519 signature (64 bytes) over ``message`` by an Ed25519 private key object."""
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyInvalid("not an Ed25519 private key")
    return private.sign(message)


def ed25519_verify(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """True only for a valid Ed25519 signature; malformed keys or signatures give False."""
    if len(public_raw) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def hkdf_sha256(material: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256: ``length`` bytes from ``material`` for the use ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(material)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _subtree(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_network(host))
    except ValueError:
        return x509.DNSName(host)


def _key_usage(*, signature: bool, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def x509_ca_certificate(
    common_name: str, hosts: Sequence[str], not_before: dt.datetime, not_after: dt.datetime
) -> tuple[object, str]:
    """A fresh P-256 key and a self-signed CA certificate (PEM) for it: it may sign end-entity
    certificates only (path length 0), and only for ``hosts`` (name constraints)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signature=True, sign_certificates=True), critical=True)
        .add_extension(x509.NameConstraints([_subtree(h) for h in hosts], None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate.public_bytes(Encoding.PEM).decode("ascii")


def x509_server_certificate(
    ca_key: object,
    ca_pem: str,
    common_name: str,
    hosts: Sequence[str],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> tuple[object, str]:
    """A fresh P-256 key and a TLS server certificate (PEM) for ``hosts`` (its subject
    alternative names; ``common_name`` names it for people), signed by the CA."""
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not hosts:
        raise KeyInvalid("a server certificate needs the CA's P-256 key and at least one host")
    ca = x509.load_pem_x509_certificate(ca_pem.encode("ascii"))
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signature=True, sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate.public_bytes(Encoding.PEM).decode("ascii")


def x509_private_key_pem(private: object) -> str:
    """The unencrypted PKCS#8 PEM of a P-256 key made by the functions above."""
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise KeyInvalid("not a P-256 private key")
    return private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def x509_der(certificate: x509.Certificate) -> bytes:
    """The DER encoding of a parsed certificate (what RFC 8705 thumbprints hash)."""
    return certificate.public_bytes(Encoding.DER)


def x509_not_after(pem: str) -> dt.datetime:
    """When the (first) certificate in ``pem`` expires (UTC); a PEM that does not parse raises
    :class:`KeyInvalid`."""
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii")).not_valid_after_utc
    except (ValueError, UnicodeEncodeError) as exc:
        raise KeyInvalid("not a PEM certificate") from exc
