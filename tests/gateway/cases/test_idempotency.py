"""Idempotency-Key on every write, remembered durably and shared by every replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from adapters.client import GatewayClient
from gateway.cases.context import REPLAY_RULE
from gateway.store.models import AuditEntry, Base, IdempotentRequest, Nominal, Referral
from tests.gateway.cases.scenario import (
    HOUSING,
    POLICE,
    PROBATION,
    at_level_2,
    level_2_meeting,
    record,
    referral,
)
from tests.gateway.cases.support import (
    ISSUER,
    MAPPA_BASIS,
    World,
    audit_entries_fail,
    new_key,
    open_world,
)


async def _replays(world: World) -> list[AuditEntry]:
    return await world.audit(rule=REPLAY_RULE)


async def _original_entry(world: World, agency_id: str, key: str) -> AuditEntry:
    async with world.state.db.read() as session:
        remembered = await session.get(IdempotentRequest, (agency_id, key))
    assert remembered is not None and remembered.audit_entry_id
    [entry] = await world.audit(entry_id=remembered.audit_entry_id)
    return entry


async def test_retry_with_same_key_and_body_replays_the_original_answer(world: World) -> None:
    """The adapter re-seals the same body (a new JWE) with the same key: the same answer,
    nothing written twice, and one audit entry for the replay's disclosure of the answer."""
    key = new_key()
    first = await world[POLICE].post("/v1/referrals", referral(), key=key)
    audits = await world.count(AuditEntry)
    again = await world[POLICE].post("/v1/referrals", referral(), key=key)
    assert again == first
    assert await world.count(Referral) == 1
    assert await world.count(Nominal) == 1
    assert await world.count(AuditEntry) == audits + 1


async def test_replay_is_audited_as_a_disclosure_naming_the_original_entry(world: World) -> None:
    """The replay's entry: a disclosure to the caller, its officer and stated basis, the
    operation replayed, and "replay of" the original write's entry."""
    key = new_key()
    first = await world[POLICE].post("/v1/referrals", referral(), key=key)
    original = await _original_entry(world, POLICE, key)
    assert (original.operation, original.outcome) == ("collection", "allowed")
    assert await _replays(world) == []
    await world[POLICE].post("/v1/referrals", referral(), key=key)
    await world[POLICE].post("/v1/referrals", referral(), key=key)
    replays = await _replays(world)
    assert len(replays) == 2
    for entry in replays:
        assert (entry.operation, entry.outcome) == ("disclosure", "allowed")
        assert entry.agency_id == POLICE
        assert entry.recipients == [POLICE]
        assert entry.officer_id == world[POLICE].context.officer
        assert (entry.legal_basis, entry.purpose) == MAPPA_BASIS
        assert entry.nominal_ref == first["nominal_id"]
        assert entry.record_refs == [first["id"]]
        assert entry.detail["replay_of"] == original.entry_id
        assert entry.detail["replayed_operation"] == "collection"
        assert entry.detail["basis_rule"] == "legal-basis:CJA2003-s325-4"
        assert entry.payload_digest and entry.payload_digest.startswith("sha256:")
    assert replays[0].entry_id != replays[1].entry_id


async def test_reused_key_with_another_body_is_refused_not_replayed(world: World) -> None:
    """A key reused for another body discloses nothing, so no replay entry: a refusal."""
    key = new_key()
    await world[POLICE].post("/v1/referrals", referral(), key=key)
    await world[POLICE].refused("POST", "/v1/referrals", referral(reasons="Other"), key=key)
    assert await _replays(world) == []
    [refusal] = await world.audit(reason_code="idempotency_key_reused")
    assert refusal.outcome == "refused"


async def test_replay_is_not_sent_without_its_audit_entry(world: World) -> None:
    """No audit, no disclosure: if the replay's entry cannot be written, 503 and no answer."""
    key = new_key()
    await world[POLICE].post("/v1/referrals", referral(), key=key)
    sealed = await world[POLICE].client.seal(referral())
    await world[POLICE].client.token()

    with audit_entries_fail(world):
        response = await world[POLICE].raw("POST", "/v1/referrals", content=sealed, key=key)
    assert response.status_code == 503
    assert response.json()["code"] == "audit_unavailable"
    assert await _replays(world) == []


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
        # the retry on the other replica and the race's loser each replayed, audited once
        replays = await _replays(world)
        assert len(replays) == 2
        originals = {(await _original_entry(world, POLICE, k)).entry_id for k in (key, racing)}
        assert {entry.detail["replay_of"] for entry in replays} == originals
        assert HOUSING in world.agents


