"""The one thing read from a compact JWS before its signature is checked: the key id it names.

The gateway's pushes and answers reach an agency as a JWE to the agency's encryption key, which
is public: anyone can build one, so whatever is inside is hostile until its signature holds.
:func:`signing_kid` reads the ``kid`` of the JWS's protected header to pick the gateway key to
verify with, and turns every malformed header (not base64url, not UTF-8, not JSON, JSON that is
not an object, too deeply nested, a ``kid`` that is not a string, another ``typ`` than the
one expected) into one
:class:`MalformedSignature`, so the receiver (:mod:`adapters.receiver`) and the client
(:class:`adapters.client.GatewayClient`) refuse it the same way. A compact JWE's protected
header is read the same way: the client reads which gateway key it sealed a body to, and an
agency's identity which of its encryption keys a delivery was sealed to.

:func:`jws_registry` and :func:`jwe_registry` are the joserfc registries the SDK signs, verifies,
seals and opens with: the algorithms pinned, and the size caps the gateway's own
(:data:`keys.DEFAULT_LIMITS`), so that the SDK opens anything the gateway can seal (joserfc's
default caps would refuse a JWE past 64 KiB of ciphertext: a few pages of minutes).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from joserfc.jwe import JWERegistry
from joserfc.jws import JWSRegistry

from keys import DEFAULT_LIMITS

__all__ = [
    "MAX_HEADER_CHARS",
    "MAX_TOKEN_CHARS",
    "MalformedSignature",
    "jwe_registry",
    "jws_registry",
    "signing_kid",
]

#: The longest protected header segment read (a gateway header is well under 200 characters,
#: one with an ephemeral key under 400): the gateway's own cap.
MAX_HEADER_CHARS = DEFAULT_LIMITS.max_header_bytes
#: The longest compact JWS or JWE the gateway seals (its payload cap, base64url twice, and the
#: headers): what the SDK must be able to read whole.
MAX_TOKEN_CHARS = DEFAULT_LIMITS.max_token_bytes
#: The longest signature or encrypted key segment (an ES256 signature is 86 characters, an
#: A256KW-wrapped key 54): the gateway's own cap.
_MAX_KEY_OR_SIGNATURE_CHARS = 1024


def jws_registry(algorithms: Sequence[str]) -> JWSRegistry:
    """A JWS registry for ``algorithms`` with the gateway's size caps."""
    registry = JWSRegistry(algorithms=list(algorithms))
    registry.max_header_length = MAX_HEADER_CHARS
    registry.max_payload_length = MAX_TOKEN_CHARS
    registry.max_signature_length = _MAX_KEY_OR_SIGNATURE_CHARS
    return registry


def jwe_registry(algorithms: Sequence[str]) -> JWERegistry:
    """A JWE registry for ``algorithms`` (key management and content encryption) with the
    gateway's size caps."""
    registry = JWERegistry(algorithms=list(algorithms))
    registry.max_protected_header_length = MAX_HEADER_CHARS
    registry.max_ciphertext_length = MAX_TOKEN_CHARS
    registry.max_encrypted_key_length = _MAX_KEY_OR_SIGNATURE_CHARS
    return registry


class MalformedSignature(ValueError):
    """A compact JWS whose protected header names no usable key id."""


def signing_kid(compact_jws: str, typ: str | None = None) -> str:
    """The ``kid`` named by the protected header of ``compact_jws`` ("" when it names none).

    With ``typ``, the header must declare that type: the gateway's token-signing and
    payload-signing keys look alike in its JWKS (``sig``, ``ES256``), so an access token or any
    other JWS the gateway signed must not pass for a signed body."""
    segment = compact_jws.split(".", 1)[0]
    if len(segment) > MAX_HEADER_CHARS:
        raise MalformedSignature("the protected header is too long")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise MalformedSignature("the protected header is not JSON") from exc
    if not isinstance(header, dict):
        raise MalformedSignature("the protected header is not a JSON object")
    kid = header.get("kid", "")
    if not isinstance(kid, str):
        raise MalformedSignature("the protected header's kid is not a string")
    if typ is not None and header.get("typ") != typ:
        raise MalformedSignature("the protected header declares another type")
    return kid
