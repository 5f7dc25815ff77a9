"""Finding what a call is about, so that it exists for the caller only if the caller may know.

Each function loads a resource by the id in the path and runs the need-to-know stage on it. An
id that is malformed, does not exist, belongs to another nominal, or names something the caller
may not know of gives the same :class:`gateway.errors.NotFound`; only the audit record says
which. The call's ``nominal_ref`` is set as soon as it is known, for the refusal's audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.cases import documents
from gateway.cases.context import WRITE, Call, Inbound, inbound
from gateway.contract.types import is_resource_id
from gateway.domain import AgencyType, NominalStatus, Participation, Role
from gateway.flow import lawful_basis, need_to_know
from gateway.store.direct import ByKey
from gateway.store.models import Action, Agency, Meeting, MeetingAgency, Minutes, Nominal

__all__ = [
    "IDENTIFIER_INDEXES",
    "Addressed",
    "RecipientTargets",
    "VisibleMeeting",
    "is_chair_or_coordinator",
    "load_nominal",
    "meeting_actions",
    "of_the_nominals_area",
    "recipient_may_know",
    "responsible_authority_only",
    "sent_by_the_ra",
    "visible_meeting",
    "visible_nominal",
    "visible_nominal_by_index",
    "well_formed",
]

#: The nominal's blind-index column of each kind of identifier partners search by.
IDENTIFIER_INDEXES = {
    "pnc": Nominal.pnc_index,
    "crn": Nominal.crn_index,
    "visor": Nominal.visor_index,
}
#: At most this many nominals share one identifier (a person deregistered and referred again).
_CANDIDATES = 10


well_formed = is_resource_id


#: Every call about a nominal reads it first: below the ORM (see gateway.store.direct).
_NOMINAL = ByKey(Nominal)


async def load_nominal(session: AsyncSession, nominal_id: str) -> Nominal | None:
    """The nominal with ``nominal_id``, or None: a read-only copy, not in the session (a write
    loads the row it changes afresh, with ``FOR UPDATE``, in its own transaction)."""
    return await _NOMINAL.get(session, nominal_id)


async def visible_nominal(
    call: Call,
    session: AsyncSession,
    nominal_id: str,
    target: policies.Target | None = None,
) -> tuple[Nominal, policies.Decision]:
    """The nominal and the decision that the caller may see ``target`` (default: the nominal)."""
    if not well_formed(nominal_id):
        call.nominal_ref = None  # nothing by that id can exist: the audit names none
        raise need_to_know.not_found("nominal")
    call.nominal_ref = nominal_id
    nominal = await load_nominal(session, nominal_id)
    if nominal is None:
        raise need_to_know.not_found("nominal")
    decision = await need_to_know.decide(
        session, call.agency, nominal, target or policies.NominalTarget(), call.now
    )
    call.basis = await lawful_basis.confirm_for_nominal(call.caller, session, nominal, call.now)
    return nominal, decision


async def visible_nominal_by_index(
    call: Call, session: AsyncSession, kind: str, index: str
) -> tuple[Nominal, policies.Decision]:
    """The nominal whose ``kind`` identifier has the blind index ``index``, as for
    :func:`visible_nominal`: the first the caller may know of, an active registration before a
    closed one; of active ones the oldest first (the registered case, before a nominal that a
    referral by an agency that may not know of it registered, `gateway.cases.referrals`), of
    closed ones the newest first. An identifier no nominal carries, and one carried only by
    nominals the caller may not know of, give the same NotFound (the audit says which)."""
    active = Nominal.status == NominalStatus.ACTIVE
    candidates = (
        await session.scalars(
            select(Nominal.id)
            .where(IDENTIFIER_INDEXES[kind] == index)
            .order_by(
                case((active, 0), else_=1),
                case((active, Nominal.created_at), else_=None).asc(),
                Nominal.created_at.desc(),
                Nominal.id,
            )
            .limit(_CANDIDATES)
        )
    ).all()
    refused: errors.NotFound | None = None
    for nominal_id in candidates:
        try:
            return await visible_nominal(call, session, nominal_id)
        except errors.NotFound as exc:
            refused = refused or exc
    call.nominal_ref = candidates[0] if candidates else None
    raise refused or need_to_know.not_found(f"nominal with this {kind}")


@dataclass(frozen=True, slots=True)
class VisibleMeeting:
    meeting: Meeting
    nominal: Nominal
    participants: tuple[tuple[str, Participation], ...]
    minutes: Minutes | None
    #: The caller's decision on the meeting's minutes (or on the meeting itself).
    decision: policies.Decision


async def visible_meeting(
    call: Call, session: AsyncSession, meeting_id: str, *, itself: bool = False
) -> VisibleMeeting:
    """A meeting whose minutes the caller may see (in the view the decision names); with
    ``itself``, a meeting the caller may know of (its participants, not its minutes)."""
    meeting = await session.get(Meeting, meeting_id) if well_formed(meeting_id) else None
    if meeting is None:
        raise need_to_know.not_found("meeting")
    target: policies.Target = (
        policies.MeetingTarget(meeting.id) if itself else policies.MinutesTarget(meeting.id)
    )
    nominal, decision = await visible_nominal(call, session, meeting.nominal_id, target)
    rows = await session.execute(
        select(MeetingAgency.agency_id, MeetingAgency.participation).where(
            MeetingAgency.meeting_id == meeting.id
        )
    )
    minutes = await session.scalar(select(Minutes).where(Minutes.meeting_id == meeting.id))
    participants = tuple((agency, participation) for agency, participation in rows.all())
    return VisibleMeeting(meeting, nominal, participants, minutes, decision)


def of_the_nominals_area(call: Call, nominal: Nominal) -> bool:
    """The caller is the nominal's lead agency or an agency of the nominal's area. An agency of
    another area that is involved (invited to a meeting, say) may see the case, but the case is
    not its to manage."""
    agency = call.agency
    return agency.id == nominal.lead_agency_id or agency.area == nominal.area


def responsible_authority_only(call: Call, nominal: Nominal) -> None:
    """Category, level, screening, deregistration, s.325(4A)(c) decisions, warning markers and
    hazard flags are the Responsible Authority's of the nominal's own area (403): another
    area's police or probation, involved through a meeting, may not change the case."""
    agency = call.agency
    if agency.role is not Role.RESPONSIBLE_AUTHORITY:
        raise errors.AccessDenied(
            diagnostics={"rule": "responsible-authority-only", "why": f"role {agency.role}"}
        )
    if not of_the_nominals_area(call, nominal):
        raise errors.AccessDenied(
            diagnostics={
                "rule": "responsible-authority-of-area-only",
                "why": "not the lead agency nor of the nominal's area",
            }
        )