async def test_retry_that_raced_past_the_lookup_still_replays(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry whose read ran before the original committed collides on the key at commit;
    its transaction rolls back (nothing written twice) and the original answer is replayed,
    after need-to-know is decided again for the nominal it names, as for any replay."""
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
    # the rolled-back write left no entry; the replay left one, naming the original
    assert await world.count(AuditEntry) == audits + 1
    [entry] = await _replays(world)
    assert entry.detail["replay_of"] == (await _original_entry(world, POLICE, key)).entry_id
    # decided again as any replay is: police may still know the nominal the answer names
    assert entry.detail["need_to_know_rule"] == "lead-agency"


# -- a replay is a disclosure: only to a caller that may still know, only while the key is kept --


async def test_replay_after_the_caller_lost_the_nominal_is_the_opaque_404(
    any_world: World,
) -> None:
    """THREATS "the next request is refused, even with a still-valid token": housing's record
    write retried with its key after the nominal was deregistered gets what a fresh request
    gets, the opaque 404 audited with the need-to-know rule, not the stored 201 audited as an
    allowed disclosure (SQLite and PostgreSQL)."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)  # housing attends: it may know the nominal
    path = f"/v1/nominals/{nominal_id}/records"
    body = {"kind": "case_note", "summary": "Tenancy visit"}
    key = new_key()
    await world[HOUSING].post(path, body, key=key)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/deregistration", {"reason": "Registration period ended"}
    )
    fresh = await world[HOUSING].refused("POST", path, body, key=new_key())

    again = await world[HOUSING].refused("POST", path, body, key=key)

    assert (again.status, again.code) == (fresh.status, fresh.code) == (404, "not_found")
    assert await _replays(world) == []
    refusals = await world.audit(agency_id=HOUSING, outcome="refused")
    assert len(refusals) == 2  # the fresh request's, then the retry's: the same refusal
    assert refusals[1].reason_code == refusals[0].reason_code == "no_need_to_know"
    assert refusals[1].nominal_ref == refusals[0].nominal_ref == nominal_id
    assert refusals[1].rule is not None and refusals[1].rule == refusals[0].rule


async def test_replay_names_the_need_to_know_rule_that_still_lets_the_caller_know(
    world: World,
) -> None:
    """A replay the caller may still have is audited with the rule that let it know again."""
    nominal_id = await at_level_2(world)
    path = f"/v1/nominals/{nominal_id}/records"
    key = new_key()
    first = await world[PROBATION].post(path, record(), key=key)
    assert await world[PROBATION].post(path, record(), key=key) == first
    [entry] = await _replays(world)
    assert entry.nominal_ref == nominal_id
    assert entry.detail["need_to_know_rule"]


async def test_a_key_older_than_24_hours_is_as_if_unknown(any_world: World) -> None:
    """The documented retention is enforced at lookup, not only by purging: a day and an hour
    on, the same key and body make a new write (not a replay of the old answer), and the same
    key with another body is no longer 422; the key's row is replaced (SQLite and
    PostgreSQL)."""
    world = any_world
    nominal_id = await at_level_2(world)
    path = f"/v1/nominals/{nominal_id}/records"
    key = new_key()
    first = await world[PROBATION].post(path, record(), key=key)
    world.clock.advance(hours=25)

    second = await world[PROBATION].post(path, record(), key=key)

    assert second["id"] != first["id"]
    assert await _replays(world) == []
    world.clock.advance(hours=25)
    third = await world[PROBATION].post(path, record(summary="Another visit"), key=key)
    assert third["id"] not in (first["id"], second["id"])
    async with world.state.db.read() as session:
        kept = await session.get(IdempotentRequest, (PROBATION, key))
    assert kept is not None and kept.created_at == world.clock.now


async def test_expired_keys_are_purged_by_time_not_by_a_count_of_writes(world: World) -> None:
    """An hour or more after the last purge, the next write purges every expired key (here
    another agency's, which no write would otherwise replace)."""
    nominal_id = await at_level_2(world)
    path = f"/v1/nominals/{nominal_id}/records"
    key = new_key()
    await world[POLICE].post(path, record(), key=key)
    world.clock.advance(hours=25)
    await world[PROBATION].post(path, record(), key=new_key())
    async with world.state.db.read() as session:
        assert await session.get(IdempotentRequest, (POLICE, key)) is None


# -- a write that fails at or before its commit, then retried ------------------------------------


@contextlib.contextmanager
def _listening(world: World, **listeners: Callable[..., Any]) -> Iterator[None]:
    """SQLAlchemy events on the gateway's writer engine while the block runs."""
    engine = world.state.db.writer.sync_engine
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        yield
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)


def _inserting(statement: str, table: str) -> bool:
    return statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}")


