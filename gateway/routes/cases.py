"""The case API v1: thin routes over the operations in :mod:`gateway.cases`.

Every route authenticates (DPoP-bound token, fresh proof, ``MAPPA-*`` context headers), then
hands the call to its operation under :func:`gateway.cases.context.guarded`, which audits any
refusal. Bodies with case data travel as ``application/jose`` both ways; writes carry an
``Idempotency-Key``. The body schemas below are those of the JSON inside the signed, encrypted
body (``x-mappa-sealed-schema``); the full contract is in ``docs/api.md``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway import contract
from gateway.cases import (
    actions,
    contributors,
    disclosures,
    hazard_flags,
    level1,
    markers,
    meetings,
    nominals,
    records,
    referrals,
    reports,
)
from gateway.cases.context import Call, guarded
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.contract.markers import WarningMarkerRevocationIn
from gateway.flow.audit import Operation
from gateway.flow.authenticate import Caller, authenticate_deferred

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["cases"])
#: Every route here answers through gateway.cases.context.guarded, which spends the caller's
#: DPoP proof in the transaction that commits the answer (one commit per call).
Authenticated = Annotated[Caller, Depends(authenticate_deferred)]

_SEALED = {
    "type": "string",
    "description": "Compact JWE (ECDH-ES+A256KW or RSA-OAEP-256, A256GCM) around a JWS",
}
_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
    for name in ("DPoP", "MAPPA-Legal-Basis", "MAPPA-Purpose", "MAPPA-Officer")
]


def _sealed_answer(model: type[BaseModel] | None, status: int = 200) -> dict[int | str, Any]:
    content: dict[str, Any] = {"schema": _SEALED}
    if model is not None:
        content["x-mappa-sealed-schema"] = model.model_json_schema()
    return {status: {"description": "Sealed to the caller", "content": {JOSE_MEDIA_TYPE: content}}}


def _sealed_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a request body of ``model`` sealed to the gateway."""
    return {
        "required": True,
        "content": {
            JOSE_MEDIA_TYPE: {"schema": _SEALED, "x-mappa-sealed-schema": model.model_json_schema()}
        },
    }


def _write(model: type[BaseModel], status: int = 201) -> dict[str, Any]:
    """OpenAPI for a write: a sealed body of ``model``, an Idempotency-Key, a sealed AckOut."""
    return {
        "openapi_extra": {
            "parameters": [
                *_HEADERS,
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                },
            ],
            "requestBody": _sealed_body(model),
        },
        "responses": _sealed_answer(contract.AckOut, status),
        "status_code": status,
        "response_class": Response,
    }


def _read(model: type[BaseModel] | None) -> dict[str, Any]:
    return {
        "openapi_extra": {"parameters": _HEADERS},
        "responses": _sealed_answer(model),
        "response_class": Response,
    }


