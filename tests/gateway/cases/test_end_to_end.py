"""One request through every stage of the flow, each stage's mark checked in turn.

Housing attended the level 2 meeting and reads a record that probation shared, with a
neighbour as a third-party source. authenticate -> lawful basis -> need-to-know -> redact ->
seal -> audit -> deliver.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

from joserfc import jwe

from gateway.store.models import UsedJti
from tests.gateway.cases.scenario import (
    HOUSING,
    PROBATION,
    RECORD_TEXT,
    THIRD_PARTY_SOURCE,
    THIRD_PARTY_TEXT,
    at_level_2,
    level_2_meeting,
    record,
)
from tests.gateway.cases.support import World


def _header(compact: str) -> dict[str, str]:
    first = compact.split(".", 1)[0]
    return dict(json.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))))


async def test_a_read_walks_through_every_stage(world: World) -> None:
    """Each stage leaves its mark: the proof spent, the basis and rule recorded, the third
    party withheld, the answer signed by the gateway and encrypted to housing, one complete
    audit entry committed before the answer went out."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    created = await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    housing = world[HOUSING]
    path = f"/v1/nominals/{nominal_id}/records/{created['id']}"
    headers = await housing.headers("GET", path)  # a token first, then a fresh proof
    spent_before = await world.count(UsedJti)

    response = await world.http.get(path, headers=headers)

    # deliver: a sealed answer, never JSON
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jose"
    assert response.headers["cache-control"] == "no-store"
    request_id = response.headers["x-request-id"]
    # authenticate: the DPoP proof was spent, so the same request again is refused
    assert await world.count(UsedJti) == spent_before + 1
    assert (await world.http.get(path, headers=headers)).status_code == 401
    # seal: encrypted to housing's registered key, signed by the gateway, addressed to housing
    header = _header(response.text)
    assert header["alg"] == "ECDH-ES+A256KW" and header["enc"] == "A256GCM"
    assert header["kid"] == housing.identity.encryption_key.kid
    signed, evidence = await housing.client.open(response.text)
    assert signed.aud == HOUSING and signed.iss == "https://gateway.test"
    inner = jwe.decrypt_compact(response.text, housing.identity.encryption_key).plaintext
    assert inner is not None and inner.decode() == evidence
    # redact: housing's allow-list, and no third party
    body = signed.body
    assert body["id"] == created["id"]
    assert "content" not in body and "sources" not in body
    for needle in (RECORD_TEXT, THIRD_PARTY_SOURCE, THIRD_PARTY_TEXT):
        assert needle not in evidence
    # audit: exactly one entry for this request, complete, committed before the answer
    [entry] = await world.audit(request_id=request_id)
    assert entry.operation == "disclosure" and entry.outcome == "allowed"
    assert entry.occurred_at.tzinfo is not None and entry.occurred_at.utcoffset() == dt.timedelta(0)
    assert entry.agency_id == HOUSING and entry.officer_id == housing.context.officer
    assert entry.recipients == [HOUSING]
    assert entry.nominal_ref == nominal_id and entry.record_refs == [created["id"]]
    # lawful basis: the stated basis and purpose, and the register's rule
    assert (entry.legal_basis, entry.purpose) == ("CJA2003-s325-4", "risk-management")
    assert entry.detail["basis_rule"] == "legal-basis:CJA2003-s325-4"
    # need-to-know: the rule that granted, and its version
    assert entry.rule == "involved-meeting"
    assert entry.policy_version
    withheld = {(w["field"], w["rule"]) for w in entry.withheld}
    assert ("content", "allow-list:record-housing") in withheld
    assert ("sources", "allow-list:record-housing") in withheld
    assert ("sources[#2]", "third-party-source") in withheld
    payload = base64.urlsafe_b64decode(evidence.split(".")[1] + "==")
    assert entry.payload_digest == "sha256:" + hashlib.sha256(payload).hexdigest()
