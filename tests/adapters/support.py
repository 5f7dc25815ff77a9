"""Helpers shared by the adapter tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

import httpx
from joserfc import jwe, jws
from joserfc.jwk import ECKey, KeySet

from adapters.identity import AgencyIdentity
from adapters.receiver import Receiver
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.flow.signed_push import SignedPush
from gateway.store.models import OutboxMessage


def pnc_forms(pnc: str) -> set[str]:
    """A PNC id as it might leak: as written, its serial part, slash replaced or dropped, any
    case, and its unkeyed SHA-256 and SHA-1 (a few million PNC ids are quickly tried)."""
    serial = pnc.split("/")[1]
    spellings = {pnc, pnc.replace("/", "_"), pnc.replace("/", ""), pnc.replace("/", "-")}
    spellings |= {s.lower() for s in spellings}
    digests = {
        getattr(hashlib, name)(s.encode()).hexdigest()
        for name in ("sha256", "sha1")
        for s in spellings
    }
    return spellings | digests | {serial, serial[:-1], serial.lower()}


async def post_delivery(
    receiver: Receiver, row: OutboxMessage, *, key: str | None = None, kind: str | None = None
) -> httpx.Response:
    """POST an outbox row's sealed body to ``receiver`` as the relay does (``Idempotency-Key``
    its id, ``MAPPA-Message-Kind`` its kind); ``key`` and ``kind`` replace those headers (a
    replay by whoever captured the body)."""
    transport = httpx.ASGITransport(app=receiver.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        return await http.post(
            "/mappa/deliveries",
            content=row.body,
            headers={
                "Content-Type": JOSE_MEDIA_TYPE,
                "Idempotency-Key": key or row.id,
                "MAPPA-Message-Kind": kind or row.kind,
            },
        )


class StandInGateway:
    """A gateway signing key of its own (no gateway running): seals pushes to an agency as the
    relay would deliver them, with any ``iat`` and ``jti``, for the receiver's unit tests."""

    ISSUER = "https://gateway.test"

    def __init__(self, kid: str = "gateway-sig-1") -> None:
        key = ECKey.generate_key("P-256", private=True)
        self.signing_key = ECKey.import_key(
            {**key.as_dict(private=True), "kid": kid, "use": "sig", "alg": "ES256"}
        )
        self.kid = kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.as_dict(private=False)]}

    def keys(self) -> KeySet:
        return KeySet.import_key_set(self.jwks())

    def push(
        self,
        identity: AgencyIdentity,
        kind: str,
        body: dict[str, Any],
        *,
        iat: dt.datetime,
        jti: str | None = None,
        typ: str = "mappa-body+jwt",
    ) -> tuple[str, str]:
        """The message id and the sealed delivery (a compact JWE to the agency)."""
        jti = jti or str(uuid.uuid4())
        signed = SignedPush.wrap(
            body, iss=self.ISSUER, aud=identity.agency_id, now=iat, jti=jti, kind=kind
        )
        inner = jws.serialize_compact(
            {"alg": "ES256", "kid": self.kid, "typ": typ},
            signed.model_dump_json(),
            self.signing_key,
        )
        return jti, encrypt_to(identity, inner)


def encrypt_to(identity: AgencyIdentity, plaintext: str | bytes) -> str:
    """A JWE to the agency's public encryption key, naming it by its kid as the gateway does:
    what anyone at all can build."""
    public = ECKey.import_key(identity.encryption_key.as_dict(private=False))
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": public.kid}
    return jwe.encrypt_compact(header, plaintext, public)


async def post_sealed(
    receiver: Receiver, sealed: str | bytes, *, kind: str | None = None
) -> httpx.Response:
    """POST a sealed delivery to ``receiver`` in process, under a fresh Idempotency-Key."""
    transport = httpx.ASGITransport(app=receiver.app(), raise_app_exceptions=False)
    headers = {"Content-Type": JOSE_MEDIA_TYPE, "Idempotency-Key": str(uuid.uuid4())}
    if kind is not None:
        headers["MAPPA-Message-Kind"] = kind
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        return await http.post("/mappa/deliveries", content=sealed, headers=headers)
