"""Written reports for a meeting, from an agency invited to it that cannot attend.

An agency invited to a level 2 or 3 meeting sends a representative; when it cannot, it may send
a written report with its perspective instead (seed 002: children's services to the MAPPA
unit). A report is an information record of kind ``written_report`` attached to the meeting
(:mod:`gateway.cases.records` builds, seals, pushes, stores and reads it): the supplying agency
owns it, it is sealed at rest, and its third-party sources reach no one but their originator.
It is pushed, redacted for each, to the meeting's chair and the MAPPA co-ordination unit of the
nominal's area, and listed for the meeting's chair, co-ordinator and participants.

Only an agency invited to the meeting (invited or attending) may send one. An agency that is not
(or may not know of the meeting at all) gets the 404 of a meeting that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.cases import records
from gateway.cases.context import READ, WRITE, Call, inbound
from gateway.cases.subjects import is_chair_or_coordinator, visible_nominal, well_formed
from gateway.contract import WrittenReportIn
from gateway.domain import AgencyStatus, AgencyType, Participation
from gateway.flow import lawful_basis, need_to_know
from gateway.store.models import Agency, InformationRecord, Meeting, MeetingAgency, Nominal

__all__ = ["create_report", "list_reports"]

#: Who may send a report: the agencies invited to the meeting.
_INVITED = (Participation.INVITED, Participation.ATTENDED)


def _not_invited(rule: str) -> errors.NotFound:
    return errors.NotFound(
        diagnostics={"reason_code": "not_found", "rule": rule, "why": "not at this meeting"}
    )


async def _meeting(
    call: Call, session: AsyncSession, meeting_id: str
) -> tuple[Meeting, Nominal, policies.Decision, Participation | None]:
    """The meeting, its nominal (which the caller must know of), the caller's decision on the
    nominal and the caller's participation in the meeting (None if it has none)."""
    meeting = await session.get(Meeting, meeting_id) if well_formed(meeting_id) else None
    if meeting is None:
        raise need_to_know.not_found("meeting")
    nominal, decision = await visible_nominal(call, session, meeting.nominal_id)
    call.record_refs = (meeting.id,)
    participation = await session.scalar(
        select(MeetingAgency.participation).where(
            MeetingAgency.meeting_id == meeting.id,
            MeetingAgency.agency_id == call.caller.agency_id,
        )
    )
    return meeting, nominal, decision, participation


async def _recipients(session: AsyncSession, meeting: Meeting, nominal: Nominal) -> list[str]:
    """The meeting's chair agency and the area's MAPPA co-ordination units."""
    units = await session.scalars(
        select(Agency.id).where(
            Agency.agency_type == AgencyType.MAPPA_COORDINATION,
            Agency.area == nominal.area,
            Agency.status == AgencyStatus.ACTIVE,
        )
    )
    return sorted({meeting.chair_agency_id, *units.all()})


async def create_report(call: Call, meeting_id: str) -> Response:
    """POST /v1/meetings/{id}/reports: an invited agency's written report for the meeting."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, WrittenReportIn)
        if body.replay is not None:
            return body.replay
        meeting, nominal, decision, participation = await _meeting(call, session, meeting_id)
        if participation not in _INVITED:
            raise _not_invited("invited-to-meeting")
        row, sealed_body = records.new_record(call, nominal, body.body, meeting_id=meeting.id)
        not_sent: list[dict[str, str]] = []
        pushes = [
            push
            for recipient in await _recipients(session, meeting, nominal)
            if (
                push := await records.push_record(
                    call, session, nominal, row, sealed_body, recipient, not_sent
                )
            )
        ]
    call.record_refs = (meeting.id, row.id)
    detail: dict[str, Any] = {"resource": "written_report", "participation": str(participation)}
    if not_sent:
        detail["not_sent"] = not_sent
    return await records.store_record(call, body, row, decision, pushes, detail)


async def list_reports(call: Call, meeting_id: str) -> Response:
    """GET /v1/meetings/{id}/reports: the meeting's written reports, each redacted for the
    caller (the chair, the co-ordinator or a participant); 404 to anyone else."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        meeting, nominal, decision, participation = await _meeting(call, session, meeting_id)
        # an agency taken off the meeting has no part in it left
        taking_part = participation is not None and participation is not Participation.REMOVED
        if not taking_part and not is_chair_or_coordinator(call, meeting, nominal):
            raise _not_invited("meeting-participant")
        rows: Sequence[InformationRecord] = (
            await session.scalars(
                select(InformationRecord)
                .where(InformationRecord.meeting_id == meeting.id)
                .order_by(InformationRecord.created_at, InformationRecord.id)
            )
        ).all()
        tied = await need_to_know.involvements(session, call.caller.agency_id, nominal.id)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    return await records.release_records(
        call, nominal, decision, rows, tied, caller_keys, "reports"
    )
