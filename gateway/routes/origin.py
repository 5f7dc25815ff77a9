"""Evidence of origin for the IG officer: ``GET /v1/audit/origin/{entry_id}`` (IG only).

Who may call it is decided as for the audit entries (:func:`gateway.routes.audit.ig_reader`):
an IG officer's console session, or a MAPPA co-ordination unit's system holding ``audit:read``.
The answer is the checks of :func:`gateway.audit.origin.verify_origin` on the agency's own
signed JWS of the write that audit entry records, and, for an IG officer's console session
only, the JWS itself. The JWS is the body as the agency signed it, third-party sources and
caveated records included, and a signature cannot survive redaction: so it goes whole to the IG
officer or not at all, never to an agency system (which gets the checks and the digest, for
writes by agencies of its own area only, and only of an entry it sees as stored: one about a
nominal it may know of, `gateway.audit.agency_view`; any other is 404, as one with no evidence,
and its refusal reads to the agency as that one's).
A console officer gets the evidence of an entry of their review scope only
(`gateway.console.scope`); any other is the 404 of an entry with no evidence, decided before
the evidence is read, by the query that finds no such entry.
The read is audited before anything is returned (no audit, no disclosure); an agency reader
gets the answer as ``application/jose`` sealed to its registered encryption key, a console
session JSON over the console's own TLS session. An entry with no evidence (not an agency write,
or one written before evidence was kept) is 404, audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from gateway import errors
from gateway.audit.agency_view import AgencyView
from gateway.audit.commit import Audited, commit_audited, record_alone
from gateway.audit.origin import OriginReport, load_origin
from gateway.audit.search import entry_within
from gateway.cases.context import answered_fields
from gateway.contract.types import is_resource_id
from gateway.flow import deliver
from gateway.flow.audit import Outcome
from gateway.flow.seal import agency_public_jwks
from gateway.http.problems import openapi_problems
from gateway.routes.audit import IGReader, ig_reader
from gateway.state import GatewayState
from gateway.store.models import Agency, AuditEntry

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=openapi_problems(query=True))
#: An audit entry id is a UUID, as the gateway made it.


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


@router.get(
    "/origin/{entry_id}",
    summary="The checks on a write's signed JWS; the JWS itself to a console IG officer",
    response_model=None,
)
async def origin(
    request: Request, entry_id: str, reader: Annotated[IGReader, Depends(ig_reader)]
) -> Response:
    state = _state(request)
    if request.query_params:
        raise errors.InvalidParameter("no parameters are accepted")
    if state.case_sealer is None:
        raise errors.Unavailable(diagnostics={"reason": "case_sealer_unavailable"})
    sealer, now = state.case_sealer, state.clock()
    detail: dict[str, object] = {
        "resource": "origin_evidence",
        "action": "retrieve",
        "via": reader.via,
    }
    route = request.url.path
    if not is_resource_id(entry_id):
        await _refuse(state, reader, entry_id, detail, route)
    recipient_keys = None
    if reader.agency_id is not None:
        if state.sealer is None:
            raise errors.Unavailable(diagnostics={"reason": "payload_keys_unavailable"})
        async with state.db.read() as session:
            recipient_keys = await agency_public_jwks(session, reader.agency_id, "enc", now)
        if not recipient_keys:  # nothing in clear: refuse before anything is read
            raise errors.RecipientKeyUnavailable(
                diagnostics={"recipient": reader.agency_id, "reason": "no usable encryption key"}
            )

    view = reader.view(now)

    async def act(session: AsyncSession) -> Audited[OriginReport | None]:
        areas = reader.areas if reader.via == "console" else None
        if areas is not None and await entry_within(session, entry_id, areas) is None:
            refusal = _refusal(entry_id, {**detail, **reader.scope_detail()}, route)
            if await entry_within(session, entry_id, None) is not None:  # else: no such entry
                refusal["rule"] = "origin-evidence-of-officer-scope"
            return Audited(None, reader.event(Outcome.REFUSED, **refusal))
        refusal = _refusal(entry_id, detail, route)
        report = await load_origin(session, sealer, entry_id, issuer=state.settings.issuer)
        if report is None:
            return Audited(None, reader.event(Outcome.REFUSED, **refusal))
        if reader.area is not None and reader.area != await _area_of(session, report.agency_id):
            refusal["rule"] = "origin-evidence-of-own-area"
            return Audited(None, reader.event(Outcome.REFUSED, **refusal))
        hidden = await _not_seen_whole(session, entry_id, view)
        if hidden is not None:
            refusal.update(rule="origin-evidence-need-to-know", nominal_ref=hidden.nominal_ref)
            return Audited(None, reader.event(Outcome.REFUSED, **refusal))
        event = reader.event(
            Outcome.ALLOWED,
            occurred_at=now,
            recipients=(reader.agency_id,) if reader.agency_id else (),
            record_refs=(entry_id,),
            detail={**detail, "agency": report.agency_id, "verified": report.verified},
        )
        return Audited(report, event)

    report = await commit_audited(state.db, act)
    if report is None:
        raise errors.NotFound(diagnostics={"reason_code": "not_found", "why": "no evidence"})
    if reader.agency_id is None:
        body = {**report.summary(), "jws": report.jws}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
    body = report.summary()
    assert state.sealer is not None and recipient_keys is not None
    sealed = deliver.seal_answer(
        state.sealer, body, recipient_id=reader.agency_id, keys=recipient_keys, now=now
    )
    return deliver.jose_response(sealed)


async def _area_of(session: AsyncSession, agency_id: str) -> str | None:
    return await session.scalar(select(Agency.area).where(Agency.id == agency_id))


async def _not_seen_whole(
    session: AsyncSession, entry_id: str, view: AgencyView | None
) -> AuditEntry | None:
    """The entry if an agency reader does not see it as stored (None: a console officer, or an
    entry the agency sees whole)."""
    if view is None:
        return None
    row = await entry_within(session, entry_id, None)
    if row is None:
        return None
    return None if await view.sees_whole(session, row) else row


def _refusal(entry_id: str, detail: dict[str, object], route: str) -> dict[str, object]:
    """The refusal of evidence, recorded (as every 404 refusal is) with what the caller was
    answered: the problem code and the route."""
    answered = answered_fields(errors.NotFound(), route)["detail"]
    return {
        "reason_code": "not_found",
        "rule": "origin-evidence-exists",
        "detail": {**detail, "entry": entry_id[:64], **answered},
    }


async def _refuse(
    state: GatewayState, reader: IGReader, entry_id: str, detail: dict[str, object], route: str
) -> None:
    refusal = _refusal(entry_id, detail, route)
    await record_alone(state.db, reader.event(Outcome.REFUSED, **refusal))
    raise errors.NotFound(diagnostics={"reason_code": "not_found", "why": "malformed entry id"})