class _ToAnAgency(Protocol):
    """A write whose body names a nominal and an agency to send something about it to."""

    @property
    def nominal_id(self) -> str: ...

    @property
    def recipient_agency_id(self) -> str: ...


P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Addressed(Generic[P]):
    """A Responsible Authority's write that sends something about a nominal to one agency: the
    opened body, the nominal and the decision that the caller may know of it, the recipient,
    the decision that the recipient may have it, and the recipient's encryption keys."""

    body: Inbound[P]
    nominal: Nominal
    decision: policies.Decision
    recipient: Agency
    recipient_decision: policies.Decision
    keys: Sequence[Mapping[str, Any]]


#: The need-to-know questions a recipient is asked, in order; the first granted lets it have it.
RecipientTargets = Callable[[Agency], Sequence[policies.Target]]


async def recipient_may_know(
    call: Call,
    session: AsyncSession,
    nominal: Nominal,
    recipient: Agency,
    targets: Sequence[policies.Target],
) -> policies.Decision:
    """The decision that ``recipient`` may be sent something about ``nominal``: the first of
    ``targets`` need-to-know grants it. Otherwise Conflict (409, ``recipient_may_not_know``)
    carrying the first target's refusing rule for the audit: the write stores and sends
    nothing, as for an onward disclosure to an agency that may not know the nominal."""
    facts = need_to_know.agency_facts(recipient)
    try:
        return await need_to_know.decide_any(session, facts, nominal, targets, call.now)
    except errors.NotFound as first:
        raise errors.Conflict(
            diagnostics={
                **first.diagnostics,
                "reason": "recipient_may_not_know",
                "recipient": recipient.id,
            }
        ) from first


async def sent_by_the_ra(
    call: Call,
    model: type[P],
    *,
    recipient_types: Collection[AgencyType],
    refusal: str,
    targets: RecipientTargets,
) -> Addressed[P] | Response:
    """The prologue of a write by which the RA sends a nominal's flag or marker to an agency
    (hazard flags, warning markers): scope and basis, the sealed body, the nominal the caller
    may know of, the RA only, a recipient of one of ``recipient_types`` (else 422 with
    ``refusal``) that need-to-know lets have it (one of ``targets(recipient)``, else 409,
    :func:`recipient_may_know`) and its keys; or, for a retried write, the answer it had."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, model)
        if body.replay is not None:
            return body.replay
        # P is a BaseModel that also has the two fields (a bound cannot say both)
        sent: _ToAnAgency = body.body  # type: ignore[assignment]
        nominal, decision = await visible_nominal(call, session, sent.nominal_id)
        responsible_authority_only(call, nominal)
        recipient = await session.get(Agency, sent.recipient_agency_id)
        if recipient is None or recipient.agency_type not in recipient_types:
            raise errors.ValidationFailed(
                errors=[{"loc": ["recipient_agency_id"], "type": refusal}]
            )
        recipient_decision = await recipient_may_know(
            call, session, nominal, recipient, targets(recipient)
        )
        keys = await call.keys(session, recipient.id, "enc")
    return Addressed(body, nominal, decision, recipient, recipient_decision, keys)


def is_chair_or_coordinator(call: Call, meeting: Meeting, nominal: Nominal) -> bool:
    """The meeting's chair agency, or the MAPPA co-ordination unit of the nominal's area."""
    agency = call.agency
    return agency.id == meeting.chair_agency_id or (
        agency.agency_type is AgencyType.MAPPA_COORDINATION and agency.area == nominal.area
    )


async def meeting_actions(
    call: Call, session: AsyncSession, meeting_id: str
) -> list[dict[str, Any]]:
    """The meeting's action points as documents (descriptions unsealed), oldest first."""
    rows = await session.scalars(
        select(Action).where(Action.meeting_id == meeting_id).order_by(Action.created_at, Action.id)
    )
    return [documents.action_document(row, call.case_sealer) for row in rows.all()]
