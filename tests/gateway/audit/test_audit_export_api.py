"""GET /v1/audit/export: the verifiable export pack through the API, on SQLite and PostgreSQL.

A national officer's console session gets the console's pack, streamed, which verifies offline
with the published key and with no other; an area officer's, the scoped pack of its areas, each
entry with its inclusion proof, which fails if anything in it is changed. An officer with no
scope and the MAPPA unit's system get 403, recorded with the reason, and nothing of the log is
read for them.
The API and the console take their export slots from one pool.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from gateway.audit import parse_verifier_key
from gateway.audit.checkpoint import (
    Checkpoint,
    parse_checkpoint,
    parse_signed_note,
    sign_checkpoint,
)
from gateway.audit.export import EXPORT_FORMAT, ExportError, verify_export
from gateway.audit.scoped import SCOPED_FORMAT, verify_scoped_export
from gateway.audit.search import of_area
from gateway.audit.sequencer import sequence
from gateway.audit.verify import Problem
from gateway.console import exports
from gateway.console.accounts import add_officer, officer_by_id
from gateway.console.exports import CONSOLE_OFFICERS_ONLY, NO_REVIEW_SCOPE, PACK_RULE
from gateway.console.limits import EXPORTS, RETRY_AFTER_SECONDS, Slots
from gateway.console.scope import NATIONAL, NO_SCOPE, ReviewScope
from gateway.console.session import SESSION_COOKIE, open_session
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store.models import AuditEntry
from tests.gateway.audit.conftest import Ed25519NoteSigner, append_entries, audit_settings
from tests.gateway.oauth.support import ISSUER, AgencyClient, Ledger
from tests.gateway.streaming import download

EXPORT = ISSUER + "/v1/audit/export"
AREA = "avon-somerset"
NATIONAL_OFFICER, AREA_OFFICER, NO_SCOPE_OFFICER = "ig.national", "ig.avon", "ig.none"


@pytest.fixture
def oauth_settings(database_url: str, audit_gateway_keys: tuple[Path, Path]) -> Settings:
    """The audit API's settings on both backends."""
    return audit_settings(database_url, audit_gateway_keys)


async def _sequence(state: GatewayState) -> None:
    assert state.audit is not None
    await sequence(state.db, state.audit.signer, state.audit.origin)


