"""Meetings, their participants, minutes (MAPPA B) and action points.

The Responsible Authority or the MAPPA co-ordination unit convenes a meeting about a nominal it
may know, at the nominal's current level; the chair agency attends. Minutes go to the meeting's
participants only: those who attended and those named to receive minutes without attending
(Jobcentre Plus in Barnet). Each participant's copy is redacted for it (third-party sources
reach only the agency that brought them) and pushed sealed to it through the outbox. Minutes
whose handling caveat withholds them from a participant are, to it, minutes that do not exist,
as for records: not pushed, 404 on read (audited with the caveat). Anyone
else needs the chair's or co-ordinator's approval of an onward disclosure
(:mod:`gateway.cases.disclosures`). The meeting itself (its type, level, dates, status, chair and
participants, never its minutes) is read by the agencies that take part in it, invited ones
included, while their part lasts, and by the MAPPA co-ordination unit of the nominal's area.

The chair agency or the area's co-ordinator ends what the meeting grants: for one agency, by
taking it off the meeting (participation ``removed``); for every agency at once, by closing the
meeting's need (:func:`close_meeting`). Either takes effect at the next request; what was already
sent stays in the audit. The co-ordinator keeps the area's meetings and minutes, as it keeps
them after deregistration.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents
from gateway.cases.context import READ, WRITE, Call, Written, inbound, pushed, released, write
from gateway.cases.subjects import (
    VisibleMeeting,
    is_chair_or_coordinator,
    meeting_actions,
    of_the_nominals_area,
    visible_meeting,
    visible_nominal,
)
from gateway.contract import (
    AckOut,
    ActionIn,
    MeetingClosureIn,
    MeetingIn,
    MeetingView,
    MinutesIn,
    ParticipantsIn,
)
from gateway.domain import AgencyType, Participation, Role
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.audit import Operation, Outcome
from gateway.store.models import Action, Agency, Meeting, MeetingAgency, Minutes, Nominal, new_id

__all__ = [
    "close_meeting",
    "create_action",
    "create_meeting",
    "create_minutes",
    "read_meeting",
    "read_minutes",
    "set_participants",
]

_RECEIVES_MINUTES = (Participation.ATTENDED, Participation.MINUTES_ONLY)


def _forbidden(rule: str, why: str) -> errors.AccessDenied:
    return errors.AccessDenied(diagnostics={"rule": rule, "why": why})


async def _known_agencies(session: AsyncSession, agency_ids: set[str], field: str) -> None:
    if not agency_ids:
        return
    found = set((await session.scalars(select(Agency.id).where(Agency.id.in_(agency_ids)))).all())
    if found != agency_ids:
        raise errors.ValidationFailed(errors=[{"loc": [field], "type": "unknown_agency"}])


def _released_by_originator_only(call: Call, minutes: MinutesIn) -> None:
    """Only the agency that brought a third-party source releases it: minutes that mark released
    a source they attribute to another agency are refused (the redaction would withhold it from
    everyone but that agency anyway)."""
    for position, source in enumerate(minutes.sources):
        originator = source.originator_agency_id
        if source.released and originator is not None and originator != call.caller.agency_id:
            raise errors.ValidationFailed(
                errors=[{"loc": ["sources", position, "released"], "type": "not_the_originator"}]
            )


def _may_convene(call: Call, nominal: Nominal) -> None:
    """The Responsible Authority or the MAPPA unit of the nominal's area (or its lead agency)
    convenes meetings about it: a meeting grants its participants the case."""
    agency = call.agency
    if not (
        agency.role is Role.RESPONSIBLE_AUTHORITY
        or agency.agency_type is AgencyType.MAPPA_COORDINATION
    ):
        raise _forbidden("convened-by-responsible-authority", f"role {agency.role}")
    if not of_the_nominals_area(call, nominal):
        raise _forbidden(
            "convened-by-responsible-authority", "not the lead agency nor of the nominal's area"
        )


def _chair_only(call: Call, seen: VisibleMeeting) -> None:
    if not is_chair_or_coordinator(call, seen.meeting, seen.nominal):
        raise _forbidden("chair-or-coordinator", "not the chair agency or the co-ordinator")


def _need_open(seen: VisibleMeeting) -> None:
    """A meeting whose need is closed grants nothing more: its participants are not changed."""
    if seen.meeting.need_closed_at is not None:
        raise errors.Conflict(diagnostics={"reason": "need_closed"})


async def _still_as_read(
    session: AsyncSession, seen: VisibleMeeting, *, participants: bool = False
) -> None:
    """Again in the write's transaction, the meeting's row locked (``FOR UPDATE`` on
    PostgreSQL; SQLite's writer is the only one): a closure of its need committed since the
    read (on this replica or another) makes the write a 409 ``need_closed``; with
    ``participants``, so does a change of its participants (``participants_changed``: what
    was decided on them at the read no longer holds). A closure or a participants change
    that comes later waits for this write's commit."""
    meeting = await session.get(
        Meeting, seen.meeting.id, with_for_update=True, populate_existing=True
    )
    if meeting is None or meeting.need_closed_at is not None:
        raise errors.Conflict(diagnostics={"reason": "need_closed"})
    if participants:
        now = await session.execute(
            select(MeetingAgency.agency_id, MeetingAgency.participation).where(
                MeetingAgency.meeting_id == seen.meeting.id
            )
        )
        if {(a, str(p)) for a, p in now} != {(a, str(p)) for a, p in seen.participants}:
            raise errors.Conflict(diagnostics={"reason": "participants_changed"})


async def create_meeting(call: Call) -> Response:
    """POST /v1/meetings: convene a meeting about a nominal; the caller's agency chairs it."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, MeetingIn)
        if body.replay is not None:
            return body.replay
        meeting_in = body.body
        nominal, decision = await visible_nominal(call, session, meeting_in.nominal_id)
        _may_convene(call, nominal)
        await _known_agencies(
            session, {p.agency_id for p in meeting_in.participants}, "participants"
        )
    meeting_id = new_id()
    call.record_refs = (meeting_id,)

    async def act(session: AsyncSession) -> Audited[Written]:
        current = await session.get(Nominal, nominal.id)
        assert current is not None
        session.add(
            Meeting(
                id=meeting_id,
                nominal_id=nominal.id,
                meeting_type=meeting_in.meeting_type,
                chair_agency_id=call.caller.agency_id,
                chair_officer=meeting_in.chair_officer,
                held_on=meeting_in.held_on,
                review_date=meeting_in.review_date,
                level_at_meeting=current.level,
                confidentiality_statement_signed=meeting_in.confidentiality_statement_signed,
                created_at=call.now,
            )
        )
        await session.flush()
        participation = {p.agency_id: p.participation for p in meeting_in.participants}
        participation.setdefault(call.caller.agency_id, Participation.ATTENDED)
        session.add_all(
            MeetingAgency(meeting_id=meeting_id, agency_id=agency_id, participation=part)
            for agency_id, part in sorted(participation.items())
        )
        ack = AckOut(id=meeting_id, status="convened", nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            rule=decision.rule,
            policy_version=decision.policy_version,
            detail={
                "resource": "meeting",
                "meeting_type": str(meeting_in.meeting_type),
                "participants": {a: str(p) for a, p in sorted(participation.items())},
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def set_participants(call: Call, meeting_id: str) -> Response:
    """POST /v1/meetings/{id}/participants: invited, attended, minutes only, or ``removed``
    (taken off the meeting: it grants the agency nothing from then on) (chair only)."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ParticipantsIn)
        if body.replay is not None:
            return body.replay
        seen = await visible_meeting(call, session, meeting_id)
        _chair_only(call, seen)
        _need_open(seen)
        changes = {p.agency_id: p.participation for p in body.body.participants}
        if changes.get(seen.meeting.chair_agency_id) is Participation.REMOVED:
            # the chair ends the meeting's need instead (POST /v1/meetings/{id}/closure)
            raise errors.ValidationFailed(
                errors=[{"loc": ["participants"], "type": "chair_agency_not_removable"}]
            )
        await _known_agencies(session, set(changes), "participants")
    call.record_refs = (seen.meeting.id,)

    async def act(session: AsyncSession) -> Audited[Written]:
        await _still_as_read(session, seen)  # never changed once its need is closed
        # One upsert: a participation row another request added since the read above (on this
        # replica or another) is set, not inserted twice (the primary key would refuse it).
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        rows = [
            {"meeting_id": seen.meeting.id, "agency_id": agency_id, "participation": participation}
            for agency_id, participation in sorted(changes.items())
        ]
        upsert = insert(MeetingAgency).values(rows)
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=[MeetingAgency.meeting_id, MeetingAgency.agency_id],
                set_={"participation": upsert.excluded.participation},
            )
        )
        ack = AckOut(id=seen.meeting.id, status="participants_set", nominal_id=seen.nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.ALTERATION,
            rule=seen.decision.rule,
            policy_version=seen.decision.policy_version,
            detail={"participants": {a: str(p) for a, p in sorted(changes.items())}},
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)


