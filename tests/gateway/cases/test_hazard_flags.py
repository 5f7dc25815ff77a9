"""The hazard flag goes only to a children's services agency that need-to-know lets have it.

The Responsible Authority raising a flag may know the nominal; the recipient is decided on its
own: the flag (``hazard-flag-recipient``) under the restrictions that hold for everything about
the nominal. A category 4 nominal (police and probation of the area only) or a deregistered one
is not flagged to children's services: the write is refused (409, ``recipient_may_not_know``),
audited with the rule that refused the recipient, and nothing is stored or sent. Both backends.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.store.models import HazardFlag
from tests.gateway.cases.scenario import CHILD_REF, CS, POLICE, at_level_2
from tests.gateway.cases.support import World

KIND = "hazard_flag"
CS_FLAG_CONTEXT = ("CA2004-s11", "safeguarding")


def flag(nominal_id: str) -> dict[str, Any]:
    return {
        "nominal_id": nominal_id,
        "recipient_agency_id": CS,
        "child_or_family_ref": CHILD_REF,
        "relationship": "father",
        "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
    }


async def _category_4(world: World) -> str:
    return await at_level_2(world, category="M4")


async def _deregistered(world: World) -> str:
    nominal_id = await at_level_2(world)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/deregistration", {"reason": "Registration period ended"}
    )
    return nominal_id


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        # terrorism: only police and probation of the area see anything, flags included
        (_category_4, "category-4-named-agencies"),
        # no rule grants a flag on a deregistered nominal (hazard-flag-recipient needs it active)
        (_deregistered, "default-deny"),
    ],
)
async def test_flag_the_recipient_may_not_have_is_refused_and_nothing_stored_or_sent(
    any_world: World, case: Any, rule: str
) -> None:
    """409 recipient_may_not_know, audited with the rule that refused children's services;
    no flag row, nothing queued for children's services, no disclosure entry."""
    world = any_world
    nominal_id = await case(world)
    refused = await world[POLICE].refused("POST", "/v1/hazard-flags", flag(nominal_id))
    assert refused.status == 409 and refused.code == "conflict"
    [entry] = [
        e
        for e in await world.audit(agency_id=POLICE, outcome="refused")
        if e.detail.get("reason") == "recipient_may_not_know"
    ]
    assert entry.rule == rule
    assert entry.detail["recipient"] == CS
    assert entry.nominal_ref == nominal_id
    assert entry.policy_version
    assert await world.count(HazardFlag) == 0
    assert [r for r in await world.outbox(CS) if r.kind == KIND] == []
    assert not [
        e for e in await world.audit(operation="disclosure") if e.detail.get("resource") == KIND
    ]


async def test_flag_disclosure_is_audited_with_the_recipients_rule(any_world: World) -> None:
    """The flag's disclosure entry names the rule that let children's services have it
    (hazard-flag-recipient), not the raiser's; the raiser's rule is in the detail. The recipient
    reads the flag it was pushed."""
    world = any_world
    nominal_id = await at_level_2(world)
    flagged = await world[POLICE].post("/v1/hazard-flags", flag(nominal_id))
    [pushed] = await world.pushed(CS, KIND)
    assert pushed["flag_id"] == flagged["id"]
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.detail.get("resource") == KIND
    ]
    assert entry.recipients == [CS]
    assert entry.rule == "hazard-flag-recipient"
    assert entry.detail["caller_rule"] in {"lead-agency", "responsible-authority-of-area"}
    cs = world[CS]
    seen = await cs.get(
        f"/v1/hazard-flags/{flagged['id']}", context=cs.with_context(*CS_FLAG_CONTEXT)
    )
    assert seen == pushed["hazard_flag"]


async def test_a_flag_stored_with_a_free_text_contact_is_read_without_it(any_world: World) -> None:
    """A flag stored before contacts had a shape (free text, since refused at the contract) is
    still read, without its contact: the text never leaves, and the audit names it withheld."""
    world = any_world
    nominal_id = await at_level_2(world)
    flagged = await world[POLICE].post("/v1/hazard-flags", flag(nominal_id))
    sealer = world.state.case_sealer
    assert sealer is not None
    legacy = "DS Hale, MAPPA unit; re his conviction for indecent images"
    async with world.state.db.write() as session:
        row = await session.get(HazardFlag, flagged["id"])
        assert row is not None
        stored = sealer.unseal("hazard_flags", row.id, "details_sealed", row.details_sealed)
        row.details_sealed = sealer.seal(
            "hazard_flags", row.id, "details_sealed", {**stored, "contact": legacy}
        )
    cs = world[CS]
    seen = await cs.get(
        f"/v1/hazard-flags/{flagged['id']}", context=cs.with_context(*CS_FLAG_CONTEXT)
    )
    assert "contact" not in seen and seen["flag"] == "HZD"
    assert "indecent" not in repr(seen)
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=CS)
        if e.detail.get("resource") == KIND
    ]
    assert {"field": "contact", "rule": "hazard-flag-allow-list"} in entry.withheld
    assert "indecent" not in repr(entry.detail)