@pytest.fixture
async def officers(
    oauth_app: FastAPI, gateway_state: GatewayState, coordinator: AgencyClient
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A national officer, one of Avon and Somerset (the area of the co-ordination unit and the
    sample agencies), one with no scope: each a console session."""
    scopes = {
        NATIONAL_OFFICER: NATIONAL,
        AREA_OFFICER: ReviewScope(areas=(AREA,)),
        NO_SCOPE_OFFICER: NO_SCOPE,
    }
    clients: dict[str, httpx.AsyncClient] = {}
    transport = httpx.ASGITransport(app=oauth_app)
    try:
        for officer_id, scope in scopes.items():
            async with gateway_state.db.write() as session:
                await add_officer(session, officer_id, officer_id, "a long passphrase", scope=scope)
            async with gateway_state.db.read() as session:
                officer = await officer_by_id(session, officer_id)
            assert officer is not None
            token, _ = await open_session(
                gateway_state.db, officer, now=gateway_state.clock(), max_seconds=600
            )
            clients[officer_id] = httpx.AsyncClient(
                transport=transport,
                base_url=ISSUER,
                headers={"Cookie": f"{SESSION_COOKIE}={token}"},
            )
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


@pytest.fixture
async def entry_ids(
    gateway_state: GatewayState, coordinator: AgencyClient, officers: object
) -> list[str]:
    """Twenty sample entries beside the registrations, sequenced and signed: every entry id."""
    await append_entries(gateway_state.db, 20)
    await _sequence(gateway_state)
    async with gateway_state.db.read() as session:
        return list(await session.scalars(select(AuditEntry.entry_id)))


async def _exports(state: GatewayState) -> list[AuditEntry]:
    """The export_pack entries the API recorded (consultations), oldest first."""
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.operation == Operation.CONSULTATION.value)
            .order_by(AuditEntry.id)
        )
        return [row for row in rows if (row.detail or {}).get("action") == "export_pack"]


async def _trusted_keys(http: httpx.AsyncClient) -> list[Any]:
    response = await http.get("/v1/audit/verifier-key")
    return [parse_verifier_key(line) for line in response.text.split()]


async def test_a_national_officer_s_pack_verifies_with_the_trusted_key_and_no_other(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
) -> None:
    """The console's pack, every entry in it, verified with the key published at
    /v1/audit/verifier-key; another key verifies nothing. The export is recorded before it is
    sent, as the API's reads are, with the tree size it covers."""
    response = await officers[NATIONAL_OFFICER].get(EXPORT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    header = json.loads(response.text.splitlines()[0])
    assert header["format"] == EXPORT_FORMAT
    for entry_id in entry_ids:
        assert entry_id in response.text
    pack = tmp_path / "pack.jsonl"
    pack.write_bytes(response.content)
    report = verify_export(pack, verifier_keys=await _trusted_keys(http))
    assert report.ok, report
    assert report.tree_size == header["tree_size"] == len(entry_ids)
    other = Ed25519NoteSigner(gateway_state.settings.audit_log_origin).verifier_key
    forged = verify_export(pack, verifier_keys=[other])
    assert not forged.ok and forged.problem is Problem.CHECKPOINT_INVALID
    (export,) = await _exports(gateway_state)
    assert (export.outcome, export.officer_id, export.agency_id) == (
        "allowed",
        NATIONAL_OFFICER,
        None,
    )
    assert export.detail == {
        "resource": "audit_log",
        "action": "export_pack",
        "via": "console",
        "scope": {"national": True},
        "tree_size": report.tree_size,
        "format": EXPORT_FORMAT,
    }


async def test_an_area_officer_s_pack_proves_each_of_its_areas_entries_in_the_signed_tree(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
) -> None:
    """An area officer gets the scoped pack: the entries of its area (made by its agencies or
    about its nominals) the checkpoint covers, each with its inclusion proof, which verify with
    the published key and no other; an entry of no area, or of another area's agency, is not
    in it. The export is recorded with the scope and the tree size."""
    async with gateway_state.db.write() as session:
        for agency_id in (None, "elsewhere-police"):  # no area, and no agency of this area
            record(
                session,
                AuditEvent(
                    operation=Operation.ADMINISTRATION,
                    outcome=Outcome.ALLOWED,
                    agency_id=agency_id,
                    detail={"action": "outside_the_scope"},
                ),
            )
    await _sequence(gateway_state)
    async with gateway_state.db.read() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
        area_ids = list(
            await session.scalars(
                of_area(select(AuditEntry.entry_id).order_by(AuditEntry.seq), AREA)
            )
        )
    outside = [row.entry_id for row in rows if row.detail.get("action") == "outside_the_scope"]
    assert len(outside) == 2 and not set(outside) & set(area_ids) and len(area_ids) >= 20

    response = await officers[AREA_OFFICER].get(EXPORT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    assert "scoped" in response.headers["content-disposition"]
    header, *lines, end = [json.loads(line) for line in response.text.splitlines()]
    assert header["format"] == SCOPED_FORMAT and header["areas"] == [AREA]
    assert end == {"end": {"entries": len(area_ids)}}
    assert header["tree_size"] == len(rows)
    assert [line["entry"]["entry_id"] for line in lines] == area_ids
    for entry_id in outside:
        assert entry_id not in response.text
    pack = tmp_path / "scoped.jsonl"
    pack.write_bytes(response.content)
    keys = await _trusted_keys(http)
    report = verify_scoped_export(pack, verifier_keys=keys)
    assert report.ok and report.entries == len(area_ids) and report.areas == (AREA,), report
    other = Ed25519NoteSigner(gateway_state.settings.audit_log_origin).verifier_key
    forged = verify_scoped_export(pack, verifier_keys=[other])
    assert forged.report.problem is Problem.CHECKPOINT_INVALID
    with pytest.raises(ExportError):  # a scoped pack is no full pack, nor the other way round
        verify_export(pack, verifier_keys=keys)
    (export,) = await _exports(gateway_state)
    assert (export.outcome, export.officer_id) == ("allowed", AREA_OFFICER)
    assert export.detail["scope"] == {"areas": [AREA]}
    assert export.detail["tree_size"] == len(rows) and export.detail["format"] == SCOPED_FORMAT


def _rewrite(pack: Path, change: Callable[[list[Any]], None]) -> Path:
    """A copy of ``pack`` with its lines (header first, parsed) changed by ``change``."""
    lines = [json.loads(line) for line in pack.read_text().splitlines()]
    change(lines)
    changed = pack.with_name("changed.jsonl")
    changed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return changed


def _edit_entry(lines: list[Any]) -> None:
    lines[2]["entry"]["officer_id"] = "someone-else"


def _edit_proof(lines: list[Any]) -> None:
    proof = lines[2]["proof"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]


def _renumber(lines: list[Any]) -> None:
    lines[2]["entry"]["seq"] += 1  # the leaf is over the seq too


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_edit_entry, Problem.EDITED),
        (_edit_proof, Problem.ROOT_MISMATCH),
        (_renumber, Problem.EDITED),
        (lambda lines: lines.insert(2, lines[1]), Problem.INSERTED),
        (lambda lines: lines.__setitem__(slice(1, 3), lines[2:0:-1]), Problem.REORDERED),
        (
            lambda lines: lines[0].__setitem__("tree_size", lines[0]["tree_size"] - 1),
            Problem.MALFORMED,
        ),
        (lambda lines: lines[1].__setitem__("extra", 1), Problem.MALFORMED),
        (lambda lines: lines[1]["entry"].__setitem__("seq", 10**6), Problem.BEYOND_CHECKPOINT),
        (lambda lines: lines[1].__setitem__("proof", ["0" * 64] * 65), Problem.MALFORMED),
        (lambda lines: lines[1]["entry"].__setitem__("seq", True), Problem.MALFORMED),
        (lambda lines: lines.pop(), Problem.TRUNCATED),  # cut short: no last line
        (lambda lines: lines.pop(-2), Problem.MALFORMED),  # an entry taken off the end
        (lambda lines: lines[-1]["end"].__setitem__("entries", True), Problem.MALFORMED),
        (lambda lines: lines.append(lines[1]), Problem.MALFORMED),  # more after the end
    ],
    ids=[
        "entry",
        "proof",
        "renumbered",
        "repeated",
        "swapped",
        "header",
        "line",
        "beyond",
        "long-proof",
        "boolean-seq",
        "cut-short",
        "last-entry-dropped",
        "boolean-count",
        "after-the-end",
    ],
)
async def test_a_scoped_pack_changed_in_any_way_fails(
    http: httpx.AsyncClient,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
    change: Callable[[list[Any]], None],
    problem: Problem,
) -> None:
    """Any change to an entry, its proof, its place or the header fails, naming the problem."""
    response = await officers[AREA_OFFICER].get(EXPORT)
    pack = tmp_path / "scoped.jsonl"
    pack.write_bytes(response.content)
    keys = await _trusted_keys(http)
    assert verify_scoped_export(pack, verifier_keys=keys).ok
    report = verify_scoped_export(_rewrite(pack, change), verifier_keys=keys)
    assert report.report.problem is problem, report


