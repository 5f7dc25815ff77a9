"""The one thing read from a compact JWS before its signature is checked: the key id it names.

The gateway's pushes and answers reach an agency as a JWE to the agency's encryption key, which
is public: anyone can build one, so whatever is inside is hostile until its signature holds.
:func:`signing_kid` reads the ``kid`` of the JWS's protected header to pick the gateway key to
verify with, and turns every malformed header (not base64url, not UTF-8, not JSON, JSON that is
not an object, too deeply nested, a ``kid`` that is not a string, another ``typ`` than the
one expected) into one
:class:`MalformedSignature`, so the receiver (:mod:`adapters.receiver`) and the client
(:class:`adapters.client.GatewayClient`) refuse it the same way. A compact JWE's protected
header is read the same way: the client reads which gateway key it sealed a body to.
"""

from __future__ import annotations

import base64
import binascii
import json

__all__ = ["MAX_HEADER_CHARS", "MalformedSignature", "signing_kid"]

#: The longest protected header segment read (a gateway header is well under 200 characters).
MAX_HEADER_CHARS = 4096


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
