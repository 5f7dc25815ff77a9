"""The seal stage: ``application/jose`` in and out.

Inbound, :meth:`Sealer.open` takes a compact JWE encrypted to the gateway's current (or a still
overlapping previous) ``payload-encryption`` key, around a JWS by one of the calling agency's
registered signing keys, whose payload is a :class:`~gateway.contract.envelope.SignedBody`
addressed from that agency to this gateway and fresh. Plain JSON is refused (415). Every other
failure is one opaque ``unreadable_body`` outward, with the precise reason in ``diagnostics`` for
the audit log; nothing is stored.

Outbound, :meth:`Sealer.seal` signs a ``SignedBody`` from the gateway to the recipient agency with
the ``payload-signing`` ring and encrypts it to the agency's registered encryption key (a push
also signs its kind and message id: :mod:`gateway.flow.signed_push`). An agency
without a usable encryption key gets nothing (``recipient_key_unavailable``): never clear text.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from gateway import errors
from gateway.contract.envelope import BODY_TYP, JOSE_MEDIA_TYPE, SignedBody
from gateway.flow.signed_push import SignedPush
from gateway.http.body import media_type, parse_json
from gateway.store.direct import Direct
from gateway.store.models import AgencyKey
from keys import (
    JoseRejected,
    KeyRepository,
    KeyRing,
    KeysError,
    Purpose,
    seal_for,
    unseal_from,
)

__all__ = ["Addressee", "OpenedBody", "Sealer", "agency_public_jwks", "agency_public_jwks_by_use"]


class Addressee(Protocol):
    """Whom a body is sealed to: only its id is read (an
    :class:`~gateway.store.models.Agency` row will do)."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class OpenedBody:
    """A verified inbound body and the evidence of its origin."""

    body: dict[str, Any]
    #: The sender's compact JWS, kept as evidence of origin.
    jws: str
    sender_kid: str
    #: SHA-256 of the JWS, recorded in the audit entry.
    digest: str


#: Every key of one agency, whatever its use (a call that needs two uses reads once); every
#: call reads its caller's keys, so below SQLAlchemy's execution layer (gateway.store.direct).
#: Retiring keys first, then current ones, each oldest first: the last key of a use is the
#: newest current one, the one :meth:`Sealer.seal` seals to (never a retiring key in an overlap).
_AGENCY_KEYS_ALL = Direct(
    select(AgencyKey.use, AgencyKey.jwk, AgencyKey.not_after)
    .where(AgencyKey.agency_id == bindparam("agency_id"))
    .order_by(AgencyKey.not_after.is_(None), AgencyKey.added_at, AgencyKey.id)
)


async def agency_public_jwks(
    session: AsyncSession, agency_id: str, use: str, now: dt.datetime
) -> list[Mapping[str, Any]]:
    """The agency's registered public keys of ``use`` ("sig"/"enc") still valid at ``now``."""
    return (await agency_public_jwks_by_use(session, agency_id, now)).get(use, [])