@pytest.mark.parametrize(
    "hostile",
    [
        b'{"entry": {"seq": ' + b"9" * 5000 + b'}, "proof": []}\n',  # too many digits for int
        b"[" * 200_000 + b"]" * 200_000 + b"\n",  # nested too deep
        b'{"entry": "\xff\xfe", "proof": []}\n',  # not UTF-8
        b"x" * (2 << 20),  # a line of 2 MiB, no newline
    ],
    ids=["digits", "nesting", "utf-8", "long-line"],
)
async def test_a_hostile_scoped_pack_is_refused_as_unreadable_never_a_crash(
    http: httpx.AsyncClient,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
    hostile: bytes,
) -> None:
    """A line that is no JSON this verifier reads, whatever makes it so, is an ExportError
    (the CLI's clean "cannot read" and exit 2), never another exception (a traceback)."""
    response = await officers[AREA_OFFICER].get(EXPORT)
    header = response.content.split(b"\n", 1)[0] + b"\n"
    pack = tmp_path / "hostile.jsonl"
    pack.write_bytes(header + hostile)
    with pytest.raises(ExportError):
        verify_scoped_export(pack, verifier_keys=await _trusted_keys(http))


def test_a_scoped_pack_header_naming_areas_as_anything_but_area_codes_is_refused(
    tmp_path: Path,
) -> None:
    """An area with a line break or a terminal's escape, or areas unsorted or repeated: the
    verifier would print them; it refuses the header instead."""
    from gateway.audit.scoped import is_scoped_pack

    for areas in (["barnet\nnote: complete"], ["barnet\x1b[8m"], ["b", "a"], ["a", "a"], []):
        pack = tmp_path / "areas.jsonl"
        header = {
            "format": SCOPED_FORMAT,
            "origin": "o",
            "tree_size": 0,
            "checkpoint": "c",
            "verifier_keys": [],
            "areas": areas,
        }
        pack.write_text(json.dumps(header) + "\n")
        assert is_scoped_pack(pack)
        key = Ed25519NoteSigner("o").verifier_key
        with pytest.raises(ExportError):
            verify_scoped_export(pack, verifier_keys=[key])