async def close_meeting(call: Call, meeting_id: str) -> Response:
    """POST /v1/meetings/{id}/closure: the chair agency or the area's co-ordinator closes the
    meeting's need. Involvement through the meeting ends at once for every agency (participants,
    owners of its action points, recipients of onward disclosures of its minutes). A caller that
    may not know of the meeting gets its 404; one that may but is neither, 403; a second closure,
    409 ``conflict`` (``need_closed``)."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, MeetingClosureIn)
        if body.replay is not None:
            return body.replay
        seen = await visible_meeting(call, session, meeting_id, itself=True)
        _chair_only(call, seen)
        _need_open(seen)
    call.record_refs = (seen.meeting.id,)
    reason = call.case_sealer.seal(
        "meetings", seen.meeting.id, "need_closure_sealed", {"reason": body.body.reason}
    )

    async def act(session: AsyncSession) -> Audited[Written]:
        # Only an open need is closed: a closure another request committed since the read above
        # (on this replica or another) makes this one the conflict, never a second closing.
        closed = await session.execute(
            update(Meeting)
            .where(Meeting.id == seen.meeting.id, Meeting.need_closed_at.is_(None))
            .values(
                need_closed_at=call.now,
                need_closed_by_agency_id=call.caller.agency_id,
                need_closed_by_officer=call.caller.officer,
                need_closure_sealed=reason,
            )
        )
        if getattr(closed, "rowcount", 0) != 1:
            raise errors.Conflict(diagnostics={"reason": "need_closed"})
        ack = AckOut(id=seen.meeting.id, status="need_closed", nominal_id=seen.nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.ALTERATION,
            rule=seen.decision.rule,
            policy_version=seen.decision.policy_version,
            detail={
                "resource": "meeting",
                "need_closed_at": call.now.isoformat(),
                "authority": "chair-or-coordinator",
                "participants": {a: str(p) for a, p in sorted(seen.participants)},
            },
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)


async def _participant_pushes(
    call: Call,
    session: AsyncSession,
    seen: VisibleMeeting,
    document: dict[str, Any],
) -> tuple[list[tuple[deliver.Push, redact.Released, policies.Decision]], list[dict[str, str]]]:
    """The minutes, redacted for each participant but the author, sealed to each; and the
    participants sent nothing, each with why (the rule that refused it, or no key), for the
    write's audit entry."""
    pushes = []
    not_sent: list[dict[str, str]] = []
    for agency_id, participation in seen.participants:
        if participation not in _RECEIVES_MINUTES or agency_id == call.caller.agency_id:
            continue
        agency = await session.get(Agency, agency_id)
        keys = await call.keys(session, agency_id, "enc")
        if agency is None or not keys:  # they read the minutes when they ask: never in clear
            not_sent.append({"agency": agency_id, "why": "no_encryption_key"})
            continue
        facts = need_to_know.agency_facts(agency)
        tied = await need_to_know.involvements(session, agency_id, seen.nominal.id)
        try:
            decision = need_to_know.decide_with(
                facts, seen.nominal, policies.MinutesTarget(seen.meeting.id), call.now, tied
            )
        except errors.NotFound as refused:  # e.g. a category 4 nominal: the policy names who
            rule = str(refused.diagnostics.get("rule", "default-deny"))
            not_sent.append({"agency": agency_id, "rule": rule})
            continue
        release = redact.redact(
            decision,
            facts,
            document,
            purpose=call.caller.purpose,
            originator_agency_id=call.caller.agency_id,
        )
        if (caveat := redact.withheld_by_caveat(release)) is not None:
            not_sent.append({"agency": agency_id, "rule": caveat})  # the minutes' caveat
            continue
        push = deliver.prepare_push(
            call.sealer,
            {"minutes": release.document},
            recipient_id=agency_id,
            keys=keys,
            kind="minutes",
            nominal_ref=seen.nominal.id,
            now=call.now,
            subject_ref=seen.meeting.id,
        )
        pushes.append((push, release, decision))
    return pushes, not_sent


