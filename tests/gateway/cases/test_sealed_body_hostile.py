"""Hostile sealed bodies over HTTP: what a partner can get wrong, or an attacker can change, in
the JWS-in-JWE of a write. Each is one opaque 400 ``unreadable_body`` (the precise reason only in
the audited refusal), and nothing of the write is stored: no record, no outbox message, no
idempotency key taken (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from gateway.contract.envelope import BODY_TYP, SignedBody
from gateway.store.models import AuditEntry, IdempotentRequest, InformationRecord, OutboxMessage
from tests.gateway.cases.scenario import HOUSING, PROBATION, at_level_2, record
from tests.gateway.cases.support import ISSUER, Agent, World

STORED = (InformationRecord, OutboxMessage, IdempotentRequest)


async def _counts(world: World) -> list[int]:
    return [await world.count(model) for model in STORED]


async def _seal_payload(agent: Agent, payload: str, *, header: dict[str, Any] | None = None) -> str:
    """``payload`` (any text) signed by the agent's own key and encrypted to the gateway, by
    hand: what ``GatewayClient.seal`` would never produce."""
    signing_key = agent.identity.signing_key
    inner = jws.serialize_compact(
        header or {"alg": "ES256", "kid": signing_key.kid, "typ": BODY_TYP}, payload, signing_key
    )
    keys = await agent.client.gateway_keys()
    recipient = next(k for k in keys.keys if k.get("alg") == "ECDH-ES+A256KW")
    jwe_header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": recipient.kid}
    return jwe.encrypt_compact(jwe_header, inner, recipient)


def _signed(agent: Agent, body: dict[str, Any], **changes: Any) -> str:
    signed = SignedBody.wrap(body, iss=agent.id, aud=ISSUER, now=agent.client.clock())
    return signed.model_copy(update=changes).model_dump_json()


async def _refused_write(world: World, nominal_id: str, content: str) -> AuditEntry:
    """POST the body as probation's new record: one opaque 400, nothing stored, and the one
    refusal audited (returned)."""
    before, audited = await _counts(world), len(await world.audit(outcome="refused"))
    response = await world[PROBATION].raw(
        "POST", f"/v1/nominals/{nominal_id}/records", content=content
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert (problem["code"], "detail" in problem) == ("unreadable_body", False)
    assert await _counts(world) == before
    refusals = await world.audit(outcome="refused")
    assert len(refusals) == audited + 1
    return refusals[-1]


def _reason(entry: AuditEntry) -> str:
    return json.dumps(entry.detail)


async def test_a_body_signed_to_another_recipient_is_refused(any_world: World) -> None:
    """Probation's body signed for housing (``aud``), then encrypted to the gateway (replayed
    from another exchange, say): refused, and the audit says why."""
    world = any_world
    nominal_id = await at_level_2(world)
    agent = world[PROBATION]
    content = await _seal_payload(agent, _signed(agent, record(), aud=HOUSING))
    entry = await _refused_write(world, nominal_id, content)
    assert entry.agency_id == PROBATION
    assert "addressed elsewhere" in _reason(entry)


async def test_a_body_claiming_another_sender_is_refused(any_world: World) -> None:
    """``iss`` names housing while probation signs and sends: refused."""
    world = any_world
    nominal_id = await at_level_2(world)
    agent = world[PROBATION]
    content = await _seal_payload(agent, _signed(agent, record(), iss=HOUSING))
    entry = await _refused_write(world, nominal_id, content)
    assert entry.agency_id == PROBATION
    assert "names another sender" in _reason(entry)


@pytest.mark.parametrize("segment", range(5))
async def test_one_flipped_bit_in_any_segment_is_refused_alike(
    any_world: World, segment: int
) -> None:
    """One bit flipped in the JWE's header, key, IV, ciphertext or tag: the same 400 whatever
    was hit, nothing stored, each refusal audited for probation as refused at decryption."""
    world = any_world
    nominal_id = await at_level_2(world)
    parts = (await world[PROBATION].client.seal(record())).split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[segment] + "=" * (-len(parts[segment]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    parts[segment] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    entry = await _refused_write(world, nominal_id, ".".join(parts))
    assert entry.agency_id == PROBATION
    assert entry.detail["reason"].startswith("jose_rejected: jwe")  # refused at decryption


@pytest.mark.parametrize(
    "payload",
    [
        '{"iss": "barnet-probation", "aud": "x", "iat": NaN, "body": {}}',
        '{"iss": "barnet-probation", "aud": "x", "iat": 1e999, "body": {}}',
        '{"iss": "barnet-probation", "iss": "barnet-police", "aud": "x", "iat": 1, "body": {}}',
        '{"iss": "barnet-probation", "aud": "x", "iat": ' + "9" * 5000 + ', "body": {}}',
        "[1, 2, 3]",
        '"just a string"',
    ],
    ids=["nan", "huge-float", "duplicate-key", "5000-digits", "array", "string"],
)
async def test_hostile_json_inside_a_valid_seal_is_refused(any_world: World, payload: str) -> None:
    """Well signed and well encrypted, but the signed payload is not the JSON a body is."""
    world = any_world
    nominal_id = await at_level_2(world)
    await _refused_write(world, nominal_id, await _seal_payload(world[PROBATION], payload))


async def test_an_unsigned_inner_jws_is_refused(any_world: World) -> None:
    """``alg: none`` inside a valid JWE to the gateway: refused, whatever the body says."""
    world = any_world
    nominal_id = await at_level_2(world)
    agent = world[PROBATION]

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    inner = b64(json.dumps({"alg": "none", "typ": BODY_TYP})) + "."
    inner += b64(_signed(agent, record())) + "."
    keys = await agent.client.gateway_keys()
    recipient = next(k for k in keys.keys if k.get("alg") == "ECDH-ES+A256KW")
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": recipient.kid}
    await _refused_write(world, nominal_id, jwe.encrypt_compact(header, inner, recipient))


async def test_a_body_signed_with_a_key_the_agency_never_registered_is_refused(
    any_world: World,
) -> None:
    """A fresh key under probation's own ``kid``: the signature does not verify."""
    world = any_world
    nominal_id = await at_level_2(world)
    agent = world[PROBATION]
    stranger = ECKey.generate_key("P-256", private=True)
    header = {"alg": "ES256", "kid": agent.identity.signing_key.kid, "typ": BODY_TYP}
    inner = jws.serialize_compact(header, _signed(agent, record()), stranger)
    keys = await agent.client.gateway_keys()
    recipient = next(k for k in keys.keys if k.get("alg") == "ECDH-ES+A256KW")
    jwe_header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": recipient.kid}
    await _refused_write(world, nominal_id, jwe.encrypt_compact(jwe_header, inner, recipient))


async def test_a_jwe_header_nested_past_the_parser_s_depth_is_refused(any_world: World) -> None:
    """A protected header of 3,000 nested arrays was a RecursionError while the gateway looked
    for its kid: a 500 on every write route, nothing audited."""
    world = any_world
    nominal_id = await at_level_2(world)
    header = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode()
    content = ".".join([header, "AAAA", "AAAAAAAAAAAAAAAA", "AAAA", "AAAAAAAAAAAAAAAAAAAAAA"])
    entry = await _refused_write(world, nominal_id, content)
    assert entry.agency_id == PROBATION