@pytest.mark.parametrize(
    ("who", "reason"), [(NO_SCOPE_OFFICER, NO_REVIEW_SCOPE), ("agency", CONSOLE_OFFICERS_ONLY)]
)
async def test_an_officer_with_no_scope_and_an_agency_get_403_with_nothing_read(
    http: httpx.AsyncClient,
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    coordinator: AgencyClient,
    entry_ids: list[str],
    monkeypatch: pytest.MonkeyPatch,
    who: str,
    reason: str,
) -> None:
    """An officer with no scope and the MAPPA unit's system (audit:read, its own area, but its
    reads are shaped by need-to-know, which no pack is): 403 forbidden, no entry in the answer,
    no slot taken, the log never read; the refusal recorded with the rule and the reason."""

    def never(*args: object, **kwargs: object) -> Any:
        raise AssertionError("the log was read for a refused caller")

    for name in ("export_header", "export_chunks", "scoped_header", "scoped_chunks"):
        monkeypatch.setattr(exports, name, never)
    if who == "agency":
        token = await coordinator.token(http)
        headers = coordinator.resource_headers(token, url=EXPORT, method="GET")
        response = await http.get(EXPORT, headers=headers)
    else:
        response = await officers[who].get(EXPORT)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "forbidden"
    for entry_id in entry_ids:
        assert entry_id not in response.text
    assert exports.export_slots(oauth_app).held == 0
    (refusal,) = await _exports(gateway_state)
    assert (refusal.outcome, refusal.rule, refusal.reason_code) == ("refused", PACK_RULE, reason)
    assert refusal.request_id == response.headers["x-request-id"]
    assert refusal.detail["route"] == "/v1/audit/export"
    if who == "agency":
        assert (refusal.agency_id, refusal.officer_id) == (coordinator.client_id, "PC-4521")
        assert refusal.detail["via"] == "agency" and refusal.detail["area"] == AREA
    else:
        assert (refusal.agency_id, refusal.officer_id) == (None, who)
        assert refusal.detail["via"] == "console"
        assert refusal.detail["scope"] == {"areas": []}


async def test_an_agency_that_is_not_ig_and_an_unauthenticated_caller_are_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """As on the other IG routes: a police system is 403, recorded with ig-endpoints-only; no
    session and no token is the 401 DPoP challenge."""
    token = await police.token(http)
    response = await http.get(
        EXPORT, headers=police.resource_headers(token, url=EXPORT, method="GET")
    )
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    (refused,) = await ledger.audit("consultation", "refused")
    assert refused.rule == "ig-endpoints-only"
    anonymous = await http.get(EXPORT)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("DPoP")