async def create_minutes(call: Call, meeting_id: str) -> Response:
    """POST /v1/meetings/{id}/minutes: the chair's minutes, pushed to the participants only."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, MinutesIn)
        if body.replay is not None:
            return body.replay
        seen = await visible_meeting(call, session, meeting_id)
        _chair_only(call, seen)
        if seen.minutes is not None:
            raise errors.Conflict(diagnostics={"reason": "minutes_exist"})
        await _known_agencies(session, set(body.body.apologies), "apologies")
        _released_by_originator_only(call, body.body)
        minutes_body = documents.minutes_body(body.body)
        document = documents.minutes_document(
            seen.meeting,
            seen.participants,
            minutes_body,
            await meeting_actions(call, session, meeting_id),
        )
        pushes, not_sent = await _participant_pushes(call, session, seen, document)
    minutes_id = new_id()
    call.record_refs = (seen.meeting.id, minutes_id)
    sealed_body = call.case_sealer.seal("minutes", minutes_id, "body_sealed", minutes_body)

    async def act(session: AsyncSession) -> Audited[Written]:
        # Again in the write's transaction: minutes another request stored since the read above
        # make this a conflict (and where that one has not committed yet, the unique meeting_id
        # refuses this insert, which write() answers as the same conflict).
        if await session.scalar(select(Minutes.id).where(Minutes.meeting_id == seen.meeting.id)):
            raise errors.Conflict(diagnostics={"reason": "minutes_exist"})
        # the pushes were decided on the participants as read: a removal or a closure since
        # then must not be sent past
        await _still_as_read(session, seen, participants=True)
        session.add(
            Minutes(
                id=minutes_id,
                meeting_id=seen.meeting.id,
                author_agency_id=call.caller.agency_id,
                body_sealed=sealed_body,
                created_at=call.now,
            )
        )
        await session.flush()
        for push, release, decision in pushes:
            await pushed(
                call, session, push, decision, resource="minutes", withheld=release.withheld
            )
        ack = AckOut(id=minutes_id, status="circulated", nominal_id=seen.nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            rule=seen.decision.rule,
            policy_version=seen.decision.policy_version,
            detail={
                "resource": "minutes",
                "circulated_to": [push.recipient_id for push, _, _ in pushes],
                **({"not_sent": not_sent} if not_sent else {}),
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def read_minutes(call: Call, meeting_id: str) -> Response:
    """GET /v1/meetings/{id}/minutes: in full to participants; the approved parts to an
    approved onward-disclosure recipient; 404 to anyone else."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        seen = await visible_meeting(call, session, meeting_id)
        if seen.minutes is None:
            raise need_to_know.not_found("minutes")
        document = documents.minutes_document(
            seen.meeting,
            seen.participants,
            documents.stored_minutes_body(seen.minutes, call.case_sealer),
            await meeting_actions(call, session, meeting_id),
        )
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    call.record_refs = (seen.meeting.id, seen.minutes.id)
    decision = seen.decision
    if decision.view is policies.View.APPROVED_PARTS:
        release = redact.approved_parts(
            decision,
            call.agency,
            document,
            purpose=call.caller.purpose,
            originator_agency_id=seen.minutes.author_agency_id,
        )
    else:
        release = redact.redact(
            decision,
            call.agency,
            document,
            purpose=call.caller.purpose,
            originator_agency_id=seen.minutes.author_agency_id,
        )
    if (caveat := redact.withheld_by_caveat(release)) is not None:
        raise need_to_know.caveat_refusal(caveat, "minutes")  # as if there were none
    sealed = call.answer(release.document, caller_keys)
    await released(call, decision, release.withheld, sealed)
    return deliver.jose_response(sealed)


