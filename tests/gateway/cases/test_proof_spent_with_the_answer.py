"""The case API spends the caller's DPoP proof in the transaction that commits its answer.

One commit per call (the proof's jti, the audit entry and the act's writes together), and the
guarantee that went with a separate commit still holds: nothing is released unless the proof
was spent, a replayed proof and a suspended agency are refused and audited as before, and a
refusal spends the proof too, so it cannot be replayed after a 404.
"""

from __future__ import annotations

from gateway.agencies import suspend_agency
from gateway.store.models import UsedJti
from tests.gateway.cases.scenario import POLICE, at_level_2
from tests.gateway.cases.support import ISSUER, World


async def test_a_read_commits_once_with_its_proof_spent_and_its_entry_written(
    any_world: World,
) -> None:
    nominal = await at_level_2(any_world)
    police = any_world[POLICE]
    await police.client.token()
    commits = any_world.state.commits
    assert commits is not None
    acts, spent = commits.acts, await any_world.count(UsedJti)
    disclosures = len(await any_world.audit(operation="disclosure", nominal_ref=nominal))
    await police.get(f"/v1/nominals/{nominal}")
    assert commits.acts == acts + 1  # one act: the jti and the audit entry together
    assert await any_world.count(UsedJti) == spent + 1
    after = await any_world.audit(operation="disclosure", nominal_ref=nominal)
    assert len(after) == disclosures + 1


async def test_a_replayed_proof_on_a_case_read_is_refused_and_releases_nothing(
    any_world: World,
) -> None:
    nominal = await at_level_2(any_world)
    police = any_world[POLICE]
    path = f"/v1/nominals/{nominal}"
    headers = await police.headers("GET", path)
    first = await police.client.http.get(ISSUER + path, headers=headers)
    assert first.status_code == 200, first.text
    disclosures = len(await any_world.audit(operation="disclosure", nominal_ref=nominal))
    again = await police.client.http.get(ISSUER + path, headers=headers)
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_dpop_proof"
    assert again.headers["content-type"].startswith("application/problem+json")
    assert len(await any_world.audit(operation="disclosure", nominal_ref=nominal)) == disclosures
    refusals = await any_world.audit(operation="authentication", outcome="refused")
    assert refusals[-1].reason_code == "dpop_jti_replayed"
    assert refusals[-1].agency_id == POLICE


async def test_a_proof_refused_with_404_is_spent_and_cannot_be_replayed(world: World) -> None:
    police = world[POLICE]
    path = "/v1/nominals/00000000-0000-4000-8000-000000000000"
    headers = await police.headers("GET", path)
    missing = await police.client.http.get(ISSUER + path, headers=headers)
    assert missing.status_code == 404
    again = await police.client.http.get(ISSUER + path, headers=headers)
    assert again.status_code == 401
    refusals = await world.audit(operation="authentication", outcome="refused")
    assert refusals[-1].reason_code == "dpop_jti_replayed"


async def test_a_suspended_agency_is_refused_on_its_next_case_call_with_nothing_released(
    any_world: World,
) -> None:
    nominal = await at_level_2(any_world)
    police = any_world[POLICE]
    await police.get(f"/v1/nominals/{nominal}")  # a token in hand, still valid after this
    disclosures = len(await any_world.audit(operation="disclosure", nominal_ref=nominal))
    await suspend_agency(any_world.state.db, POLICE, now=any_world.clock.now)
    refused = await police.refused("GET", f"/v1/nominals/{nominal}")
    assert refused.status == 401
    assert refused.code == "invalid_token"
    assert len(await any_world.audit(operation="disclosure", nominal_ref=nominal)) == disclosures
    refusals = await any_world.audit(operation="authentication", outcome="refused")
    assert refusals[-1].reason_code == "agency_suspended"