async def _saved_then_grown(http: httpx.AsyncClient, state: GatewayState) -> str:
    """The checkpoint an officer saves now (``GET /v1/audit/checkpoint``); the log then grows
    by ten entries, sequenced under a new checkpoint."""
    saved = (await http.get("/v1/audit/checkpoint")).text
    await append_entries(state.db, 10, start=100)
    await _sequence(state)
    return saved


def _size_of(note: str) -> int:
    return parse_checkpoint(parse_signed_note(note).text).size


async def test_a_scoped_pack_since_a_saved_checkpoint_proves_the_log_extends_it(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
) -> None:
    """Asked ``since`` the tree size of a checkpoint the officer saved, the pack's header holds
    the consistency proof from that tree, and the pack verifies held to the saved checkpoint.
    The same pack fails held to a checkpoint of that size the same key signed over another
    tree (the log rewritten, or a fork shown to someone else), or with its proof changed. A pack
    asked for no ``since`` cannot be held to an older checkpoint (`ExportError`, saying how to
    get one that can), but can to one of its own size."""
    saved = await _saved_then_grown(http, gateway_state)
    size = _size_of(saved)
    keys = await _trusted_keys(http)
    response = await officers[AREA_OFFICER].get(EXPORT, params={"since": str(size)})
    assert response.status_code == 200, response.text
    header = json.loads(response.text.splitlines()[0])
    assert header["tree_size"] == size + 10
    assert header["consistency"]["from_size"] == size and header["consistency"]["proof"]
    pack = tmp_path / "held.jsonl"
    pack.write_bytes(response.content)
    report = verify_scoped_export(pack, verifier_keys=keys, checkpoint=saved)
    assert report.ok, report

    assert gateway_state.audit is not None
    fork = sign_checkpoint(
        Checkpoint(gateway_state.settings.audit_log_origin, size, b"\x07" * 32),
        gateway_state.audit.signer,
    )
    forked = verify_scoped_export(pack, verifier_keys=keys, checkpoint=fork)
    assert forked.report.problem is Problem.ROOT_MISMATCH, forked
    assert "rewritten or forked" in forked.report.detail

    def edit(lines: list[Any]) -> None:
        proof = lines[0]["consistency"]["proof"]
        proof[-1] = ("0" if proof[-1][0] != "0" else "1") + proof[-1][1:]

    changed = verify_scoped_export(_rewrite(pack, edit), verifier_keys=keys, checkpoint=saved)
    assert changed.report.problem is Problem.ROOT_MISMATCH, changed

    plain = tmp_path / "plain.jsonl"
    plain.write_bytes((await officers[AREA_OFFICER].get(EXPORT)).content)
    with pytest.raises(ExportError, match=f"since {size}"):
        verify_scoped_export(plain, verifier_keys=keys, checkpoint=saved)
    latest = (await http.get("/v1/audit/checkpoint")).text
    assert verify_scoped_export(plain, verifier_keys=keys, checkpoint=latest).ok
    other = Ed25519NoteSigner(gateway_state.settings.audit_log_origin)
    untrusted = sign_checkpoint(parse_checkpoint(parse_signed_note(saved).text), other)
    refused = verify_scoped_export(pack, verifier_keys=keys, checkpoint=untrusted)
    assert refused.report.problem is Problem.CHECKPOINT_INVALID, refused


async def test_a_scoped_pack_older_than_the_saved_checkpoint_fails_as_behind_it(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
) -> None:
    """A pack of a smaller tree than the checkpoint the officer saved (a log rolled back, or an
    old pack) fails held to it, as the full pack does (`Problem.TRUNCATED`)."""
    pack = tmp_path / "old.jsonl"
    pack.write_bytes((await officers[AREA_OFFICER].get(EXPORT)).content)
    await _saved_then_grown(http, gateway_state)
    newer = (await http.get("/v1/audit/checkpoint")).text
    report = verify_scoped_export(pack, verifier_keys=await _trusted_keys(http), checkpoint=newer)
    assert report.report.problem is Problem.TRUNCATED, report
    assert "behind what you saw" in report.report.detail