def _lookup(model: type[BaseModel], answer: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a read whose question is sealed in a POST body (it names an identifier that
    must not be in the URL): no Idempotency-Key, a sealed answer of ``answer``."""
    return {
        "openapi_extra": {
            "parameters": _HEADERS,
            "requestBody": _sealed_body(model),
        },
        "responses": _sealed_answer(answer),
        "response_class": Response,
    }


def _call(request: Request, caller: Caller, operation: Operation) -> Call:
    return Call.start(request, caller, operation)


# ------------------------------------------------------------------------------ referrals


@router.post(
    "/referrals",
    summary="Refer a subject (MAPPA A, or a non-offender: not MAPPA)",
    **_write(contract.ReferralIn),
)
async def post_referral(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, referrals.create_referral(call))


# ------------------------------------------------------------------------------- nominals


@router.post(
    "/nominals/lookup",
    summary="Find a nominal by its PNC id, CRN or ViSOR reference (in the sealed body)",
    **_lookup(contract.NominalLookupIn, contract.NominalView),
)
async def post_nominal_lookup(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.CONSULTATION)
    return await guarded(call, nominals.lookup_nominal(call))


@router.get(
    "/nominals/{nominal_id}",
    summary="A nominal, as the caller may see it",
    **_read(contract.NominalView),
)
async def get_nominal(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, nominals.read_nominal(call, nominal_id))


@router.post(
    "/nominals/{nominal_id}/level",
    summary="Change the level (Responsible Authority)",
    **_write(contract.LevelChangeIn, 200),
)
async def post_level(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, nominals.change_level(call, nominal_id))


@router.post(
    "/nominals/{nominal_id}/category",
    summary="Change the category (Responsible Authority)",
    **_write(contract.CategoryChangeIn, 200),
)
async def post_category(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, nominals.change_category(call, nominal_id))


@router.post(
    "/nominals/{nominal_id}/screening",
    summary="Record the screening outcome (Responsible Authority)",
    **_write(contract.ScreeningIn, 200),
)
async def post_screening(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, nominals.record_screening(call, nominal_id))


@router.post(
    "/nominals/{nominal_id}/deregistration",
    summary="Deregister the nominal (Responsible Authority)",
    **_write(contract.DeregistrationIn, 200),
)
async def post_deregistration(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, nominals.deregister(call, nominal_id))


# -------------------------------------------------------------------------------- records


@router.post(
    "/nominals/{nominal_id}/records",
    summary="Share an information record",
    **_write(contract.RecordIn),
)
async def post_record(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, records.create_record(call, nominal_id))


@router.get(
    "/nominals/{nominal_id}/records",
    summary="The records the caller may see (cursor pages)",
    **_read(None),
)
async def get_records(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, records.list_records(call, nominal_id))


@router.get(
    "/nominals/{nominal_id}/records/{record_id}", summary="One record", **_read(contract.RecordView)
)
async def get_record(
    request: Request, nominal_id: str, record_id: str, caller: Authenticated
) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, records.read_record(call, nominal_id, record_id))


# ------------------------------------------------------------------------------- meetings


@router.post("/meetings", summary="Convene a meeting about a nominal", **_write(contract.MeetingIn))
async def post_meeting(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, meetings.create_meeting(call))


@router.post(
    "/meetings/{meeting_id}/participants",
    summary="Set participation: invited, attended, minutes only (chair)",
    **_write(contract.ParticipantsIn, 200),
)
async def post_participants(request: Request, meeting_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, meetings.set_participants(call, meeting_id))


@router.post(
    "/meetings/{meeting_id}/minutes",
    summary="Minutes (MAPPA B), circulated to participants only",
    **_write(contract.MinutesIn),
)
async def post_minutes(request: Request, meeting_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, meetings.create_minutes(call, meeting_id))


@router.get(
    "/meetings/{meeting_id}/minutes",
    summary="The minutes: in full to participants, approved parts to a recipient",
    **_read(contract.MinutesView),
)
async def get_minutes(request: Request, meeting_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, meetings.read_minutes(call, meeting_id))


@router.post(
    "/meetings/{meeting_id}/reports",
    summary="A written report from an agency invited that cannot attend",
    **_write(contract.WrittenReportIn),
)
async def post_report(request: Request, meeting_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, reports.create_report(call, meeting_id))


@router.get(
    "/meetings/{meeting_id}/reports",
    summary="The meeting's written reports (chair, co-ordinator, participants)",
    **_read(None),
)
async def get_reports(request: Request, meeting_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, reports.list_reports(call, meeting_id))


@router.post(
    "/meetings/{meeting_id}/actions", summary="An action point (chair)", **_write(contract.ActionIn)
)
async def post_action(request: Request, meeting_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, meetings.create_action(call, meeting_id))


# --------------------------------------------------------------------------- disclosures


@router.post(
    "/disclosures",
    summary="Ask to share minutes beyond the meeting",
    **_write(contract.DisclosureIn),
)
async def post_disclosure(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, disclosures.request_disclosure(call))


@router.post(
    "/disclosures/{disclosure_id}/decision",
    summary="Approve or refuse an onward disclosure (chair or co-ordinator)",
    **_write(contract.DecisionIn, 200),
)
async def post_decision(request: Request, disclosure_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, disclosures.decide_disclosure(call, disclosure_id))


# -------------------------------------------------------------------------- hazard flags


@router.post(
    "/hazard-flags",
    summary="Raise an HZD flag for children's services",
    **_write(contract.HazardFlagIn),
)
async def post_hazard_flag(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, hazard_flags.raise_hazard_flag(call))


@router.get(
    "/hazard-flags/{flag_id}",
    summary="A hazard flag (its recipient, the RA, the lead)",
    **_read(contract.HazardFlagView),
)
async def get_hazard_flag(request: Request, flag_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, hazard_flags.read_hazard_flag(call, flag_id))


# ------------------------------------------------------------------------ warning markers


@router.post(
    "/warning-markers",
    summary="Mark a property for a housing provider (PWM; Responsible Authority)",
    **_write(contract.WarningMarkerIn),
)
async def post_warning_marker(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, markers.raise_warning_marker(call))


@router.get(
    "/nominals/{nominal_id}/warning-markers",
    summary="The warning markers raised on a nominal (Responsible Authority; cursor pages)",
    **_read(None),
)
async def get_warning_markers(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, markers.list_warning_markers(call, nominal_id))


@router.post(
    "/warning-markers/{marker_id}/revocation",
    summary="Revoke a warning marker; housing removes the PWM (Responsible Authority)",
    **_write(WarningMarkerRevocationIn, 200),
)
async def post_warning_marker_revocation(
    request: Request, marker_id: str, caller: Authenticated
) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, markers.revoke_warning_marker(call, marker_id))


# ------------------------------------------------------------------------- level 1 list


@router.get("/level-1-list", summary="The monthly level 1 list of the caller's area", **_read(None))
async def get_level_1_list(request: Request, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.DISCLOSURE)
    return await guarded(call, level1.read_level_1_list(call))


# ---------------------------------------------------------- s.325(4A)(c) contributor decisions


@router.post(
    "/nominals/{nominal_id}/contributors",
    summary="Record that an agency could contribute, s.325(4A)(c) (Responsible Authority)",
    **_write(contract.ContributorIn),
)
async def post_contributor(request: Request, nominal_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.COLLECTION)
    return await guarded(call, contributors.record_contributor(call, nominal_id))


@router.post(
    "/nominals/{nominal_id}/contributors/{decision_id}/revocation",
    summary="Revoke an s.325(4A)(c) decision (Responsible Authority)",
    **_write(contract.ContributorRevocationIn, 200),
)
async def post_contributor_revocation(
    request: Request, nominal_id: str, decision_id: str, caller: Authenticated
) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, contributors.revoke_contributor(call, nominal_id, decision_id))


@router.post(
    "/actions/{action_id}/status",
    summary="Move an action point: open, in progress, done, cancelled (owner or chair)",
    **_write(contract.ActionStatusIn, 200),
)
async def post_action_status(request: Request, action_id: str, caller: Authenticated) -> Response:
    call = _call(request, caller, Operation.ALTERATION)
    return await guarded(call, actions.update_action_status(call, action_id))
