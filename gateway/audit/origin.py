"""Evidence of origin: the agency's own signed JWS of a write, retrieved and verified.

Every agency write keeps the agency's compact JWS (the signed body inside the JWE it sent),
sealed at rest and bound to its row, the write's audit entry
(:func:`gateway.cases.context.keep_origin`). Much later, when an agency disputes that it sent
something, the IG officer (``GET /v1/audit/origin/{entry_id}``) or an operator
(``mappa-gateway audit origin ENTRY_ID``) retrieves it and :func:`verify_origin` shows:

1. the JWS's SHA-256 is the digest the audit entry recorded, so the tamper-evident log vouches
   for these bytes (verify the log itself with ``audit verify``);
2. the agency had a signing key with the JWS's ``kid`` registered at the moment the gateway
   received it (keys are never deleted, only closed with ``not_after``);
3. the signature verifies with that key (joserfc, through :func:`keys.verify_jws`), with the
   body type of inbound bodies and an allowed algorithm;
4. the signed body names the agency as its sender and this gateway as its audience.

Nothing here is trusted from the evidence row alone: the key comes from the agency register,
the expected digest from the audit entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.contract.envelope import BODY_TYP
from gateway.store.models import AgencyKey, AuditEntry, OriginEvidence
from gateway.store.sealed import CaseSealer
from keys import SIG_ALGS, KeysError, verify_jws

__all__ = ["ORIGIN_TABLE", "OriginReport", "load_origin", "verify_origin"]

#: Where the agencies' signed JWS of each write are kept, sealed (the row id is the audit entry).
ORIGIN_TABLE = "origin_evidence"


@dataclass(frozen=True, slots=True)
class OriginReport:
    """What the evidence of one write shows, check by check."""

    entry_id: str
    agency_id: str
    sender_kid: str
    received_at: dt.datetime
    jws_digest: str
    #: The agency's compact JWS, exactly as it was received.
    jws: str
    #: The JWS hashes to the digest kept with it and recorded in the audit entry.
    digest_matches_entry: bool
    #: A signing key of the agency with this kid was registered when the write was received.
    key_valid_at_receipt: bool
    #: The signature verifies with that key.
    signature_valid: bool
    #: The signed body names the agency as sender and this gateway as audience.
    addressed_correctly: bool
    #: Why a check failed (None when all hold).
    problem: str | None = None

    @property
    def verified(self) -> bool:
        return (
            self.digest_matches_entry
            and self.key_valid_at_receipt
            and self.signature_valid
            and self.addressed_correctly
        )

    def summary(self) -> dict[str, Any]:
        """The report without the JWS (ids, times, digests and outcomes only)."""
        return {
            "entry_id": self.entry_id,
            "agency_id": self.agency_id,
            "sender_kid": self.sender_kid,
            "received_at": self.received_at.isoformat(),
            "jws_digest": self.jws_digest,
            "checks": {
                "digest_matches_entry": self.digest_matches_entry,
                "key_valid_at_receipt": self.key_valid_at_receipt,
                "signature_valid": self.signature_valid,
                "addressed_correctly": self.addressed_correctly,
            },
            "verified": self.verified,
            "problem": self.problem,
        }


def _digest(jws: str) -> str:
    return "sha256:" + hashlib.sha256(jws.encode("ascii")).hexdigest()


async def _key_at(
    session: AsyncSession, agency_id: str, kid: str, at: dt.datetime
) -> dict[str, Any] | None:
    rows = await session.scalars(
        select(AgencyKey).where(
            AgencyKey.agency_id == agency_id, AgencyKey.kid == kid, AgencyKey.use == "sig"
        )
    )
    for key in rows.all():
        if key.added_at <= at and (key.not_after is None or at < key.not_after):
            return dict(key.jwk)
    return None


async def load_origin(
    session: AsyncSession, sealer: CaseSealer, entry_id: str, *, issuer: str
) -> OriginReport | None:
    """The evidence kept for audit entry ``entry_id``, verified; None if none was kept."""
    row = await session.get(OriginEvidence, entry_id[:36])
    if row is None:
        return None
    entry = await session.scalar(select(AuditEntry).where(AuditEntry.entry_id == row.entry_id))
    jws = str(sealer.unseal(ORIGIN_TABLE, row.entry_id, "jws_sealed", row.jws_sealed)["jws"])
    key = await _key_at(session, row.agency_id, row.sender_kid, row.received_at)
    recorded = None
    if entry is not None:
        recorded = (entry.detail or {}).get("origin_jws_digest") or entry.payload_digest
    return verify_origin(
        entry_id=row.entry_id,
        agency_id=row.agency_id,
        sender_kid=row.sender_kid,
        received_at=row.received_at,
        jws_digest=row.jws_digest,
        jws=jws,
        recorded_digest=recorded,
        key=key,
        issuer=issuer,
    )


def verify_origin(
    *,
    entry_id: str,
    agency_id: str,
    sender_kid: str,
    received_at: dt.datetime,
    jws_digest: str,
    jws: str,
    recorded_digest: str | None,
    key: dict[str, Any] | None,
    issuer: str,
) -> OriginReport:
    """Run the four checks on a JWS with what the audit entry and the key register say."""
    problems: list[str] = []
    actual = _digest(jws)
    digest_ok = actual == jws_digest and recorded_digest is not None and actual == recorded_digest
    if not digest_ok:
        problems.append(
            "no audit entry records this write"
            if recorded_digest is None
            else "the JWS does not hash to the digest the audit entry recorded"
        )
    signature_ok = addressed_ok = False
    if key is None:
        problems.append(f"no signing key {sender_kid!r} of {agency_id} was valid at receipt")
    else:
        try:
            _header, payload, _kid = verify_jws(jws, {"keys": [key]}, algs=SIG_ALGS, typ=BODY_TYP)
            signature_ok = True
        except KeysError as exc:
            problems.append(f"signature: {exc.code}")
        else:
            try:
                claims = json.loads(payload)
            except ValueError:
                claims = None
            addressed_ok = (
                isinstance(claims, dict)
                and claims.get("iss") == agency_id
                and claims.get("aud") == issuer
            )
            if not addressed_ok:
                problems.append("the signed body names another sender or audience")
    return OriginReport(
        entry_id=entry_id,
        agency_id=agency_id,
        sender_kid=sender_kid,
        received_at=received_at,
        jws_digest=jws_digest,
        jws=jws,
        digest_matches_entry=digest_ok,
        key_valid_at_receipt=key is not None,
        signature_valid=signature_ok,
        addressed_correctly=addressed_ok,
        problem="; ".join(problems)[:500] or None,
    )