@pytest.mark.parametrize(
    "consistency",
    [
        {"from_size": True, "proof": []},
        {"from_size": 10**6, "proof": []},  # beyond the pack's tree
        {"from_size": 3, "proof": ["zz" * 32]},
        {"from_size": 3, "proof": ["00" * 32] * 66},
        {"from_size": 3, "proof": "00" * 32},
        {"from_size": 3},
        {"from_size": 3, "proof": [], "extra": 1},
        [3, []],
    ],
    ids=["boolean", "beyond", "not-hex", "too-long", "not-a-list", "no-proof", "extra", "list"],
)
async def test_a_scoped_pack_header_with_a_malformed_consistency_proof_is_refused(
    http: httpx.AsyncClient,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
    consistency: object,
) -> None:
    """Whatever the header's consistency field holds, a malformed one is a clean
    `ExportError`, never a crash or a pass."""
    pack = tmp_path / "scoped.jsonl"
    pack.write_bytes((await officers[AREA_OFFICER].get(EXPORT)).content)
    hostile = _rewrite(pack, lambda lines: lines[0].__setitem__("consistency", consistency))
    with pytest.raises(ExportError, match="consistency"):
        verify_scoped_export(hostile, verifier_keys=await _trusted_keys(http))


@pytest.mark.parametrize(
    ("officer", "since"),
    [
        (AREA_OFFICER, "-1"),
        (AREA_OFFICER, "1e3"),
        (AREA_OFFICER, "\u0663"),  # a digit of another script
        (AREA_OFFICER, "9" * 16),
        (NATIONAL_OFFICER, "3"),  # the full pack holds every entry: it needs no proof
    ],
    ids=["negative", "exponent", "arabic-digit", "too-long", "national"],
)
async def test_a_bad_since_is_400_with_nothing_recorded_and_the_slot_given_back(
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    officer: str,
    since: str,
) -> None:
    """``since`` must be a whole number, given once, asked for a scoped pack; otherwise 400,
    no export recorded, no slot held; on the console too."""
    for url in (EXPORT, ISSUER + "/console/export.jsonl"):
        response = await officers[officer].get(url, params={"since": since})
        assert (response.status_code, response.json()["code"]) == (400, "invalid_parameter")
        repeated = await officers[officer].get(url, params=[("since", "1"), ("since", "1")])
        assert repeated.status_code == 400
    assert exports.export_slots(oauth_app).held == 0
    assert await _exports(gateway_state) == []


async def test_since_beyond_the_log_is_409_and_recorded_as_a_refusal_with_both_sizes(
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
) -> None:
    """A ``since`` larger than the tree the latest checkpoint signs (the officer saved a
    checkpoint of a larger log than the gateway now holds: a rollback or a fork) is 409, and
    the refusal is recorded with the size asked and the log's, before any slot is taken; on the
    console too. With every slot held it is still that 409, not a 429."""
    size = len(entry_ids)
    slots = exports.export_slots(oauth_app)
    held = 0
    while slots.take():  # every slot held
        held += 1
    assert held == EXPORTS
    try:
        for url in (EXPORT, ISSUER + "/console/export.jsonl"):
            response = await officers[AREA_OFFICER].get(url, params={"since": str(size + 1)})
            assert response.status_code == 409, response.text
            body = response.json()
            assert body["code"] == "conflict"
            assert "smaller tree than the checkpoint you saved" in body["detail"]
    finally:
        for _ in range(held):
            slots.give_back()
    (refused,) = [e for e in await _exports(gateway_state) if e.outcome == "refused"]
    assert (refused.rule, refused.reason_code) == (PACK_RULE, "since_beyond_checkpoint")
    assert (refused.detail["since"], refused.detail["tree_size"]) == (size + 1, size)
    async with gateway_state.db.read() as session:
        console = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.operation == "console", AuditEntry.officer_id == AREA_OFFICER
                )
            )
        ).all()
    (seen,) = [e for e in console if e.detail.get("action") == "export_pack"]
    assert (seen.outcome, seen.reason_code, seen.detail["since"]) == (
        "refused",
        "since_beyond_checkpoint",
        size + 1,
    )


