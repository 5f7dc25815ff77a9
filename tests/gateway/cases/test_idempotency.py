"""Idempotency-Key on every write, remembered durably and shared by every replica."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.client import GatewayClient
from gateway.store.models import AuditEntry, IdempotentRequest, Nominal, Referral
from tests.gateway.cases.scenario import HOUSING, POLICE, PROBATION, at_level_2, referral
from tests.gateway.cases.support import ISSUER, World, new_key, open_world


async def test_retry_with_same_key_and_body_replays_the_original_answer(world: World) -> None:
    """The adapter re-seals the same body (a new JWE) with the same key: the same answer,
    and nothing written twice, audit included."""
    key = new_key()
    first = await world[POLICE].post("/v1/referrals", referral(), key=key)
    audits = await world.count(AuditEntry)
    again = await world[POLICE].post("/v1/referrals", referral(), key=key)
    assert again == first
    assert await world.count(Referral) == 1
    assert await world.count(Nominal) == 1
    assert await world.count(AuditEntry) == audits


async def test_same_key_with_another_body_is_422(world: World) -> None:
    """Reusing a key for a different request is refused; nothing is stored."""
    key = new_key()
    await world[POLICE].post("/v1/referrals", referral(), key=key)
    refused = await world[POLICE].refused(
        "POST", "/v1/referrals", referral(reasons="Another reason"), key=key
    )
    assert refused.status == 422
    assert refused.code == "idempotency_key_reused"
    assert await world.count(Referral) == 1


async def test_same_key_on_another_endpoint_is_422(world: World) -> None:
    key = new_key()
    nominal_id = await at_level_2(world)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "x"}, key=key
    )
    refused = await world[POLICE].refused(
        "POST", f"/v1/nominals/{nominal_id}/category", {"level": 3, "reason": "x"}, key=key
    )
    assert refused.code in {"idempotency_key_reused", "validation_failed"}
    refused = await world[POLICE].refused(
        "POST", f"/v1/nominals/{nominal_id}/deregistration", {"reason": "x"}, key=key
    )
    assert refused.code == "idempotency_key_reused"


async def test_keys_belong_to_one_agency(world: World) -> None:
    """Two agencies may use the same key without meeting each other's answers."""
    key = new_key()
    nominal_id = await at_level_2(world)
    mine = await world[PROBATION].post(
        f"/v1/nominals/{nominal_id}/records", {"kind": "case_note", "summary": "a"}, key=key
    )
    theirs = await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/records", {"kind": "case_note", "summary": "b"}, key=key
    )
    assert mine["id"] != theirs["id"]
    assert await world.count(IdempotentRequest) >= 2


async def test_replay_is_shared_across_replicas_and_races_write_once(any_world: World) -> None:
    """A retry sent to another replica replays the answer; two replicas racing with one key
    write once and answer the same (SQLite and PostgreSQL)."""
    world = any_world
    async with open_world(world.state.settings, world.clock) as replica:
        police = world[POLICE]
        other = GatewayClient(police.identity, ISSUER, replica.http, clock=world.clock)
        key = new_key()
        first = await police.post("/v1/referrals", referral(), key=key)
        answer = await other.call(
            "POST", "/v1/referrals", police.context, body=referral(), idempotency_key=key
        )
        assert getattr(answer, "body", None) == first
        assert await world.count(Referral) == 1

        racing = new_key()
        body = referral(subject={**referral()["subject"], "pnc_id": "2001/0000001Z"})
        results = await asyncio.gather(
            police.client.call(
                "POST", "/v1/referrals", police.context, body=body, idempotency_key=racing
            ),
            other.call("POST", "/v1/referrals", police.context, body=body, idempotency_key=racing),
        )
        bodies = [getattr(r, "body", None) for r in results]
        assert bodies[0] == bodies[1]
        assert await world.count(Referral) == 2
        assert HOUSING in world.agents


async def test_retry_that_raced_past_the_lookup_still_replays(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry whose read ran before the original committed collides on the key at commit;
    its transaction rolls back (nothing written twice) and the original answer is replayed."""
    from gateway.flow import idempotency

    key = new_key()
    first = await world[POLICE].post("/v1/referrals", referral(), key=key)
    real = idempotency.lookup
    calls: list[str] = []

    async def blind_once(*args: Any, **kwargs: Any) -> Any:
        calls.append("lookup")
        if len(calls) == 1:
            return None  # as if the original had not committed yet
        return await real(*args, **kwargs)

    monkeypatch.setattr(idempotency, "lookup", blind_once)
    audits = await world.count(AuditEntry)
    again = await world[POLICE].post("/v1/referrals", referral(), key=key)
    assert again == first
    assert calls == ["lookup", "lookup"]
    assert await world.count(Referral) == 1
    assert await world.count(AuditEntry) == audits
