"""An erasure racing other writes about its nominal on another replica (PostgreSQL, two
gateways on one schema): a referral of the same person registers a new nominal and stores
nothing on the erased one; a record about it is refused 404 and stored nowhere; and two RA
changes to one nominal on two replicas (the lock an erasure takes) both succeed in turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.client import GatewayClient, GatewayResponseError
from gateway.cases import context, erasure, records
from gateway.store.models import InformationRecord, Nominal, NominalChange, Referral
from tests.gateway.cases.scenario import (
    PNC,
    POLICE,
    at_level_2,
    onboard_barnet,
    record,
    referral,
    referred,
)
from tests.gateway.cases.support import ISSUER, Agent, World, new_key, open_world, settings_for

ERASE = ("DPA2018-s47", "erasure")
ERASURE = {"reason": "created_in_error", "note": "Registered against the wrong person"}


@pytest.fixture
async def replicas(
    postgres_url: str,
    gateway_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[tuple[World, Agent]]:
    """Barnet on replica 1 (the world), and the police's case system calling replica 2."""
    monkeypatch.chdir(tmp_path)
    settings = settings_for(postgres_url, gateway_keys)
    async with open_world(settings) as world, open_world(settings, world.clock) as other:
        await onboard_barnet(world)
        police = world[POLICE]
        client = GatewayClient(police.identity, ISSUER, other.http, clock=world.clock)
        yield (
            world,
            Agent(
                police.id,
                police.agency_type,
                police.role,
                police.area,
                police.identity,
                client,
                police.context,
            ),
        )


async def _erase(police: Agent, nominal_id: str) -> dict[str, Any]:
    return await police.post(
        f"/v1/nominals/{nominal_id}/erasure",
        ERASURE,
        context=police.with_context(*ERASE),
    )


async def _waited_on(world: World, pid: int) -> None:
    """Return once another backend waits for a lock the backend ``pid`` holds."""
    async with asyncio.timeout(10):
        while True:
            async with world.state.db.read() as session:
                waiting = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE CAST(:pid AS integer) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": pid},
                )
            if waiting:
                return
            await asyncio.sleep(0.02)


async def test_a_referral_racing_an_erasure_registers_a_new_nominal(
    replicas: tuple[World, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure (replica 2) holds the nominal locked while a referral of the same person
    (replica 1) is made and waits for it: the referral then finds no nominal with the person's
    identifiers (the erasure removed them) and registers a new one; no referral on the erased
    nominal keeps the subject's details."""
    world, police2 = replicas
    nominal_id = await referred(world)
    real = erasure._notify
    referring: list[asyncio.Task[dict[str, Any]]] = []

    async def then_refer(call: Any, session: AsyncSession, *args: Any) -> Any:
        notified = await real(call, session, *args)
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        referring.append(asyncio.create_task(world[POLICE].post("/v1/referrals", referral())))
        await _waited_on(world, int(pid))  # the referral waits for the erasure's locks
        return notified

    monkeypatch.setattr(erasure, "_notify", then_refer)
    await _erase(police2, nominal_id)
    [task] = referring
    answer = await asyncio.wait_for(task, 20)
    assert answer["status"] == "received"

    sealer = world.state.case_sealer
    assert sealer is not None
    pnc_index = sealer.index("pnc", PNC)
    async with world.state.db.read() as session:
        on_erased = (
            await session.scalars(select(Referral).where(Referral.nominal_id == nominal_id))
        ).all()
        new = (await session.scalars(select(Nominal).where(Nominal.pnc_index == pnc_index))).all()
        made = await session.get(Referral, answer["id"])
    assert on_erased and all(row.details_sealed is None for row in on_erased)
    assert made is not None and made.status == "received"
    assert [(n.id, str(n.status)) for n in new] == [(made.nominal_id, "active")]
    assert made.nominal_id != nominal_id


async def test_a_record_racing_an_erasure_is_refused_and_stored_nowhere(
    replicas: tuple[World, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record read and checked on replica 1, the nominal then erased on replica 2: the
    record's write is refused 404, as for an unknown nominal, and nothing of it is kept."""
    world, police2 = replicas
    nominal_id = await referred(world)
    real = records.push_record

    async def then_erase(*args: Any, **kwargs: Any) -> Any:
        pushed = await real(*args, **kwargs)
        await _erase(police2, nominal_id)
        return pushed

    monkeypatch.setattr(records, "push_record", then_erase)
    refused = await world[POLICE].refused("POST", f"/v1/nominals/{nominal_id}/records", record())
    assert (refused.status, refused.code) == (404, "not_found")
    async with world.state.db.read() as session:
        kept = await session.scalars(
            select(InformationRecord.id).where(InformationRecord.nominal_id == nominal_id)
        )
        assert kept.all() == []


async def test_two_ra_changes_to_one_nominal_on_two_replicas_never_deadlock(
    replicas: tuple[World, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two level changes at once on two replicas, each let into its write transaction only
    once the other is in its own, should a write take the nominal's key-share lock before it
    locks the row for update (each then holding it): never a deadlock failing their batches
    (503). The change that read a level the other then changed is refused, 409."""
    world, police2 = replicas
    nominal_id = await at_level_2(world)
    real = context.not_erased
    barrier = asyncio.Barrier(2)

    async def both_in(call: context.Call, session: AsyncSession) -> None:
        await real(call, session)
        async with asyncio.timeout(10):
            await barrier.wait()

    monkeypatch.setattr(context, "not_erased", both_in)

    async def change(agent: Agent, level: int) -> dict[str, Any] | int:
        try:
            return await agent.post(
                f"/v1/nominals/{nominal_id}/level",
                {"level": level, "reason": "Review of the risk"},
                key=new_key(),
            )
        except GatewayResponseError as exc:
            return exc.status

    answers = await asyncio.wait_for(
        asyncio.gather(change(world[POLICE], 3), change(police2, 1)), 30
    )
    # Never a deadlock failing a batch (503). Each change seals its level_change messages
    # from the level it read before its transaction: one that read the level before the other
    # committed is refused with nothing stored, 409 level_changed_meanwhile (its officer reads
    # again), so either both stand, one after the other, or the first to commit alone does.
    made = [a["level"] for a in answers if isinstance(a, dict)]
    assert made and all(a == 409 for a in answers if not isinstance(a, dict)), answers
    async with world.state.db.read() as session:
        levels = (
            await session.scalars(
                select(NominalChange.new_value).where(
                    NominalChange.nominal_id == nominal_id, NominalChange.kind == "level"
                )
            )
        ).all()
    assert sorted(str(level) for level in levels) == sorted(str(level) for level in made)
    refused = [e for e in await world.audit(operation="alteration") if e.outcome == "refused"]
    assert [e.detail.get("reason") or e.reason_code for e in refused] in (
        [],
        ["level_changed_meanwhile"],
    ), refused
