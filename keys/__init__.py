"""Key management for the MAPPA gateway: recipes over hazmat, the only home of key material.

Verbs:

* envelope encryption at rest: :class:`Envelope` (``seal`` / ``unseal`` / ``rewrap``) under a
  :class:`KekSource` (:func:`kek_from_file`, :func:`kek_from_env`);
* key rings per :class:`Purpose` held by a :class:`KeyRepository`
  (:class:`FileKeyRepository`, :func:`generate_keys`, :func:`generate_development_keys`),
  rotated with overlap;
* JOSE: :func:`sign_jwt` / :func:`verify_jwt`, and ``application/jose`` bodies with
  :func:`seal_for` / :func:`unseal_from`;
* raw Ed25519 for signed notes: :meth:`KeyRing.sign_raw` and :func:`ed25519_verify`;
* blind indexes of identifiers (PNC, CRN, ViSOR): :func:`load_blind_index` (never makes a
  secret unless asked), :func:`init_blind_index` and :meth:`BlindIndex.index`;
* secrets derived from key material (HKDF) and keyed digests: :func:`derive_secret`,
  :func:`keyed_digest`;
* development X.509 for TLS on the loopback: :class:`DevelopmentCA` issuing a
  :class:`ServerCertificate`.

Only ``keys/_hazmat.py`` imports ``cryptography.hazmat``. Nothing here imports ``gateway``.
Errors: see :mod:`keys.errors`.
"""

from __future__ import annotations

from ._hazmat import ed25519_verify
from .blind_index import (
    BLIND_INDEX_FILE,
    MISSING_BLIND_INDEX,
    BlindIndex,
    init_blind_index,
    load_blind_index,
)
from .envelope import Envelope, blob_kek_id, rewrap
from .errors import (
    EnvelopeRejected,
    JoseRejected,
    KekUnavailable,
    KeyInvalid,
    KeyRetired,
    KeysError,
    KeyStoreError,
    KeyUnknown,
    ProfileRefused,
)
from .jose import (
    CONTENT_ENCRYPTION,
    DEFAULT_LIMITS,
    ENC_ALGS,
    SIG_ALGS,
    Limits,
    Unsealed,
    VerifiedJwt,
    seal_for,
    sign_jwt,
    unseal_from,
    verify_jws,
    verify_jwt,
)
from .jwk import PublicKey, public_key_from_jwk, public_keys_from_jwks
from .kdf import derive_secret, keyed_digest
from .kek import KekSource, LocalKek, generate_kek_file, kek_from_env, kek_from_file
from .provision import (
    DEVELOPMENT_MARKER,
    generate_development_keys,
    generate_keys,
    holds_development_keys,
)
from .repository import JWKS_PURPOSES, FileKeyRepository, KeyRepository
from .ring import PURPOSE_ALGS, KeyInfo, KeyRing, KeyStatus, Purpose, RingKey, Signature
from .x509 import LOOPBACK_HOSTS, DevelopmentCA, ServerCertificate, certificate_expires

__all__ = [
    "BLIND_INDEX_FILE",
    "CONTENT_ENCRYPTION",
    "DEFAULT_LIMITS",
    "DEVELOPMENT_MARKER",
    "ENC_ALGS",
    "JWKS_PURPOSES",
    "LOOPBACK_HOSTS",
    "MISSING_BLIND_INDEX",
    "PURPOSE_ALGS",
    "SIG_ALGS",
    "BlindIndex",
    "DevelopmentCA",
    "Envelope",
    "EnvelopeRejected",
    "FileKeyRepository",
    "JoseRejected",
    "KekSource",
    "KekUnavailable",
    "KeyInfo",
    "KeyInvalid",
    "KeyRepository",
    "KeyRetired",
    "KeyRing",
    "KeyStatus",
    "KeyStoreError",
    "KeyUnknown",
    "KeysError",
    "Limits",
    "LocalKek",
    "ProfileRefused",
    "PublicKey",
    "Purpose",
    "RingKey",
    "ServerCertificate",
    "Signature",
    "Unsealed",
    "VerifiedJwt",
    "blob_kek_id",
    "certificate_expires",
    "derive_secret",
    "ed25519_verify",
    "generate_development_keys",
    "generate_kek_file",
    "generate_keys",
    "holds_development_keys",
    "init_blind_index",
    "kek_from_env",
    "kek_from_file",
    "keyed_digest",
    "load_blind_index",
    "public_key_from_jwk",
    "public_keys_from_jwks",
    "rewrap",
    "seal_for",
    "sign_jwt",
    "unseal_from",
    "verify_jws",
    "verify_jwt",
]
