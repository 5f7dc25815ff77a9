"""The agency inbox: pull what the gateway holds for you, then acknowledge it.

``GET /v1/inbox?cursor=&limit=`` answers ``{"messages": [{id, kind, created_at, body}],
"next_cursor": ...}``: each ``body`` is the compact JWE sealed to the calling agency at enqueue
(open it with the agency's encryption key; the gateway's signature is inside). ``POST
/v1/inbox/{id}/ack`` marks one delivered, so no relay pushes it again; acknowledging twice is
harmless. Both need the scope ``inbox:read`` and the usual context headers, with a legal basis and
purpose that fit the caller's role (as any case call: 403 otherwise), and both are audited
(an acknowledgement of a message that is not the caller's answers 404 and is audited as refused).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, NoReturn

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.audit.commit import Audited, commit_audited, record_alone
from gateway.delivery.inbox import InboxPage, acknowledge, list_inbox
from gateway.domain import Scope
from gateway.flow import lawful_basis
from gateway.flow.audit import AuditEvent, Operation, Outcome
from gateway.flow.authenticate import Caller, authenticate
from gateway.http.problems import openapi_problems
from gateway.logs import get_logger
from gateway.state import GatewayState

__all__ = ["INBOX_SCOPE", "router"]

INBOX_SCOPE: Final = Scope.INBOX_READ.value
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

router = APIRouter(prefix="/v1/inbox", tags=["inbox"], responses=openapi_problems(query=True))
log = get_logger("gateway.inbox")


def _event(caller: Caller, operation: Operation, outcome: Outcome, **fields: object) -> AuditEvent:
    return AuditEvent.model_validate(
        {
            "operation": operation,
            "outcome": outcome,
            "agency_id": caller.agency_id,
            "officer_id": caller.officer,
            "legal_basis": caller.legal_basis,
            "purpose": caller.purpose,
            "request_id": caller.request_id,
            **fields,
        }
    )


async def inbox_caller(
    request: Request, caller: Annotated[Caller, Depends(authenticate)]
) -> Caller:
    """The authenticated caller, if it holds ``inbox:read`` and states a legal basis and purpose
    that fit its role (else 403, audited with the rule that refused). The inbox holds case data
    about many nominals, so the basis is checked as for a call about a nominal whose own
    conditions (an s.325(4A)(c) decision) are held by each message's need-to-know decision."""
    state: GatewayState = request.app.state.gateway
    if not caller.has_scope(INBOX_SCOPE):
        await _refused(
            state,
            caller,
            errors.AccessDenied(diagnostics={"reason": "scope_missing"}),
            rule="scope-required",
            reason_code="scope_missing",
            detail={"resource": "inbox", "scope": INBOX_SCOPE},
        )
    try:
        lawful_basis.check(caller, concerns_nominal=True)
    except errors.LawfulBasisRefused as exc:
        found = exc.diagnostics
        await _refused(
            state,
            caller,
            exc,
            rule=found.get("rule"),
            policy_version=found.get("policy_version"),
            reason_code=str(found.get("reason_code") or exc.code),
            detail={"resource": "inbox", "code": exc.code},
        )
    return caller


async def _refused(
    state: GatewayState, caller: Caller, exc: errors.GatewayError, **fields: object
) -> NoReturn:
    """Audit the inbox's refusal of ``caller`` (as a consultation refused), then raise ``exc``."""
    try:
        await record_alone(
            state.db, _event(caller, Operation.CONSULTATION, Outcome.REFUSED, **fields)
        )
    except errors.AuditUnavailable:
        log.warning("refusal_not_audited", code=exc.code)
    raise exc


@router.get("", summary="Messages held for the calling agency, oldest first (sealed to it)")
async def inbox(
    request: Request,
    caller: Annotated[Caller, Depends(inbox_caller)],
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> JSONResponse:
    state: GatewayState = request.app.state.gateway

    async def act(session: AsyncSession) -> Audited[InboxPage]:
        page = await list_inbox(
            session, caller.agency_id, limit=limit, cursor=cursor, now=state.clock()
        )
        event = _event(
            caller,
            Operation.DISCLOSURE,
            Outcome.ALLOWED,
            recipients=(caller.agency_id,),
            record_refs=tuple(item.id for item in page.items),
            reason_code="inbox_pulled",
            detail={"resource": "inbox", "returned": len(page.items)},
        )
        return Audited(page, event)

    page = await commit_audited(state.db, act)
    if state.metrics is not None:
        state.metrics.dead_lettered(page.dead)
    return JSONResponse(
        {"messages": [item.as_json() for item in page.items], "next_cursor": page.next_cursor}
    )


@router.post("/{message_id}/ack", summary="Acknowledge one message: it is not sent again")
async def ack(
    request: Request, message_id: str, caller: Annotated[Caller, Depends(inbox_caller)]
) -> JSONResponse:
    state: GatewayState = request.app.state.gateway
    if not _UUID.fullmatch(message_id):
        raise errors.NotFound(diagnostics={"reason": "no_such_message"})
    try:

        async def act(session: AsyncSession) -> Audited[str]:
            row = await acknowledge(session, caller.agency_id, message_id, now=state.clock())
            event = _event(
                caller,
                Operation.ALTERATION,
                Outcome.ALLOWED,
                nominal_ref=row.nominal_ref,
                record_refs=(message_id,),
                reason_code="inbox_acknowledged",
                detail={"resource": "inbox", "kind": row.kind},
            )
            return Audited(message_id, event)

        await commit_audited(state.db, act)
    except errors.NotFound:
        refusal = _event(
            caller,
            Operation.ALTERATION,
            Outcome.REFUSED,
            record_refs=(message_id,),
            rule="recipient-only",
            reason_code="not_found",
            detail={"resource": "inbox"},
        )
        try:
            await record_alone(state.db, refusal)
        except errors.AuditUnavailable:
            log.warning("refusal_not_audited", code="not_found")
        raise
    return JSONResponse({"id": message_id, "status": "delivered"})