async def agency_public_jwks_by_use(
    session: AsyncSession, agency_id: str, now: dt.datetime
) -> dict[str, list[Mapping[str, Any]]]:
    """The agency's registered public keys still valid at ``now``, by use, in one read."""
    rows = await _AGENCY_KEYS_ALL.rows(session, {"agency_id": agency_id})
    by_use: dict[str, list[Mapping[str, Any]]] = {}
    for use, jwk, not_after in rows:
        if not_after is None or now < not_after:
            by_use.setdefault(use, []).append(jwk)
    return by_use


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Sealer:
    def __init__(self, repository: KeyRepository, *, issuer: str, max_json_depth: int) -> None:
        self.repository = repository
        self.issuer = issuer
        self.max_json_depth = max_json_depth
        # Fail at start-up, not on the first request, if a ring has no current key.
        repository.ring(Purpose.PAYLOAD_SIGNING).current()
        repository.ring(Purpose.PAYLOAD_ENCRYPTION).current()

    async def open(
        self,
        request: Request,
        *,
        sender_id: str,
        sender_keys: Sequence[Mapping[str, Any]],
        now: dt.datetime,
    ) -> OpenedBody:
        if media_type(request) != JOSE_MEDIA_TYPE:
            raise errors.UnsupportedMediaType(
                f"Case data is accepted only as {JOSE_MEDIA_TYPE} (JWS inside JWE)"
            )
        raw = await request.body()
        try:
            compact = raw.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise _unreadable("not ASCII") from exc
        if not sender_keys:
            raise _unreadable("sender has no usable signing key")
        # Outside the try: a ring that does not load is the gateway's fault (503, the edge maps
        # it), never the sender's unreadable body.
        ring = self._decryption_ring(compact)
        try:
            unsealed = unseal_from(
                compact,
                ring,
                list(sender_keys),
                typ=BODY_TYP,
                now=now,
            )
        except KeysError as exc:
            raise _unreadable(f"{exc.code}: {exc.reason}") from exc
        try:
            signed = SignedBody.model_validate(
                parse_json(unsealed.payload, max_depth=self.max_json_depth)
            )
        except errors.BadRequest as exc:
            raise _unreadable(f"inner payload: {exc.code}") from exc
        except ValidationError as exc:
            raise _unreadable("inner payload is not a signed body") from exc
        if signed.iss != sender_id:
            raise _unreadable("signed body names another sender")
        if signed.aud != self.issuer:
            raise _unreadable("signed body is addressed elsewhere")
        if not signed.fresh_at(now):
            raise _unreadable("signed body is stale or from the future")
        digest = _digest(unsealed.jws.encode("ascii"))
        return OpenedBody(signed.body, unsealed.jws, unsealed.sender_kid, digest)

    def _decryption_ring(self, compact: str) -> KeyRing:
        """The decryption ring, re-read once if the body names a kid it does not know (another
        replica may have rotated and published the new key a moment ago)."""
        try:
            header = json.loads(base64.urlsafe_b64decode(compact.split(".", 1)[0][:4096] + "=="))
            kid = header.get("kid") if isinstance(header, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            kid = None  # unseal_from refuses the header with its precise reason
        if isinstance(kid, str) and kid:
            return self.repository.ring_knowing(Purpose.PAYLOAD_ENCRYPTION, kid[:128])
        return self.repository.ring(Purpose.PAYLOAD_ENCRYPTION)

    def seal(
        self,
        body: Mapping[str, Any],
        *,
        recipient: Addressee,
        recipient_keys: Sequence[Mapping[str, Any]],
        now: dt.datetime,
        kind: str | None = None,
        jti: str | None = None,
        issued_at: dt.datetime | None = None,
    ) -> tuple[str, str]:
        """The compact JWE for ``recipient`` and the digest of the signed body inside it.

        A push names its ``kind`` and its message id (``jti``): both are then signed with the
        body (:class:`~gateway.flow.signed_push.SignedPush`), so the recipient acts on neither
        from an unsigned header. The body is issued (``iat``) at ``now`` unless ``issued_at``
        says otherwise (the conformance run's stale message); it is signed with the key current
        at ``now`` either way."""
        enc = [k for k in recipient_keys if k.get("use") == "enc"]
        if not enc:
            raise errors.RecipientKeyUnavailable(
                diagnostics={"recipient": recipient.id, "reason": "no usable encryption key"}
            )
        # built (and validated) once, with its jti and kind, and serialised once
        issued = now if issued_at is None else issued_at
        signed: SignedBody
        if kind is None:
            signed = SignedBody.wrap(
                dict(body), iss=self.issuer, aud=recipient.id, now=issued, jti=jti
            )
        else:
            signed = SignedPush.wrap(
                dict(body), iss=self.issuer, aud=recipient.id, now=issued, jti=jti, kind=kind
            )
        payload = signed.model_dump_json().encode()
        try:
            token = seal_for(
                payload,
                self.repository.ring(Purpose.PAYLOAD_SIGNING),
                enc[-1],
                typ=BODY_TYP,
                now=now,
            )
        except JoseRejected as exc:
            raise errors.RecipientKeyUnavailable(
                diagnostics={"recipient": recipient.id, "reason": exc.reason}
            ) from exc
        return token, _digest(payload)


def _unreadable(reason: str) -> errors.UnreadableBody:
    return errors.UnreadableBody(diagnostics={"reason": reason[:300]})
