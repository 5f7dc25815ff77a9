"""Evidence of origin: every agency write keeps the agency's signed JWS sealed at rest, bound
to its audit entry; the IG officer (API) or an operator (CLI) retrieves it and verifies the
signature against the agency's key registered at the time. The JWS itself (the body whole,
third-party sources included) goes only to an IG officer's console session and the operator's
CLI; an agency's IG system gets the checks, for its own area's writes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from joserfc import jws as jose_jws
from sqlalchemy import update

from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.cli import main
from gateway.console.accounts import add_officer
from gateway.console.scope import NATIONAL, ReviewScope
from gateway.console.session import SESSION_COOKIE, open_session
from gateway.contract.envelope import SignedBody
from gateway.errors import CaseDataUnreadable
from gateway.settings import get_settings
from gateway.store.models import AuditEntry, OriginEvidence
from tests.gateway.cases.scenario import (
    MAPPA,
    POLICE,
    PROBATION,
    RECORD_TEXT,
    THIRD_PARTY_SOURCE,
    THIRD_PARTY_TEXT,
    at_level_2,
    record,
)
from tests.gateway.cases.support import Agent, World

IG_UNIT = "barnet-mappa-ig"


async def _record_write(world: World) -> tuple[str, AuditEntry]:
    """Probation shares a record: (record id, the write's audit entry)."""
    nominal_id = await at_level_2(world)
    answer = await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    [entry] = [
        e
        for e in await world.audit(agency_id=PROBATION, operation="collection")
        if answer["id"] in (e.record_refs or [])
    ]
    return str(answer["id"]), entry


async def _evidence(world: World, entry_id: str) -> OriginEvidence:
    async with world.state.db.read() as session:
        row = await session.get(OriginEvidence, entry_id)
    assert row is not None
    return row


async def _ig(world: World) -> Agent:
    return await world.register(
        IG_UNIT,
        "mappa_coordination",
        "responsible_authority",
        scopes=["case:read", "audit:read"],
        officer="IG-7",
    )


async def test_every_write_keeps_its_jws_sealed_and_bound_to_its_entry(any_world: World) -> None:
    """The evidence row: the entry's id, the agency and key id, the digest the entry records;
    the JWS itself only sealed (no case text in the row) (SQLite and PostgreSQL)."""
    world = any_world
    _, entry = await _record_write(world)
    row = await _evidence(world, entry.entry_id)
    assert row.agency_id == PROBATION
    assert row.sender_kid == world[PROBATION].identity.signing_key.kid
    assert row.jws_digest == entry.payload_digest == entry.detail["origin_jws_digest"]
    assert row.nominal_ref == entry.nominal_ref
    for text in (RECORD_TEXT, THIRD_PARTY_TEXT):
        assert text.encode() not in bytes(row.jws_sealed)
    # the sealed value is bound to its row: under another entry id it does not open
    sealer = world.state.case_sealer
    assert sealer is not None
    assert "jws" in sealer.unseal("origin_evidence", entry.entry_id, "jws_sealed", row.jws_sealed)
    with pytest.raises(CaseDataUnreadable):
        sealer.unseal("origin_evidence", "another-entry", "jws_sealed", row.jws_sealed)


async def test_ig_reader_retrieves_the_checks_sealed_to_itself_never_the_jws(
    world: World,
) -> None:
    """The co-ordination unit's IG system gets the checks and the digest sealed to its key,
    all true; not the JWS, which carries probation's third-party sources whole (a signature
    does not survive redaction); the consultation is audited."""
    _, entry = await _record_write(world)
    ig = await _ig(world)
    response = await ig.raw("GET", f"/v1/audit/origin/{entry.entry_id}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jose"
    opened = ig.open(response.text)
    assert opened["verified"] is True and opened["problem"] is None
    assert all(opened["checks"].values())
    assert opened["jws_digest"] == entry.payload_digest
    assert "jws" not in opened
    for text in (RECORD_TEXT, THIRD_PARTY_TEXT, THIRD_PARTY_SOURCE):
        assert text not in json.dumps(opened)
    [seen] = await world.audit(agency_id=IG_UNIT, operation="consultation", outcome="allowed")
    assert seen.record_refs == [entry.entry_id]
    assert seen.detail["resource"] == "origin_evidence" and seen.detail["verified"] is True
    assert RECORD_TEXT not in json.dumps(seen.detail)


async def test_another_areas_ig_system_gets_the_same_404_as_no_evidence(world: World) -> None:
    """Wiltshire's co-ordination unit asks for the evidence of a Barnet write: 404, byte for
    byte the answer for an entry with no evidence, audited with its own rule."""
    _, entry = await _record_write(world)
    wiltshire = await world.register(
        "wiltshire-mappa-unit",
        "mappa_coordination",
        "responsible_authority",
        area="wiltshire",
        scopes=["case:read", "audit:read"],
    )
    other = await wiltshire.raw("GET", f"/v1/audit/origin/{entry.entry_id}")
    missing = await wiltshire.raw("GET", "/v1/audit/origin/00000000-0000-4000-8000-000000000000")
    assert other.status_code == missing.status_code == 404
    strip = {"request_id"}
    assert {k: v for k, v in other.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }
    refusals = await world.audit(agency_id="wiltshire-mappa-unit", outcome="refused")
    assert [r.rule for r in refusals] == ["origin-evidence-of-own-area", "origin-evidence-exists"]
    assert not await world.audit(
        agency_id="wiltshire-mappa-unit", operation="consultation", outcome="allowed"
    )


async def test_a_console_ig_officer_gets_the_jws_exactly_as_signed(world: World) -> None:
    """The IG officer's console session is given the JWS itself, over the console's session,
    and its payload is exactly what probation signed; the consultation is audited."""
    _, entry = await _record_write(world)
    async with world.state.db.write() as session:
        officer = await add_officer(
            session, "ig.officer", "IG Officer", "a long passphrase 1", scope=NATIONAL
        )
    token, _ = await open_session(world.state.db, officer, now=world.clock.now, max_seconds=600)
    response = await world.http.get(
        f"/v1/audit/origin/{entry.entry_id}", headers={"Cookie": f"{SESSION_COOKIE}={token}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    opened = response.json()
    assert opened["verified"] is True
    signed = SignedBody.model_validate_json(
        jose_jws.extract_compact(opened["jws"].encode()).payload
    )
    assert (signed.iss, signed.body) == (PROBATION, record())
    [seen] = await world.audit(officer_id="ig.officer", operation="consultation")
    assert seen.outcome == "allowed" and seen.detail["via"] == "console"


async def test_a_console_officer_of_another_area_gets_the_same_404_as_no_evidence(
    any_world: World,
) -> None:
    """A Wiltshire IG officer asks for the evidence of a Barnet write with the console
    session: 404, byte for byte the answer for an entry with no evidence, refused before the
    evidence is read and audited with its own rule; a Barnet officer gets the JWS (SQLite and
    PostgreSQL)."""
    world = any_world
    _, entry = await _record_write(world)
    cookies = {}  # the world has Wiltshire's police: an area the gateway knows
    for officer_id, area in (("ig.wiltshire", "wiltshire"), ("ig.barnet", "barnet")):
        async with world.state.db.write() as session:
            officer = await add_officer(
                session, officer_id, "IG", "a long passphrase 1", scope=ReviewScope(areas=(area,))
            )
        token, _ = await open_session(world.state.db, officer, now=world.clock.now, max_seconds=600)
        cookies[officer_id] = {"Cookie": f"{SESSION_COOKIE}={token}"}
    wiltshire = cookies["ig.wiltshire"]
    other = await world.http.get(f"/v1/audit/origin/{entry.entry_id}", headers=wiltshire)
    missing = await world.http.get(
        "/v1/audit/origin/00000000-0000-4000-8000-000000000000", headers=wiltshire
    )
    assert other.status_code == missing.status_code == 404
    strip = {"request_id"}
    assert {k: v for k, v in other.json().items() if k not in strip} == {
        k: v for k, v in missing.json().items() if k not in strip
    }
    refusals = await world.audit(officer_id="ig.wiltshire", operation="consultation")
    assert [r.rule for r in refusals] == [
        "origin-evidence-of-officer-scope",
        "origin-evidence-exists",
    ]
    assert refusals[0].detail["scope"] == {"areas": ["wiltshire"]}
    own = await world.http.get(f"/v1/audit/origin/{entry.entry_id}", headers=cookies["ig.barnet"])
    assert own.status_code == 200 and own.json()["verified"] is True


async def test_signature_still_verifies_after_the_agency_rotated_its_keys(world: World) -> None:
    """Years later the key is retired: the key registered at receipt is still the one used."""
    _, entry = await _record_write(world)
    fresh = AgencyIdentity.generate(PROBATION)
    await agencies.rotate_agency_keys(
        world.state.db,
        PROBATION,
        fresh.public_jwks(),
        dt.timedelta(hours=1),
        now=world.clock.now,
    )
    world.clock.advance(days=400)
    ig = await _ig(world)
    opened = ig.open((await ig.raw("GET", f"/v1/audit/origin/{entry.entry_id}")).text)
    assert opened["verified"] is True


async def test_tampered_evidence_fails_its_checks(world: World) -> None:
    """Another JWS sealed into the row fails the digest check; a receipt time before the key
    was registered fails the key check."""
    _, entry = await _record_write(world)
    _, other = await _record_write(world)
    sealer = world.state.case_sealer
    assert sealer is not None
    other_row = await _evidence(world, other.entry_id)
    other_jws = sealer.unseal("origin_evidence", other.entry_id, "jws_sealed", other_row.jws_sealed)
    async with world.state.db.write() as session:
        await session.execute(
            update(OriginEvidence)
            .where(OriginEvidence.entry_id == entry.entry_id)
            .values(
                jws_sealed=sealer.seal("origin_evidence", entry.entry_id, "jws_sealed", other_jws),
                jws_digest=other_row.jws_digest,
            )
        )
        await session.execute(
            update(OriginEvidence)
            .where(OriginEvidence.entry_id == other.entry_id)
            .values(received_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
    ig = await _ig(world)
    swapped = ig.open((await ig.raw("GET", f"/v1/audit/origin/{entry.entry_id}")).text)
    assert swapped["verified"] is False
    assert swapped["checks"]["digest_matches_entry"] is False
    early = ig.open((await ig.raw("GET", f"/v1/audit/origin/{other.entry_id}")).text)
    assert early["verified"] is False
    assert early["checks"]["key_valid_at_receipt"] is False
    assert early["checks"]["signature_valid"] is False


@pytest.mark.parametrize(
    ("who", "status"),
    [
        (POLICE, 403),  # an RA agency is not information governance
        (MAPPA, 403),  # the co-ordination unit without audit:read
    ],
)
async def test_only_information_governance_retrieves_evidence(
    world: World, who: str, status: int
) -> None:
    _, entry = await _record_write(world)
    response = await world[who].raw("GET", f"/v1/audit/origin/{entry.entry_id}")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert RECORD_TEXT not in response.text
    refusal = (await world.audit(agency_id=who, outcome="refused"))[-1]
    assert refusal.rule == "ig-endpoints-only"


async def test_unauthenticated_unknown_malformed_and_parameters(world: World) -> None:
    """No token 401; an entry without evidence or a malformed id 404 (audited); a query 400."""
    _, entry = await _record_write(world)
    response = await world.http.get(f"/v1/audit/origin/{entry.entry_id}")
    assert response.status_code == 401
    ig = await _ig(world)
    token_entry = (await world.audit(operation="token_issue"))[0]
    for entry_id in (token_entry.entry_id, "00000000-0000-4000-8000-000000000000", "x' OR 1=1"):
        response = await ig.raw("GET", f"/v1/audit/origin/{entry_id}")
        assert response.status_code == 404, entry_id
    refusals = await world.audit(agency_id=IG_UNIT, outcome="refused")
    assert len(refusals) == 3
    assert {r.rule for r in refusals} == {"origin-evidence-exists"}
    response = await ig.raw("GET", f"/v1/audit/origin/{entry.entry_id}?full=1")
    assert response.status_code == 400


async def test_cli_prints_the_checks_and_writes_the_jws(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``mappa-gateway audit origin``: exit 0 and the checks (no case text) on stdout, the
    JWS in a 0600 file, the consultation audited; 2 for an entry without evidence."""
    _, entry = await _record_write(world)
    settings = world.state.settings
    for name, value in {
        "MAPPA_PROFILE": "test",
        "MAPPA_DATABASE_URL": settings.database_url,
        "MAPPA_ISSUER": settings.issuer,
        "MAPPA_KEYS_DIR": str(settings.keys_dir),
        "MAPPA_KEK_FILE": str(settings.kek_file),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    out = tmp_path / "evidence.jws"
    try:
        capsys.readouterr()
        status = await asyncio.to_thread(
            main, ["audit", "origin", entry.entry_id, "--jws-out", str(out), "--officer", "IG-1"]
        )
        printed = capsys.readouterr().out
        missing = await asyncio.to_thread(
            main, ["audit", "origin", "00000000-0000-4000-8000-000000000000"]
        )
    finally:
        get_settings.cache_clear()
    assert status == 0
    report = json.loads(printed)
    assert report["verified"] is True and report["entry_id"] == entry.entry_id
    assert RECORD_TEXT not in printed
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().strip().count(".") == 2
    assert missing == 2
    [seen] = await world.audit(officer_id="IG-1")
    assert (seen.operation, seen.outcome, seen.record_refs) == (
        "consultation",
        "allowed",
        [entry.entry_id],
    )