@contextlib.contextmanager
def _insert_fails(world: World, table: str) -> Iterator[list[str]]:
    """Every INSERT into ``table`` fails as a full disk would; yields what failed."""
    failed: list[str] = []

    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if _inserting(statement, table):
            failed.append(table)
            raise OperationalError(statement, {}, Exception("database or disk is full"))

    with _listening(world, before_cursor_execute=fail):
        yield failed


@contextlib.contextmanager
def _commit_fails(world: World, *, connection_lost: bool) -> Iterator[list[str]]:
    """The transaction that staged a record (with its push, key, origin and entries) fails at
    its COMMIT: refused there, or its connection closed under it as when the process is killed
    (the database then rolls the open transaction back). Yields what failed."""
    failed: list[str] = []
    staged: list[bool] = []

    def stage(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if _inserting(statement, "information_records"):
            staged.append(True)

    def commit(conn: Any) -> None:
        if not staged:
            return
        staged.clear()
        failed.append("commit")
        if connection_lost:
            conn.invalidate()  # its DBAPI connection closed, as a driver does on a disconnect
        raise OperationalError(
            "COMMIT",
            {},
            Exception("server closed the connection"),
            connection_invalidated=connection_lost,
        )

    with _listening(world, before_cursor_execute=stage, commit=commit):
        yield failed


FAILURES: dict[str, Callable[[World], contextlib.AbstractContextManager[list[str]]]] = {
    "commit_refused": lambda world: _commit_fails(world, connection_lost=False),
    "connection_lost_at_commit": lambda world: _commit_fails(world, connection_lost=True),
    "outbox_insert": lambda world: _insert_fails(world, "outbox_messages"),
    "audit_insert": lambda world: _insert_fails(world, "audit_entries"),
}


async def _rows(world: World) -> dict[str, int]:
    """How many rows each table of the store holds."""
    async with world.state.db.read() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


def _grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


@pytest.mark.parametrize("failure", sorted(FAILURES))
async def test_write_that_failed_before_its_commit_succeeds_once_when_retried(
    any_world: World, failure: str
) -> None:
    """THREATS "killed before the commit": a write whose record, push, key and audit entry were
    staged fails at or before its commit. The caller gets a 5xx, and nothing of it is stored,
    pushed or audited, nor its key spent. The retry with the same Idempotency-Key and body
    succeeds once (one record, one push, one collection entry); a third try replays the answer
    and stores nothing new but the replay's own entry (SQLite and PostgreSQL)."""
    world = any_world
    nominal_id = await at_level_2(world)
    probation = world[PROBATION]
    path = f"/v1/nominals/{nominal_id}/records"
    key = new_key()
    sealed = await probation.client.seal(record())
    await probation.client.token()  # now, so that the write is all the failed call does
    before = await _rows(world)

    with FAILURES[failure](world) as failures:
        failed = await probation.raw("POST", path, content=sealed, key=key)
    assert failures, "the write did not reach the failure"
    assert failed.status_code == 503, failed.text
    assert failed.headers["content-type"].startswith("application/problem+json")
    assert failed.json()["code"] == "audit_unavailable"
    assert _grown(before, await _rows(world)) == {}, "the failed write left rows behind"
    assert await world.audit(request_id=failed.headers["x-request-id"]) == []
    async with world.state.db.read() as session:
        assert await session.get(IdempotentRequest, (PROBATION, key)) is None

    # the retry: the same key, the same body (sealed afresh, as an adapter retries)
    first = await probation.post(path, record(), key=key)
    assert first["status"] == "stored"
    stored = await _rows(world)
    assert _grown(before, stored) == {
        "information_records": 1,
        "outbox_messages": 1,  # the record pushed to the lead agency
        "origin_evidence": 1,
        "idempotency_keys": 1,
        "audit_entries": 2,  # the collection, and the push's disclosure
        "used_jtis": 1,  # the retry's DPoP proof
    }
    [push] = await world.outbox(POLICE)
    assert push.kind == "record" and push.nominal_ref == nominal_id
    [collection] = await world.audit(operation="collection", agency_id=PROBATION)
    assert collection.outcome == "allowed"
    assert collection.record_refs == [first["id"]]
    [disclosure] = await world.audit(request_id=collection.request_id, operation="disclosure")
    assert disclosure.recipients == [POLICE]
    assert (await _original_entry(world, PROBATION, key)).entry_id == collection.entry_id

    # a third try: the original answer, replayed; nothing stored but the replay's own entry
    again = await probation.post(path, record(), key=key)
    assert again == first
    assert _grown(stored, await _rows(world)) == {"audit_entries": 1, "used_jtis": 1}
    [replayed] = await _replays(world)
    assert replayed.detail["replay_of"] == collection.entry_id
    collections = await world.audit(operation="collection", agency_id=PROBATION)
    assert [entry.entry_id for entry in collections] == [collection.entry_id]
