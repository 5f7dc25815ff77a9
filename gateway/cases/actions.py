"""Action points' status: open, in progress, done or cancelled, by their owner or the chair.

An action point (:func:`gateway.cases.meetings.create_action`) belongs to its owner agency; the
meeting's chair agency and the MAPPA co-ordination unit of the nominal's area answer for it too.
:data:`TRANSITIONS` is the whole rule: which status may follow which, and who may make the move.
The owner reports progress; only the chair or co-ordinator cancels an action or reopens one
that was done. Every change is kept (:class:`~gateway.store.models.ActionUpdate`, the note
sealed) and audited. Whoever may not know of the nominal gets the opaque 404; whoever may know
of it but is neither the owner nor the chair gets 403.

An action point is read (:func:`read_action`) by its owner while it involves the owner (open or
in progress, to its review or due date), and by those who may read the meeting's minutes (its
participants, the chair among them, and the area's co-ordinator), redacted as the minutes'
action points are: one that cites a source the reader may not see, or whose minutes a caveat
withholds from the reader, is to it one that does not exist (404, audited with the rule).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents
from gateway.cases.context import READ, WRITE, Call, Written, inbound, released, write
from gateway.cases.subjects import is_chair_or_coordinator, visible_nominal, well_formed
from gateway.contract import AckOut, ActionStatusIn
from gateway.domain import ActionStatus
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.audit import Operation, Outcome
from gateway.store.models import Action, ActionUpdate, Meeting, Minutes, new_id

__all__ = ["TRANSITIONS", "Actor", "read_action", "update_action_status"]


class Actor(enum.StrEnum):
    """Who answers for an action point."""

    #: The agency that owns the action.
    OWNER = "owner"
    #: The meeting's chair agency, or the MAPPA co-ordination unit of the nominal's area.
    CHAIR = "chair"


_BOTH = frozenset({Actor.OWNER, Actor.CHAIR})
_CHAIR = frozenset({Actor.CHAIR})
_S = ActionStatus

#: (from, to) -> who may make the move. A move not listed is refused (409); done and cancelled
#: are final except that the chair may reopen a done action.
TRANSITIONS: Mapping[tuple[ActionStatus, ActionStatus], frozenset[Actor]] = MappingProxyType(
    {
        (_S.OPEN, _S.IN_PROGRESS): _BOTH,
        (_S.OPEN, _S.DONE): _BOTH,
        (_S.OPEN, _S.CANCELLED): _CHAIR,
        (_S.IN_PROGRESS, _S.OPEN): _BOTH,
        (_S.IN_PROGRESS, _S.DONE): _BOTH,
        (_S.IN_PROGRESS, _S.CANCELLED): _CHAIR,
        (_S.DONE, _S.OPEN): _CHAIR,
    }
)
_TABLE = "action_updates"


def _forbidden(rule: str, why: str) -> errors.AccessDenied:
    return errors.AccessDenied(diagnostics={"rule": rule, "why": why})


async def update_action_status(call: Call, action_id: str) -> Response:
    """POST /v1/actions/{id}/status: move an action point along :data:`TRANSITIONS`."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ActionStatusIn)
        if body.replay is not None:
            return body.replay
        action = await session.get(Action, action_id) if well_formed(action_id) else None
        meeting = await session.get(Meeting, action.meeting_id) if action is not None else None
        if action is None or meeting is None:
            raise need_to_know.not_found("action")
        nominal, decision = await visible_nominal(call, session, meeting.nominal_id)
        actors = {Actor.OWNER} if action.owner_agency_id == call.caller.agency_id else set()
        if is_chair_or_coordinator(call, meeting, nominal):
            actors.add(Actor.CHAIR)
        if not actors:
            # 404, as the action's read answers, to an agency that may not know of the action
            # (it may know of the nominal); 403 only to one that may read it
            await _readable(call, session, action, meeting)
            raise _forbidden("action-owner-or-chair", "neither the owner nor the chair")
        old, new = ActionStatus(action.status), body.body.status
        allowed = TRANSITIONS.get((old, new))
        if allowed is None:
            raise errors.Conflict(
                diagnostics={"reason": "action_transition_not_allowed", "why": f"{old} -> {new}"}
            )
        if not actors & allowed:
            raise _forbidden("action-transition-actor", f"{old} -> {new} is the chair's")
    call.record_refs = (meeting.id, action.id)
    update = ActionUpdate(
        id=new_id(),
        action_id=action.id,
        agency_id=call.caller.agency_id,
        officer=call.caller.officer,
        from_status=str(old),
        to_status=str(new),
        created_at=call.now,
    )
    if body.body.note is not None:
        update.note_sealed = call.case_sealer.seal(
            _TABLE, update.id, "note_sealed", {"note": body.body.note}
        )

    async def act(session: AsyncSession) -> Audited[Written]:
        row = await session.get(Action, action.id, with_for_update=True)
        if row is None or row.status != old:  # another update got there first
            raise errors.Conflict(diagnostics={"reason": "action_changed_meanwhile"})
        row.status = new
        session.add(update)
        ack = AckOut(id=row.id, status=str(new), nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.ALTERATION,
            rule=decision.rule,
            policy_version=decision.policy_version,
            detail={
                "resource": "action",
                "from": str(old),
                "to": str(new),
                "as": sorted(actors),
                "owner": row.owner_agency_id,
                "note": update.note_sealed is not None,
            },
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)


async def _readable(
    call: Call, session: AsyncSession, action: Action, meeting: Meeting
) -> tuple[policies.Decision, redact.Released]:
    """The caller's need-to-know decision on the action point and the point as released to
    it; the 404 of an action that does not exist to an agency that may not know of it, or
    from which redaction withholds it (the audit names the rule)."""
    target = policies.ActionTarget(action.id, meeting.id, action.owner_agency_id)
    _, decision = await visible_nominal(call, session, meeting.nominal_id, target)
    call.record_refs = (meeting.id, action.id)
    minutes = await session.scalar(select(Minutes).where(Minutes.meeting_id == meeting.id))
    body = documents.stored_minutes_body(minutes, call.case_sealer) if minutes else {}
    document = documents.action_minutes_document(
        meeting, body, documents.action_document(action, call.case_sealer)
    )
    release = redact.action_point(
        call.agency,
        document,
        action_id=action.id,
        purpose=call.caller.purpose,
        # the minutes' author supplied their sources; before the minutes, the chair
        originator_agency_id=minutes.author_agency_id if minutes else meeting.chair_agency_id,
    )
    if (rule := redact.withheld_action(release, document, action.id)) is not None:
        raise errors.NotFound(  # as if there were none; the audit names the rule
            diagnostics={
                "reason_code": "withheld",
                "rule": rule,
                "why": "redaction withholds the action point from this agency",
                "policy_version": release.policy_version,
            }
        )
    return decision, release


async def read_action(call: Call, action_id: str) -> Response:
    """GET /v1/actions/{id}: the action point, to its owner and the meeting's minutes readers,
    redacted as the minutes' action points are; 404 to anyone else."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        action = await session.get(Action, action_id) if well_formed(action_id) else None
        meeting = await session.get(Meeting, action.meeting_id) if action is not None else None
        if action is None or meeting is None:
            raise need_to_know.not_found("action")
        decision, release = await _readable(call, session, action, meeting)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    sealed = call.answer(release.document, caller_keys)
    await released(call, decision, release.withheld, sealed)
    return deliver.jose_response(sealed)
