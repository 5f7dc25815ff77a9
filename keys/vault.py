"""A KEK held by HashiCorp Vault's transit secrets engine (via ``hvac``).

Vault keeps the KEK (a transit key of type ``aes256-gcm96``); data keys are sent to
``transit/encrypt/<key>`` with the envelope's associated data as ``associated_data`` and come
back as ``vault:vN:...`` ciphertext, which is what the blob stores. Vault's own key rotation is
transparent (the version is inside the ciphertext); moving to another transit key is a
:func:`keys.envelope.rewrap`. Each wrap or unwrap is one HTTPS round trip to Vault, so case data
should be sealed by a local KEK that Vault wraps, or Vault must sit close to the gateway.

Not tested against a real Vault here: the tests use a stand-in client that speaks the same
hvac calls. Install with the ``vault`` extra.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from typing import Any

from .errors import EnvelopeRejected, KekUnavailable

__all__ = ["VaultTransitKek"]

_MAX_WRAPPED = 65535


class VaultTransitKek:
    """A :class:`keys.kek.KekSource` backed by a Vault transit key.

    ``client`` is an ``hvac.Client`` (or anything with ``secrets.transit.encrypt_data`` and
    ``decrypt_data`` of the same shape), already authenticated.
    """

    def __init__(
        self,
        client: Any,
        key_name: str,
        *,
        mount_point: str = "transit",
        kek_id: str | None = None,
    ) -> None:
        self._transit = client.secrets.transit
        self._key_name = key_name
        self._mount = mount_point
        self._kek_id = kek_id or f"vault:{mount_point}/{key_name}"[:255]

    @classmethod
    def connect(
        cls, url: str, token: str, key_name: str, *, mount_point: str = "transit"
    ) -> VaultTransitKek:
        """Build an ``hvac.Client`` for ``url`` with ``token`` and check it is authenticated."""
        try:
            hvac = importlib.import_module("hvac")
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise KekUnavailable("hvac is not installed (pip install '.[vault]')") from exc
        client = hvac.Client(url=url, token=token)
        if not client.is_authenticated():
            raise KekUnavailable("vault: token not authenticated")
        return cls(client, key_name, mount_point=mount_point)

    def __repr__(self) -> str:
        return f"VaultTransitKek(kek_id={self._kek_id!r})"

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        try:
            response = self._transit.encrypt_data(
                name=self._key_name,
                plaintext=base64.b64encode(data_key).decode("ascii"),
                associated_data=base64.b64encode(aad).decode("ascii"),
                mount_point=self._mount,
            )
            ciphertext = str(response["data"]["ciphertext"]).encode("ascii")
        except Exception as exc:
            raise KekUnavailable(f"vault: wrap failed: {type(exc).__name__}") from exc
        if not ciphertext.startswith(b"vault:v") or len(ciphertext) > _MAX_WRAPPED:
            raise KekUnavailable("vault: unexpected ciphertext from transit")
        return ciphertext

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if not wrapped.startswith(b"vault:v"):
            raise EnvelopeRejected("vault: wrapped key is not transit ciphertext")
        try:
            response = self._transit.decrypt_data(
                name=self._key_name,
                ciphertext=wrapped.decode("ascii"),
                associated_data=base64.b64encode(aad).decode("ascii"),
                mount_point=self._mount,
            )
            data_key = base64.b64decode(response["data"]["plaintext"], validate=True)
        except (binascii.Error, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise EnvelopeRejected(f"vault: unwrap answer malformed: {type(exc).__name__}") from exc
        except Exception as exc:
            # hvac raises InvalidRequest for a bad tag or AAD, other errors for outages; the
            # envelope cannot tell them apart without parsing messages, so both refuse to open.
            raise EnvelopeRejected(f"vault: unwrap failed: {type(exc).__name__}") from exc
        return data_key