async def test_an_officer_with_no_scope_sending_since_is_refused_and_recorded_as_before(
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
) -> None:
    """The refusal of a caller who may have no pack comes first: its 403 is recorded, whatever
    ``since`` it sends."""
    response = await officers[NO_SCOPE_OFFICER].get(EXPORT, params={"since": "x"})
    assert response.status_code == 403
    (refused,) = await _exports(gateway_state)
    assert refused.reason_code == NO_REVIEW_SCOPE


@pytest.mark.parametrize("since", ["", "0", "same"])
async def test_since_zero_its_own_size_or_left_empty_gives_a_pack_that_verifies(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
    since: str,
) -> None:
    """``since`` 0 (the empty tree) and the log's own size need an empty proof; a form's empty
    field asks for none. Each pack verifies, held to the latest checkpoint too, and the export's
    entry records the ``since`` asked."""
    latest = (await http.get("/v1/audit/checkpoint")).text
    asked = str(_size_of(latest)) if since == "same" else since
    response = await officers[AREA_OFFICER].get(EXPORT, params={"since": asked})
    assert response.status_code == 200, response.text
    header = json.loads(response.text.splitlines()[0])
    if asked:
        assert header["consistency"] == {"from_size": int(asked), "proof": []}
    else:
        assert "consistency" not in header
    pack = tmp_path / "pack.jsonl"
    pack.write_bytes(response.content)
    keys = await _trusted_keys(http)
    assert verify_scoped_export(pack, verifier_keys=keys, checkpoint=latest).ok
    (export,) = await _exports(gateway_state)
    assert export.detail.get("since") == (int(asked) if asked else None)


async def test_consistency_proofs_across_tiles_verify_from_every_saved_size(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
) -> None:
    """In a log of more than one 256-leaf tile, a pack since any earlier size, at and around
    tile edges, holds a proof that verifies against that size's signed root, and no other's."""
    saved = {}
    for grow in (230, 30, 40):
        saved[_size_of((await http.get("/v1/audit/checkpoint")).text)] = (
            await http.get("/v1/audit/checkpoint")
        ).text
        await _bulk(gateway_state, grow)
        await _sequence(gateway_state)
    keys = await _trusted_keys(http)
    latest = (await http.get("/v1/audit/checkpoint")).text
    assert _size_of(latest) > 256 + 1
    for size, note in saved.items():
        response = await officers[AREA_OFFICER].get(EXPORT, params={"since": str(size)})
        pack = tmp_path / f"since-{size}.jsonl"
        pack.write_bytes(response.content)
        assert verify_scoped_export(pack, verifier_keys=keys, checkpoint=note).ok, size
        for other, other_note in saved.items():
            if other != size:
                with pytest.raises(ExportError):  # a proof from another size proves nothing
                    verify_scoped_export(pack, verifier_keys=keys, checkpoint=other_note)


async def test_a_parameter_is_400_and_no_checkpoint_yet_is_503_with_the_slot_given_back(
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
) -> None:
    """The route takes no parameter; before any checkpoint there is nothing verifiable."""
    national = officers[NATIONAL_OFFICER]
    bad = await national.get(EXPORT, params={"tree_size": "3"})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_parameter")
    early = await national.get(EXPORT)
    assert early.status_code == 503
    assert early.headers["content-type"].startswith("application/problem+json")
    assert exports.export_slots(oauth_app).held == 0
    assert await _exports(gateway_state) == []


async def _bulk(state: GatewayState, count: int) -> None:
    async with state.db.write() as session:
        for i in range(count):
            record(
                session,
                AuditEvent(
                    operation=Operation.CONSULTATION,
                    outcome=Outcome.ALLOWED,
                    agency_id="agency-bulk",
                    nominal_ref=f"N{i:05d}",
                    detail={"pad": "p" * 300},
                ),
            )


