"""The monthly level 1 list, record pages, and ``mappa-gateway policy explain``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.cases.explain import explain_access
from gateway.store.models import (
    IdempotentRequest,
    InformationRecord,
    Meeting,
    Nominal,
    OutboxMessage,
    Referral,
    UsedJti,
)
from tests.gateway.cases.scenario import (
    ADDRESS,
    HOUSING,
    JCP,
    PNC,
    POLICE,
    PROBATION,
    WILTS_POLICE,
    at_level_1,
    at_level_2,
    level_2_meeting,
    referral,
    referred,
)
from tests.gateway.cases.support import ISSUER, World


def _subject(n: int) -> dict[str, str]:
    return {**referral()["subject"], "pnc_id": f"2010/00000{n:02d}A", "crn": f"Z0000{n:02d}"}


async def test_level_1_list_gives_minimal_fields_to_the_areas_agencies(world: World) -> None:
    """Level 1 nominals of the area, minimal fields; category 4 only to the named agencies;
    nothing for another area; cursor pages."""
    ordinary = []
    for n in range(3):
        world.clock.advance(seconds=1)
        ordinary.append(await at_level_1(world, subject=_subject(n)))
    terrorism = await at_level_1(world, subject=_subject(9), category="M4")
    await at_level_2(world, subject=_subject(10))  # level 2: not on the list
    await referred(world, subject=_subject(11))  # awaiting screening: not on the list yet

    page = await world[HOUSING].get("/v1/level-1-list")
    ids = [entry["id"] for entry in page["entries"]]
    assert ids == ordinary  # oldest first; the category 4 nominal is withheld from housing
    for entry in page["entries"]:
        assert set(entry) == {
            "id",
            "names",
            "date_of_birth",
            "category",
            "level",
            "lead_agency_id",
            "area",
        }
        assert ADDRESS not in repr(entry)
    assert terrorism in [e["id"] for e in (await world[POLICE].get("/v1/level-1-list"))["entries"]]
    assert (await world[WILTS_POLICE].get("/v1/level-1-list"))["entries"] == []

    first = await world[JCP].get("/v1/level-1-list", limit="2")
    assert [e["id"] for e in first["entries"]] == ordinary[:2]
    second = await world[JCP].get("/v1/level-1-list", limit="2", cursor=first["next_cursor"])
    assert [e["id"] for e in second["entries"]] == ordinary[2:]
    entry = (await world.audit(agency_id=HOUSING, operation="disclosure"))[-1]
    assert entry.rule == "level-1-monthly-list"
    assert set(entry.record_refs) == set(ordinary)
    assert ("address", "allow-list:level-1-list") in {
        (w["field"], w["rule"]) for w in entry.withheld
    }


async def test_records_page_by_cursor_and_hide_what_the_caller_may_not_see(world: World) -> None:
    """Pages of records in creation order; the list shows only records the caller may see."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    made = []
    for n in range(5):
        world.clock.advance(seconds=1)
        made.append(
            (
                await world[PROBATION].post(
                    f"/v1/nominals/{nominal_id}/records",
                    {"kind": "case_note", "summary": f"note {n}"},
                )
            )["id"]
        )
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await world[POLICE].get(f"/v1/nominals/{nominal_id}/records", **params)
        seen += [r["id"] for r in page["records"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == made
    assert (
        await world[WILTS_POLICE].refused("GET", f"/v1/nominals/{nominal_id}/records")
    ).status == 404


#: What ``str.isdigit`` passes but is not ASCII 0-9: superscripts (``int`` refuses them: a 500
#: before), Arabic-Indic, fullwidth and Devanagari digits (``int`` reads them), and a mix.
NOT_ASCII_DIGITS = [
    "\u00b2",
    "\u00b9\u00b2",
    "\u0661\u0662",
    "\uff11\uff12",
    "\u0967\u0966",
    "1\u00b2",
]
#: ASCII digits, too long: a value of 1 in four digits, and more digits than ``int`` reads.
LONG_DIGITS = ["0001", "9" * 50, "1" * 5000]


@pytest.mark.parametrize("limit", NOT_ASCII_DIGITS + LONG_DIGITS)
async def test_a_limit_not_in_one_to_three_ascii_digits_is_400_audited_and_spends_the_proof(
    world: World, limit: str
) -> None:
    """``limit`` is ASCII digits or it is refused: 400 ``invalid_parameter``, never a 500. The
    refusal is audited, nothing else is stored or disclosed, and the proof is spent."""
    nominal_id = await at_level_2(world)
    path = f"/v1/nominals/{nominal_id}/records"
    police = world[POLICE]
    headers = await police.headers("GET", path)
    tables = (Nominal, Referral, InformationRecord, Meeting, OutboxMessage, IdempotentRequest)
    stored = [await world.count(model) for model in tables]
    spent = await world.count(UsedJti)
    audited = len(await world.audit())
    response = await police.client.http.get(ISSUER + path, params={"limit": limit}, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_parameter"
    assert [await world.count(model) for model in tables] == stored
    (refusal,) = (await world.audit())[audited:]
    assert (refusal.outcome, refusal.reason_code) == ("refused", "invalid_parameter")
    assert not refusal.record_refs
    assert refusal.agency_id == POLICE
    assert refusal.request_id == response.headers["x-request-id"]
    assert await world.count(UsedJti) == spent + 1
    again = await police.client.http.get(ISSUER + path, params={"limit": "2"}, headers=headers)
    assert again.status_code == 401
    assert (await world.audit(operation="authentication"))[-1].reason_code == "dpop_jti_replayed"


async def test_policy_explain_says_why_rule_by_rule(world: World, tmp_path: Path) -> None:
    """The explanation names each rule and the outcome; the CLI prints the same."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    text = await explain_access(
        world.state.db, agency_id=HOUSING, nominal_id=nominal_id, now=world.clock.now
    )
    assert "ALLOWED by involved-meeting" in text
    assert "[x] involved-meeting" in text
    refused = await explain_access(
        world.state.db, agency_id=WILTS_POLICE, nominal_id=nominal_id, now=world.clock.now
    )
    assert "REFUSED by default-deny" in refused
    assert ADDRESS not in text + refused
    consultations = await world.audit(reason_code="policy_explain")
    assert len(consultations) == 2

    env = {
        **os.environ,
        "MAPPA_PROFILE": "test",
        "MAPPA_ISSUER": ISSUER,
        "MAPPA_DATABASE_URL": world.state.settings.database_url,
        "MAPPA_KEYS_DIR": str(world.state.settings.keys_dir),
        "MAPPA_KEK_FILE": str(world.state.settings.kek_file),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "policy",
            "explain",
            "--agency",
            HOUSING,
            "--nominal",
            nominal_id,
            "--at",
            world.clock.now.isoformat(),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ALLOWED by involved-meeting" in result.stdout
    missing = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "policy",
            "explain",
            "--agency",
            "x",
            "--nominal",
            "y",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2


async def test_a_referral_does_not_tell_its_referrer_through_the_level_1_list(
    any_world: World,
) -> None:
    """A duty-to-co-operate agency refers an identifier it holds with a marker name: a known
    one made no new nominal, an unknown one made a level 1 nominal that the area's list then
    showed, so the list told the referrer whether the identifier was registered (and gave the
    referred person's name and date of birth to every agency before screening). Neither shows
    now; the new one does once the RA has screened it."""
    world = any_world
    await at_level_2(world)  # a registered, active nominal with the scenario's PNC
    for family, pnc in (("Probeknown", PNC), ("Probeunknown", "2001/0000001Z")):
        subject = {**referral()["subject"], "family_name": family, "pnc_id": pnc}
        del subject["crn"]  # the PNC id alone decides whether it is a known nominal
        body = referral(subject=subject, category="M3", lead_agency_id=POLICE)
        await world[JCP].post("/v1/referrals", body)

    async def listed() -> list[str]:
        page = await world[JCP].get("/v1/level-1-list")
        return [e["names"]["family_name"] for e in page["entries"]]

    assert await listed() == []
    async with world.state.db.read() as session:
        made = await session.scalar(
            select(Referral.nominal_id).where(Referral.status == "received")
        )
    await world[POLICE].post(
        f"/v1/nominals/{made}/screening", {"outcome": "screened_out", "reasons": "Level 1"}
    )
    assert await listed() == ["Probeunknown"]
