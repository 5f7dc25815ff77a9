"""A KEK held in an HSM, reached over PKCS#11 (``python-pkcs11``; tested against SoftHSM2).

The KEK is an AES-256 secret key object in a token, created non-extractable and sensitive, so
it never leaves the HSM: data keys go in and come out wrapped with ``CKM_AES_GCM``, bound to the
envelope's associated data. Wrapped form: nonce (12 bytes) || ciphertext || tag (16 bytes).

One PKCS#11 session per token is opened at start-up and shared behind a lock (sessions are not
safe for concurrent use, and the login belongs to the application); key handles are looked up
once. Open the KEK after any ``fork()``, not
before: PKCS#11 state does not survive it. Install with the ``hsm`` extra.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

from ._hazmat import AES_KEY_BYTES, NONCE_BYTES, random_bytes
from .errors import EnvelopeRejected, KekUnavailable

__all__ = ["Pkcs11Kek"]

# PKCS#11 logs in per token and application, not per session: every KEK on one token shares
# one logged-in session (and its lock) for the life of the process.
# A later KEK on the same token must present the same PIN as the one that logged in.
_SESSIONS: dict[tuple[str, str], tuple[Any, threading.Lock, bytes]] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(pkcs11: Any, library: str, token_label: str, pin: str) -> tuple[Any, threading.Lock]:
    pin_digest = hashlib.sha256(b"mappa-pkcs11-pin\x00" + pin.encode()).digest()
    with _SESSIONS_LOCK:
        found = _SESSIONS.get((library, token_label))
        if found is None:
            token = pkcs11.lib(library).get_token(token_label=token_label)
            found = (token.open(user_pin=pin), threading.Lock(), pin_digest)
            _SESSIONS[(library, token_label)] = found
        elif not hmac.compare_digest(found[2], pin_digest):
            raise KekUnavailable("pkcs11: PIN differs from the one the token was opened with")
        return found[0], found[1]


class Pkcs11Kek:
    """A :class:`keys.kek.KekSource` backed by an AES-256 key in a PKCS#11 token."""

    def __init__(
        self,
        library_path: str,
        *,
        token_label: str,
        key_label: str,
        user_pin: str,
        kek_id: str | None = None,
    ) -> None:
        try:
            import pkcs11
            from pkcs11 import KeyType, Mechanism, ObjectClass
            from pkcs11.mechanisms import GCMParams
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise KekUnavailable("python-pkcs11 is not installed (pip install '.[hsm]')") from exc
        self._kek_id = kek_id or f"pkcs11:{token_label}/{key_label}"[:255]
        self._mechanism = Mechanism.AES_GCM
        self._params = GCMParams
        self._errors: tuple[type[BaseException], ...] = (pkcs11.PKCS11Error,)
        try:
            self._session, self._lock = _session(pkcs11, library_path, token_label, user_pin)
            with self._lock:
                self._key: Any = self._session.get_key(
                    object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=key_label
                )
        except (pkcs11.PKCS11Error, OSError, RuntimeError) as exc:
            raise KekUnavailable(f"pkcs11: cannot open the KEK: {type(exc).__name__}") from exc

    def __repr__(self) -> str:
        return f"Pkcs11Kek(kek_id={self._kek_id!r})"

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = random_bytes(NONCE_BYTES)
        try:
            with self._lock:
                wrapped = self._key.encrypt(
                    data_key, mechanism=self._mechanism, mechanism_param=self._params(nonce, aad)
                )
        except self._errors as exc:
            raise KekUnavailable(f"pkcs11: wrap failed: {type(exc).__name__}") from exc
        return nonce + bytes(wrapped)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) != NONCE_BYTES + AES_KEY_BYTES + 16:
            raise EnvelopeRejected(f"pkcs11: wrapped key has {len(wrapped)} bytes, expected 60")
        nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            with self._lock:
                data_key = self._key.decrypt(
                    body, mechanism=self._mechanism, mechanism_param=self._params(nonce, aad)
                )
        except self._errors as exc:
            raise EnvelopeRejected(f"pkcs11: unwrap failed: {type(exc).__name__}") from exc
        return bytes(data_key)

    @staticmethod
    def create_key(library_path: str, *, token_label: str, key_label: str, user_pin: str) -> None:
        """Create the AES-256 KEK in the token: non-extractable, sensitive, encrypt/decrypt only.

        For development and tests; in production the HSM's own tooling creates the key.
        """
        import pkcs11
        from pkcs11 import Attribute, KeyType

        token = pkcs11.lib(library_path).get_token(token_label=token_label)
        with token.open(user_pin=user_pin, rw=True) as session:
            session.generate_key(
                KeyType.AES,
                AES_KEY_BYTES * 8,
                label=key_label,
                store=True,
                template={
                    Attribute.EXTRACTABLE: False,
                    Attribute.SENSITIVE: True,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                },
            )
