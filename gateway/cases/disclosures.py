"""Onward disclosure: sharing minutes beyond the meeting, with the chair's permission.

A participant asks (``POST /v1/disclosures``) to share parts of a meeting's minutes with an
agency outside it, for example a child protection conference. The meeting's chair agency or the
area's MAPPA co-ordination unit approves some or all of the parts asked for, never more, or
refuses (``POST /v1/disclosures/{id}/decision``). On approval the recipient is pushed exactly
the approved view (conclusions and action points, every third-party source and every item
citing one removed, caveats honoured) and may read the same view from the minutes endpoint.
The minutes' author is told of the disclosure when someone else (the co-ordinator) approved it
(:mod:`gateway.cases.notifications`).

An approval of the whole of ``actions`` is recorded as the action points the meeting has when the
decision is taken (``actions/<id>`` each): the chair approved those, and an action added later
(which may say what must not go beyond the meeting) is never released by it. The push at the
decision and every later read give the same view.

Minutes whose handling caveat withholds the whole of them from the recipient (for example
``no-onward-disclosure``) cannot be approved: 409, nothing sent, the author not told.

A request's status (``GET /v1/disclosures/{id}``: pending, approved or refused, what was approved,
by which officer and when) is read by the agency that asked, while it still takes part in the
meeting, and by those who may decide it (the chair, the co-ordinator), never by its recipient
(which is pushed what was approved) nor anyone else (404); never the minutes themselves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents, notifications
from gateway.cases.context import READ, WRITE, Call, Written, inbound, released, write
from gateway.cases.subjects import (
    VisibleMeeting,
    is_chair_or_coordinator,
    meeting_actions,
    visible_meeting,
    well_formed,
)
from gateway.contract import (
    AckOut,
    DecisionIn,
    DisclosureDecision,
    DisclosureIn,
    DisclosureRequestView,
)
from gateway.contract.disclosures import within
from gateway.domain import AgencyType, DisclosureStatus, Level, Role
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.audit import Operation, Outcome
from gateway.store.models import Agency, OnwardDisclosureRequest, new_id

__all__ = ["decide_disclosure", "explicit_parts", "read_disclosure", "request_disclosure"]

#: Who reads a request's status, beside the need-to-know rule that lets it know the meeting.
REQUESTER, DECIDER = "onward-disclosure-requester", "chair-or-coordinator"


def explicit_parts(
    approved: Sequence[str], actions: Sequence[Mapping[str, Any]]
) -> tuple[str, ...]:
    """``approved`` as what it covers at the decision: the whole of ``actions`` becomes each
    action point of the meeting now (``actions/<id>``), so that no action added after the
    decision is released by it; the conclusions are fixed with the minutes. In order, once each."""
    parts: list[str] = []
    for part in approved:
        named = [f"actions/{action['id']}" for action in actions] if part == "actions" else [part]
        parts.extend(p for p in named if p not in parts)
    return tuple(parts)


def bases_open_to(
    recipient: Agency,
    purpose: str,
    tied: policies.Involvements,
    nominal_id: str,
    now: dt.datetime,
    *,
    recorded: bool = True,
) -> tuple[policies.BasisDecision, ...]:
    """The legal bases of the register under which ``recipient`` (its role and agency type)
    may receive information about the nominal for ``purpose``, sorted by code: an onward
    disclosure for a purpose no basis opens to the recipient has no lawful basis (s.327A
    public disclosure to a mental health trust).

    An other contributor relies on s.325(4A)(c) only as the RA recorded it: a decision naming
    it for this nominal, standing ``now`` and covering ``purpose`` (its decisions are
    ``tied.contributions``). Checked here, not deferred, since the recipient makes no call of
    its own before the disclosure is pushed to it; the decision relied on is in the result.
    Not ``recorded``: the RA's decisions are not looked at (a request by an agency that may not
    see them, whose answer would otherwise say whether one stands and what it covers); the
    chair's approval checks them."""
    register = policies.default_policy_set().legal_bases
    role, agency_type = Role(recipient.role), AgencyType(recipient.agency_type)
    decisions = policies.RecordedContributions(
        agency_id=recipient.id, nominal_id=nominal_id, decisions=tied.contributions, now=now
    )
    found = []
    for code in register.bases:
        try:
            basis = register.check(
                code, purpose, role, agency_type, None, defer_nominal_conditions=True
            )
            if recorded and role is Role.OTHER_CONTRIBUTOR and register.needs_nominal(code):
                basis = register.check(code, purpose, role, agency_type, decisions)
        except policies.LawfulBasisRefused:
            continue
        found.append(basis)
    return tuple(sorted(found, key=lambda basis: basis.basis))