async def test_the_pack_is_streamed_in_bounded_chunks_and_verifies(
    http: httpx.AsyncClient,
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
) -> None:
    """A large log leaves as many body messages of about 64 KiB, never one document built in
    memory; joined, they verify and cover the signed tree the export recorded."""
    await _bulk(gateway_state, 600)
    await _sequence(gateway_state)
    status, bodies = await download(
        oauth_app, "/v1/audit/export", officers[NATIONAL_OFFICER].headers["cookie"]
    )
    assert status == 200
    assert len(bodies) >= 4, [len(b) for b in bodies]
    assert max(len(b) for b in bodies) < 64 * 1024 + 4096
    pack = tmp_path / "streamed.jsonl"
    pack.write_bytes(b"".join(bodies))
    report = verify_export(pack, verifier_keys=await _trusted_keys(http))
    assert report.ok and report.tree_size >= 600 + len(entry_ids)
    (export,) = await _exports(gateway_state)
    assert export.detail["tree_size"] == report.tree_size
    assert exports.export_slots(oauth_app).held == 0


async def test_with_every_export_slot_held_the_api_is_429_and_audited(
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
) -> None:
    """The console's slots held: the API's pack is 429 with Retry-After, recorded as a refused
    export_pack with reason console_busy; a slot freed, it goes ahead and gives it back."""
    slots = Slots(EXPORTS)
    oauth_app.state.console_export_slots = slots
    slots.held = EXPORTS
    national = officers[NATIONAL_OFFICER]
    busy = await national.get(EXPORT)
    assert busy.status_code == 429
    assert busy.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    (refused,) = await _exports(gateway_state)
    assert (refused.outcome, refused.reason_code) == ("refused", "console_busy")
    assert refused.detail["via"] == "console" and refused.officer_id == NATIONAL_OFFICER
    slots.held = EXPORTS - 1
    assert (await national.get(EXPORT)).status_code == 200
    assert slots.held == EXPORTS - 1
    assert [e.outcome for e in await _exports(gateway_state)] == ["refused", "allowed"]


@pytest.mark.parametrize(
    ("sending", "refused"),
    [
        ("/v1/audit/export", "/console/export.jsonl"),
        ("/v1/audit/export", "/console/export.csv"),
        ("/console/export.jsonl", "/v1/audit/export"),
    ],
)
async def test_the_console_and_the_api_share_one_pool_of_export_slots(
    http: httpx.AsyncClient,
    oauth_app: FastAPI,
    gateway_state: GatewayState,
    officers: dict[str, httpx.AsyncClient],
    entry_ids: list[str],
    tmp_path: Path,
    sending: str,
    refused: str,
) -> None:
    """With one slot left, a pack being sent by one holds it: an export asked of the other
    meanwhile is 429; once the first is sent its slot is free again, and its pack verifies."""
    await _bulk(gateway_state, 300)  # a pack of several body messages
    await _sequence(gateway_state)
    slots = Slots(EXPORTS)
    oauth_app.state.console_export_slots = slots
    slots.held = EXPORTS - 1
    national = officers[NATIONAL_OFFICER]
    answers: list[httpx.Response] = []

    async def meanwhile() -> None:
        assert slots.held == EXPORTS
        answers.append(await national.get(refused))

    status, bodies = await download(oauth_app, sending, national.headers["cookie"], meanwhile)
    assert status == 200 and len(bodies) >= 2
    (busy,) = answers
    assert busy.status_code == 429
    assert busy.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert slots.held == EXPORTS - 1
    pack = tmp_path / "pack.jsonl"
    pack.write_bytes(b"".join(bodies))
    assert verify_export(pack, verifier_keys=await _trusted_keys(http)).ok
    async with gateway_state.db.read() as session:
        rows = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    busy_refusals = [row for row in rows if row.reason_code == "console_busy"]
    assert len(busy_refusals) == 1
    expected = "console" if refused.startswith("/console") else "consultation"
    assert busy_refusals[0].operation == expected


async def test_the_openapi_document_declares_the_pack_and_its_problems(
    http: httpx.AsyncClient,
) -> None:
    """The 200 is application/jsonl; the refusals are problems, as on every /v1 route."""
    document = (await http.get("/openapi.json")).json()
    responses = document["paths"]["/v1/audit/export"]["get"]["responses"]
    assert set(responses["200"]["content"]) == {"application/jsonl"}
    for status in ("400", "401", "403", "429", "503", "default"):
        assert set(responses[status]["content"]) == {"application/problem+json"}, status