async def read_meeting(call: Call, meeting_id: str) -> Response:
    """GET /v1/meetings/{id}: the meeting and its participants, never its minutes, to the
    agencies that take part in it and to the area's co-ordinator; 404 to anyone else."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        seen = await visible_meeting(call, session, meeting_id, itself=True)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    call.record_refs = (seen.meeting.id,)
    document = documents.meeting_document(
        seen.meeting, seen.participants, minuted=seen.minutes is not None
    )
    release = redact.allow_listed(MeetingView, document, seen.decision.policy_version)
    sealed = call.answer(release.document, caller_keys)
    await released(call, seen.decision, release.withheld, sealed)
    return deliver.jose_response(sealed)


async def create_action(call: Call, meeting_id: str) -> Response:
    """POST /v1/meetings/{id}/actions: an action point with an owner, due and review dates."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ActionIn)
        if body.replay is not None:
            return body.replay
        seen = await visible_meeting(call, session, meeting_id)
        _chair_only(call, seen)
        action_in = body.body
        await _known_agencies(session, {action_in.owner_agency_id}, "owner_agency_id")
    action_id = new_id()
    call.record_refs = (seen.meeting.id, action_id)
    description: dict[str, Any] = {"description": action_in.description}
    if action_in.source:
        description["source"] = action_in.source

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(
            Action(
                id=action_id,
                meeting_id=seen.meeting.id,
                owner_agency_id=action_in.owner_agency_id,
                due_date=action_in.due_date,
                review_date=action_in.review_date,
                description_sealed=call.case_sealer.seal(
                    "actions", action_id, "description_sealed", description
                ),
                created_at=call.now,
            )
        )
        ack = AckOut(id=action_id, status="open", nominal_id=seen.nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            rule=seen.decision.rule,
            policy_version=seen.decision.policy_version,
            detail={"resource": "action", "owner": action_in.owner_agency_id},
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)