async def _sees_contributor_decisions(
    call: Call, session: AsyncSession, seen: VisibleMeeting
) -> bool:
    """Whether the caller may see the nominal's s.325(4A)(c) decisions, whole (the RA of the
    area: ``GET /v1/nominals/{id}/contributors``); only then does a request's answer say
    whether a decision opens the purpose to the recipient."""
    try:
        decision = await need_to_know.decide(
            session, call.agency, seen.nominal, policies.ContributorDecisionsTarget(), call.now
        )
    except errors.NotFound:
        return False
    return decision.view is policies.View.FULL


def _contributor_decision(bases: Sequence[policies.BasisDecision]) -> dict[str, str]:
    """The RA's s.325(4A)(c) decision an other contributor receives under, for the audit."""
    relied = next((b.contributor_decision for b in bases if b.contributor_decision), None)
    return {"recipient_contributor_decision": relied} if relied else {}


async def request_disclosure(call: Call) -> Response:
    """POST /v1/disclosures: a participant asks to share minutes beyond the meeting."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, DisclosureIn)
        if body.replay is not None:
            return body.replay
        asked = body.body
        seen = await visible_meeting(call, session, asked.meeting_id)
        if seen.decision.view is not policies.View.FULL:
            raise errors.AccessDenied(
                diagnostics={"rule": "participants-ask", "why": f"view {seen.decision.view}"}
            )
        if seen.minutes is None:
            raise errors.Conflict(diagnostics={"reason": "no_minutes_yet"})
        recipient = await session.get(Agency, asked.recipient_agency_id)
        if recipient is None:
            raise errors.ValidationFailed(
                errors=[{"loc": ["recipient_agency_id"], "type": "unknown_agency"}]
            )
        contributor = Role(recipient.role) is Role.OTHER_CONTRIBUTOR
        tied = (
            await need_to_know.involvements(session, recipient.id, seen.nominal.id)
            if contributor
            else policies.Involvements()
        )
        # under the register and the RA's decisions: what the request's audit entry names
        covered = bases_open_to(recipient, asked.purpose, tied, seen.nominal.id, call.now)
        bases = covered
        if contributor and not await _sees_contributor_decisions(call, session, seen):
            # the answer of one that may not see the decisions does not depend on them
            bases = bases_open_to(
                recipient, asked.purpose, tied, seen.nominal.id, call.now, recorded=False
            )
        if not bases:
            raise errors.ValidationFailed(
                errors=[{"loc": ["purpose"], "type": "purpose_not_open_to_recipient"}]
            )
    request_id = new_id()
    call.record_refs = (seen.meeting.id, request_id)

    async def act(session: AsyncSession) -> Audited[Written]:
        row = OnwardDisclosureRequest(
            id=request_id,
            requesting_agency_id=call.caller.agency_id,
            requesting_officer=call.caller.officer,
            meeting_id=seen.meeting.id,
            recipient_agency_id=asked.recipient_agency_id,
            purpose=asked.purpose,
            status=DisclosureStatus.PENDING,
            approved_parts=[],
            created_at=call.now,
        )
        row.details_sealed = call.case_sealer.seal(
            "onward_disclosure_requests",
            request_id,
            "details_sealed",
            {
                "parts": list(asked.parts),
                "recipient_description": asked.recipient_description,
                "reasons": asked.reasons,
            },
        )
        session.add(row)
        ack = AckOut(
            id=request_id, status=str(DisclosureStatus.PENDING), nominal_id=seen.nominal.id
        )
        event = call.event(
            Outcome.ALLOWED,
            rule=seen.decision.rule,
            policy_version=seen.decision.policy_version,
            detail={
                "resource": "onward_disclosure_request",
                "recipient": asked.recipient_agency_id,
                "parts": list(asked.parts),
                "for_purpose": asked.purpose,
                **_contributor_decision(covered),
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def _visible_request(
    call: Call, session: AsyncSession, disclosure_id: str
) -> tuple[OnwardDisclosureRequest, VisibleMeeting]:
    """The request and its meeting, whose minutes the caller may see; otherwise the 404 of a
    request that does not exist."""
    row = (
        await session.get(OnwardDisclosureRequest, disclosure_id)
        if well_formed(disclosure_id)
        else None
    )
    if row is None or row.meeting_id is None:
        raise need_to_know.not_found("disclosure request")
    return row, await visible_meeting(call, session, row.meeting_id)


async def read_disclosure(call: Call, disclosure_id: str) -> Response:
    """GET /v1/disclosures/{id}: the request's status, to the agency that asked and to the
    chair or co-ordinator; 404 to anyone else."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        row, seen = await _visible_request(call, session, disclosure_id)
        call.record_refs = (seen.meeting.id, row.id)
        reader = _reader(call, row, seen)
        asked = call.case_sealer.unseal(
            "onward_disclosure_requests", row.id, "details_sealed", row.details_sealed
        )
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    document = documents.disclosure_request_document(
        row, seen.nominal.id, [str(p) for p in asked.get("parts", ())]
    )
    release = redact.allow_listed(DisclosureRequestView, document, seen.decision.policy_version)
    sealed = call.answer(release.document, caller_keys)
    detail = {"resource": "onward_disclosure_request", "reader_rule": reader}
    await released(call, seen.decision, release.withheld, sealed, detail=detail)
    return deliver.jose_response(sealed)


