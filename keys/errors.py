"""Errors raised by ``keys/``: one tree, stable machine codes, opaque outward.

::

    KeysError             keys_error
    ├── JoseRejected      jose_rejected      any JWS/JWE/JWT failure, whatever the cause
    ├── EnvelopeRejected  envelope_rejected  a sealed blob did not open (tamper, AAD, format)
    ├── KeyUnknown        key_unknown        no such kid in the ring or key set
    ├── KeyRetired        key_retired        the kid exists but is retired
    ├── KeyInvalid        key_invalid        a JWK or key file that is malformed or unfit
    ├── KekUnavailable    kek_unavailable    KEK missing, malformed, exposed or not configured
    ├── KeyStoreError     key_store_error    the key repository cannot be read or written
    └── ProfileRefused    profile_refused    development keys outside the "development" profile

Every instance carries ``code`` (stable, for problem+json bodies and audit records) and
``reason`` (precise, internal: for the audit record and diagnostics only, never shown to the
caller; it never holds key material or payload bytes). ``public_message`` is the one opaque
sentence a caller may be shown.

Foreign exceptions (joserfc, cryptography) are translated where they are caught, with
``raise ... from exc``; :data:`JOSERFC_REASONS` names every joserfc error class so a library
upgrade that adds one is caught by the tests.
"""

from __future__ import annotations

from typing import Any

from joserfc import errors as jose_errors

__all__ = [
    "JOSERFC_REASONS",
    "EnvelopeRejected",
    "JoseRejected",
    "KekUnavailable",
    "KeyInvalid",
    "KeyRetired",
    "KeyStoreError",
    "KeyUnknown",
    "KeysError",
    "ProfileRefused",
    "jose_rejected_from",
]

_MAX_REASON = 300


class KeysError(Exception):
    """Root of every error raised by ``keys/``."""

    code: str = "keys_error"
    public_message: str = "The request could not be processed."

    def __init__(self, reason: str) -> None:
        self.reason = reason[:_MAX_REASON]
        super().__init__(f"{self.code}: {self.reason}")

    def diagnostics(self) -> dict[str, Any]:
        """What the audit record keeps: the code, the reason and the causes' class names."""
        causes: list[str] = []
        cause = self.__cause__
        while cause is not None and len(causes) < 5:
            causes.append(f"{type(cause).__module__}.{type(cause).__qualname__}")
            cause = cause.__cause__
        return {"code": self.code, "reason": self.reason, "causes": causes}


class JoseRejected(KeysError):
    """A JWS, JWE or JWT was refused. One class outward; ``reason`` says why."""

    code = "jose_rejected"


class EnvelopeRejected(KeysError):
    """A sealed blob could not be opened: tampered, wrong AAD, unknown version or KEK."""

    code = "envelope_rejected"


class KeyUnknown(KeysError):
    """No key with that id is known."""

    code = "key_unknown"


class KeyRetired(KeysError):
    """The key exists but is retired and may no longer verify or decrypt."""

    code = "key_retired"


class KeyInvalid(KeysError):
    """A key (JWK, key file) is malformed or not fit for the asked use."""

    code = "key_invalid"


class KekUnavailable(KeysError):
    """The key-encryption key is missing, malformed, badly protected or not the one needed."""

    code = "kek_unavailable"


class KeyStoreError(KeysError):
    """The key repository could not be read or written."""

    code = "key_store_error"


class ProfileRefused(KeysError):
    """Development keys were asked for outside the development profile."""

    code = "profile_refused"


#: Every joserfc error class, mapped to the stable reason prefix used in ``JoseRejected``.
JOSERFC_REASONS: dict[type[jose_errors.JoseError], str] = {
    jose_errors.JoseError: "jose_error",
    jose_errors.KeyParameterError: "key_parameter",
    jose_errors.MissingKeyError: "missing_key",
    jose_errors.UnsupportedKeyUseError: "key_use",
    jose_errors.UnsupportedKeyAlgorithmError: "key_alg",
    jose_errors.UnsupportedKeyOperationError: "key_operation",
    jose_errors.MissingKeyTypeError: "key_type_missing",
    jose_errors.InvalidKeyTypeError: "key_type",
    jose_errors.InvalidKeyIdError: "kid_unknown",
    jose_errors.InvalidExchangeKeyError: "exchange_key",
    jose_errors.DecodeError: "decode",
    jose_errors.MissingAlgorithmError: "alg_missing",
    jose_errors.ConflictAlgorithmError: "alg_conflict",
    jose_errors.UnsupportedAlgorithmError: "alg_refused",
    jose_errors.InvalidHeaderValueError: "header_value",
    jose_errors.UnsupportedHeaderError: "header_unsupported",
    jose_errors.MissingHeaderError: "header_missing",
    jose_errors.MissingCritHeaderError: "crit_missing",
    jose_errors.MissingEncryptionError: "enc_missing",
    jose_errors.InvalidKeyCurveError: "key_curve",
    jose_errors.InvalidKeyLengthError: "key_length",
    jose_errors.BadSignatureError: "bad_signature",
    jose_errors.ExceededSizeError: "size",
    jose_errors.InvalidEncryptionAlgorithmError: "enc_alg",
    jose_errors.InvalidEncryptedKeyError: "encrypted_key",
    jose_errors.ClaimError: "claim",
    jose_errors.InvalidClaimError: "claim_invalid",
    jose_errors.MissingClaimError: "claim_missing",
    jose_errors.InsecureClaimError: "claim_insecure",
    jose_errors.ExpiredTokenError: "expired",
    jose_errors.InvalidPayloadError: "payload",
}


def jose_rejected_from(exc: BaseException, where: str) -> JoseRejected:
    """Translate a foreign exception caught at ``where`` into :class:`JoseRejected`.

    The caller raises the result ``from exc``. The reason names the most specific known class.
    """
    if isinstance(exc, KeysError):
        return JoseRejected(f"{where}: {exc.code}: {exc.reason}")
    if isinstance(exc, jose_errors.JoseError):
        for klass in type(exc).__mro__:
            if klass in JOSERFC_REASONS:
                label = JOSERFC_REASONS[klass]
                return JoseRejected(f"{where}: {label}: {exc.description}"[:_MAX_REASON])
    return JoseRejected(f"{where}: {type(exc).__name__}")
