"""Level changes told to the agencies involved: a ``level_change`` message, and nothing more.

When the Responsible Authority changes a nominal's level (directly, or by recording the
screening outcome), every agency with a live involvement is sent a ``level_change`` through the
outbox, sealed to it, in the change's own transaction: the lead agency, the Responsible
Authority agencies of the nominal's area, and the participants of the nominal's meetings. Each
candidate must pass need-to-know on the nominal, at the old level or at the new one (a meeting
held at the old level involves its participants until the change, which is what they are told
of); a category 4 nominal therefore reaches only police and probation of its area. The agency
making the change is not sent its own decision.

The body is ``{"nominal_id", "old_level", "level", "changed_on"}``: no reason, no meeting, no
officer, no category. An agency without a usable encryption key is sent nothing (never in
clear); the change goes ahead and its audit entry names the agency under ``level_change_held``.
Each message sent has its own disclosure entry (recipient, rule, digest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.cases.context import Call, pushed
from gateway.domain import AgencyStatus, Level, Role
from gateway.flow import deliver, need_to_know
from gateway.store.models import Agency, Meeting, MeetingAgency, Nominal

__all__ = ["KIND", "LevelAnnouncement", "announce", "level_change_body"]

KIND = "level_change"


def level_change_body(
    nominal_id: str, old_level: int, new_level: int, changed_on: str
) -> dict[str, Any]:
    """The whole of a ``level_change`` message."""
    return {
        "nominal_id": nominal_id,
        "old_level": old_level,
        "level": new_level,
        "changed_on": changed_on,
    }


@dataclass(frozen=True, slots=True)
class LevelAnnouncement:
    """The ``level_change`` messages a change owes, sealed before its transaction opens."""

    old_level: int
    new_level: int
    pushes: tuple[tuple[deliver.Push, policies.Decision], ...]
    #: Involved agencies without a usable encryption key: told nothing, named in the audit.
    held: tuple[str, ...] = ()

    async def stage(self, call: Call, session: AsyncSession, old: str | None) -> dict[str, Any]:
        """Enqueue the messages and their disclosure entries; the change entry's detail.

        ``old`` is the level the change found under its row lock: if another change got there
        first, the sealed messages are stale and the change fails (409) with nothing stored."""
        if old != str(self.old_level):
            raise errors.Conflict(diagnostics={"reason": "level_changed_meanwhile"})
        for push, decision in self.pushes:
            await pushed(call, session, push, decision, resource=KIND)
        detail: dict[str, Any] = {"level_change_sent_to": [p.recipient_id for p, _ in self.pushes]}
        if self.held:
            detail["level_change_held"] = list(self.held)
        return detail


async def _candidates(session: AsyncSession, nominal: Nominal) -> list[str]:
    """The lead agency, the RA agencies of the area, and every meeting's participants."""
    authorities = await session.scalars(
        select(Agency.id).where(
            Agency.area == nominal.area, Agency.role == Role.RESPONSIBLE_AUTHORITY
        )
    )
    participants = await session.scalars(
        select(MeetingAgency.agency_id)
        .join(Meeting, Meeting.id == MeetingAgency.meeting_id)
        .where(Meeting.nominal_id == nominal.id)
    )
    return sorted({nominal.lead_agency_id, *authorities.all(), *participants.all()})


def _may_know(
    agency: policies.CallerAgency,
    nominal: Nominal,
    new_level: Level,
    call: Call,
    tied: policies.Involvements,
) -> policies.Decision | None:
    """Need-to-know on the nominal before the change, else after it; None if neither."""
    before = need_to_know.nominal_facts(nominal)
    after = dataclasses.replace(before, level=new_level, level_changed_at=call.now)
    for facts in (before, after):
        try:
            return policies.decide(
                policies.Facts(agency, facts, policies.NominalTarget(), call.now, tied)
            )
        except policies.NoNeedToKnow:
            continue
    return None


async def announce(
    call: Call, session: AsyncSession, nominal: Nominal, new_level: Level
) -> LevelAnnouncement | None:
    """The messages owed if ``nominal`` goes to ``new_level`` (None when the level is the same)."""
    if nominal.level == int(new_level):
        return None
    body = level_change_body(nominal.id, nominal.level, int(new_level), call.now.date().isoformat())
    pushes: list[tuple[deliver.Push, policies.Decision]] = []
    held: list[str] = []
    for agency_id in await _candidates(session, nominal):
        if agency_id == call.caller.agency_id:
            continue
        agency = await session.get(Agency, agency_id)
        if agency is None or agency.status is not AgencyStatus.ACTIVE:
            continue
        facts = need_to_know.agency_facts(agency)
        tied = await need_to_know.involvements(session, agency_id, nominal.id)
        decision = _may_know(facts, nominal, new_level, call, tied)
        if decision is None:
            continue
        keys = await call.keys(session, agency_id, "enc")
        try:
            push = deliver.prepare_push(
                call.sealer,
                body,
                recipient_id=agency_id,
                keys=keys,
                kind=KIND,
                nominal_ref=nominal.id,
                now=call.now,
            )
        except errors.RecipientKeyUnavailable:
            held.append(agency_id)
            continue
        pushes.append((push, decision))
    return LevelAnnouncement(nominal.level, int(new_level), tuple(pushes), tuple(held))