def _reader(call: Call, row: OnwardDisclosureRequest, seen: VisibleMeeting) -> str:
    """Why the caller may know of the request: the chair or co-ordinator (``DECIDER``), or the
    agency that asked, as a participant that still is one (``REQUESTER``); anyone else, a
    participant that did not ask or the recipient, gets the 404 of a request that does not
    exist (the audit names the rule)."""
    if is_chair_or_coordinator(call, seen.meeting, seen.nominal):
        return DECIDER
    if (
        row.requesting_agency_id == call.caller.agency_id
        and seen.decision.view is policies.View.FULL
    ):
        return REQUESTER
    raise errors.NotFound(
        diagnostics={
            "reason_code": "no_need_to_know",
            "rule": f"{REQUESTER}-or-{DECIDER}",
            "why": f"neither the requesting agency nor the chair or co-ordinator "
            f"(minutes: {seen.decision.rule}, view {seen.decision.view})",
            "policy_version": seen.decision.policy_version,
        }
    )


async def decide_disclosure(call: Call, disclosure_id: str) -> Response:
    """POST /v1/disclosures/{id}/decision: the chair or co-ordinator approves or refuses."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, DecisionIn)
        if body.replay is not None:
            return body.replay
        decided = body.body
        row, seen = await _visible_request(call, session, disclosure_id)
        if _reader(call, row, seen) != DECIDER:  # 404 to one that may not know of the request
            raise errors.AccessDenied(
                diagnostics={"rule": "chair-or-coordinator", "why": "not the chair or co-ordinator"}
            )
        if row.status is not DisclosureStatus.PENDING:
            raise errors.Conflict(diagnostics={"reason": f"already_{row.status}"})
        asked = call.case_sealer.unseal(
            "onward_disclosure_requests", row.id, "details_sealed", row.details_sealed
        )
        requested = tuple(str(p) for p in asked.get("parts", ()))
        if not all(within(part, requested) for part in decided.approved_parts):
            raise errors.ValidationFailed(
                errors=[{"loc": ["approved_parts"], "type": "more_than_requested"}]
            )
        push = None
        approved = tuple(decided.approved_parts)
        notices = notifications.Notices(call, seen.nominal.id)
        recipient_bases: tuple[policies.BasisDecision, ...] = ()
        if decided.decision is DisclosureDecision.APPROVE:
            if seen.minutes is None or row.recipient_agency_id is None:
                raise errors.Conflict(diagnostics={"reason": "no_minutes_yet"})
            actions = await meeting_actions(call, session, seen.meeting.id)
            approved = explicit_parts(decided.approved_parts, actions)
            if not approved:  # only the whole of actions, and the meeting has none yet
                raise errors.Conflict(
                    diagnostics={
                        "reason": "nothing_to_disclose",
                        "why": "the meeting has no actions",
                    }
                )
            recipient = await session.get(Agency, row.recipient_agency_id)
            keys = await call.keys(session, row.recipient_agency_id, "enc")
            if recipient is None:
                raise errors.Conflict(diagnostics={"reason": "recipient_gone"})
            tied = await need_to_know.involvements(session, recipient.id, seen.nominal.id)
            recipient_bases = bases_open_to(recipient, row.purpose, tied, seen.nominal.id, call.now)
            if not recipient_bases:  # the register, or the RA's decision, changed since
                raise errors.Conflict(
                    diagnostics={"reason": "purpose_not_open_to_recipient", "purpose": row.purpose}
                )
            facts = need_to_know.agency_facts(recipient)
            grant = policies.OnwardDisclosureGrant(
                request_id=row.id,
                recipient_agency_id=recipient.id,
                nominal_id=seen.nominal.id,
                meeting_id=seen.meeting.id,
                status=DisclosureStatus.APPROVED,
                approved_parts=approved,
                decided_at=call.now,
                held_on=seen.meeting.held_on,
                review_date=seen.meeting.review_date,
                need_closed_at=seen.meeting.need_closed_at,
                level_at_meeting=(
                    None
                    if seen.meeting.level_at_meeting is None
                    else Level(seen.meeting.level_at_meeting)
                ),
            )
            tied = dataclasses.replace(tied, disclosures=(*tied.disclosures, grant))
            try:
                recipient_decision = need_to_know.decide_with(
                    facts, seen.nominal, policies.MinutesTarget(seen.meeting.id), call.now, tied
                )
            except errors.NotFound as refusal:  # e.g. category 4: the policy names who may see
                raise errors.Conflict(
                    diagnostics={"reason": "recipient_may_not_know", **refusal.diagnostics}
                ) from refusal
            document = documents.minutes_document(
                seen.meeting,
                seen.participants,
                documents.stored_minutes_body(seen.minutes, call.case_sealer),
                actions,
            )
            if recipient_decision.view is not policies.View.APPROVED_PARTS:
                # A participant may read the whole minutes under its own rule, but what an
                # onward disclosure sends is exactly what was approved, whoever receives it.
                recipient_decision = dataclasses.replace(
                    recipient_decision,
                    view=policies.View.APPROVED_PARTS,
                    approved_parts=approved,
                )
            release = redact.approved_parts(
                recipient_decision,
                facts,
                document,
                purpose=row.purpose,
                originator_agency_id=seen.minutes.author_agency_id,
            )
            if (caveat := redact.withheld_by_caveat(release)) is not None:
                # the minutes' caveat forbids this disclosure: nothing to send, nobody to tell
                raise errors.Conflict(
                    diagnostics={
                        "reason": "withheld_by_caveat",
                        "rule": caveat,
                        "why": "a handling caveat withholds the whole minutes from the recipient",
                    }
                )
            push = (
                deliver.prepare_push(
                    call.sealer,
                    {"onward_disclosure": release.document, "disclosure_id": row.id},
                    recipient_id=recipient.id,
                    keys=keys,
                    kind="onward_disclosure",
                    nominal_ref=seen.nominal.id,
                    now=call.now,
                    subject_ref=seen.meeting.id,
                ),
                release,
                recipient_decision,
            )
            notices = await notifications.notify_owners(
                call,
                [(seen.minutes.author_agency_id, seen.minutes.id)],
                nominal_id=seen.nominal.id,
                session=session,
                recipient_id=recipient.id,
                event="record_disclosed_onward",
                purpose=row.purpose,
            )
    call.record_refs = (seen.meeting.id, row.id)
    status = (
        DisclosureStatus.APPROVED
        if decided.decision is DisclosureDecision.APPROVE
        else DisclosureStatus.REFUSED
    )

    async def act(session: AsyncSession) -> Audited[Written]:
        changed = await session.execute(
            update(OnwardDisclosureRequest)
            .where(
                OnwardDisclosureRequest.id == row.id,
                OnwardDisclosureRequest.status == DisclosureStatus.PENDING,
            )
            .values(
                status=status,
                approved_parts=list(approved),
                decided_by=call.caller.officer,
                decided_at=call.now,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(changed, "rowcount", 0) != 1:
            raise errors.Conflict(diagnostics={"reason": "decided_meanwhile"})
        ack = AckOut(id=row.id, status=str(status), nominal_id=seen.nominal.id)
        if push is None:
            event = call.event(
                Outcome.ALLOWED,
                operation=Operation.ALTERATION,
                rule=seen.decision.rule,
                policy_version=seen.decision.policy_version,
                detail={"resource": "onward_disclosure_request", "decision": str(status)},
            )
            return Audited(Written(ack, 200), event)
        message, release, recipient_decision = push
        await deliver.enqueue(session, message, now=call.now)
        await notices.stage(session)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.DISCLOSURE,
            recipients=(message.recipient_id,),
            purpose=row.purpose,
            rule=recipient_decision.rule,
            policy_version=recipient_decision.policy_version,
            withheld=release.withheld,
            payload_digest=message.sealed.digest,
            detail={
                "resource": "minutes",
                "decision": str(status),
                "approved_parts": list(approved),
                "delivery": "outbox",
                "caller_purpose": call.caller.purpose,
                "recipient_bases": [basis.basis for basis in recipient_bases],
                **_contributor_decision(recipient_bases),
                **notices.detail(),
            },
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)
