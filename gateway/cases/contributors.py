"""The Responsible Authority's s.325(4A)(c) decisions: another person could contribute.

Only the Responsible Authority records that an agency it considers could contribute may rely on
s.325(4A)(c) for one nominal, for named purposes, until an end date (with a review date); it may
revoke the decision earlier. The decision is what the legal-basis register's condition
``nominal-recorded-other-contributor`` and the need-to-know restriction
``other-contributor-recorded`` hold calls to: while it stands, that agency (and only that agency,
for that nominal and those purposes) may state the basis. The reasons are sealed at rest; the
audit records who decided what, for whom, until when, never why in words.

The agency a decision names is told, when it is recorded and when it is revoked: a
``contributor_decision`` message (the decision's id, nominal, purposes, dates and status; never
the reasons) sealed to it and queued in the outbox in the decision's own transaction, with its
own disclosure entry. It is told only if need-to-know lets it see the decision
(``contributor-named-in-decision``; a category 4 nominal, for one, is not for it), as the
decision stood at that moment. For an agency without a usable encryption key the message is
held, sealed at rest (never sent in clear), and the decision's audit entry says so; it goes out
once the agency registers a key (:mod:`gateway.cases.held_notifications`), if need-to-know
still lets the agency see the decision then (:func:`held_notice_decision`).

``GET /v1/nominals/{id}/contributors`` lists the decisions on a nominal, a page at a time: the
Responsible Authority of the area sees all of them with their reasons; a contributor sees the
decisions naming it (while one stands), without reasons, and never another contributor's. Any
other agency gets the 404 of an unknown nominal if it may not know of the nominal, and 403
otherwise, audited with the rule that refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases.context import READ, WRITE, Call, Written, inbound, pushed, released, write
from gateway.cases.notifications import HELD_TABLE
from gateway.cases.paging import encode_cursor, page_of
from gateway.cases.subjects import responsible_authority_only, visible_nominal, well_formed
from gateway.contract import (
    AckOut,
    ContributorDecisionEntry,
    ContributorDecisionWithReasons,
    ContributorIn,
    ContributorNoticeView,
    ContributorRevocationIn,
)
from gateway.contract.views import ViewRefused, shape
from gateway.delivery.outbox import new_message_id
from gateway.domain import AgencyStatus, Role
from gateway.flow import deliver, lawful_basis, need_to_know
from gateway.flow.audit import Operation, Outcome, Withheld
from gateway.store.models import Agency, ContributorDecision, HeldNotification, Nominal, new_id

__all__ = [
    "BASIS",
    "NOTICE_KIND",
    "held_notice_decision",
    "held_notice_message",
    "list_contributors",
    "record_contributor",
    "revoke_contributor",
]

#: The basis these decisions open, in the legal-basis register.
BASIS = "CJA2003-s325-4A-c"
#: The kind of message that tells the contributor of a decision naming it.
NOTICE_KIND = "contributor_decision"
_TABLE = "contributor_decisions"
_TARGET = policies.ContributorDecisionsTarget()
#: What the contributor's view and message never carry: the RA's reasons, sealed at rest.
_REASONS = ("reason", "revocation_reason")


def _invalid(field: str, kind: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(errors=[{"loc": [field], "type": kind}])


def _policy() -> policies.PolicySet:
    return policies.default_policy_set()


def _check_purposes(purposes: list[str]) -> None:
    """Every purpose must be one the register lets s.325(4A)(c) serve."""
    basis = _policy().legal_bases.bases.get(BASIS)
    allowed = basis.purposes if basis is not None else frozenset()
    if not allowed or any(purpose not in allowed for purpose in purposes):
        raise _invalid("purposes", "purpose_not_allowed_for_basis")


def _check_dates(call: Call, body: ContributorIn) -> None:
    today = _policy().need_to_know.settings.today(call.now)
    if body.ends_on < today:
        raise _invalid("ends_on", "date_in_the_past")
    if body.review_date is not None and body.review_date < today:
        raise _invalid("review_date", "date_in_the_past")


async def _check_contributor(session: AsyncSession, agency_id: str) -> None:
    """The named agency is registered, active, and one that s.325(4A)(c) is for."""
    agency = await session.get(Agency, agency_id)
    if agency is None:
        raise _invalid("agency_id", "unknown_agency")
    if agency.status is not AgencyStatus.ACTIVE:
        raise _invalid("agency_id", "agency_not_active")
    if agency.role is not Role.OTHER_CONTRIBUTOR:
        raise _invalid("agency_id", "not_an_other_contributor")


async def _standing(
    session: AsyncSession, nominal_id: str, agency_id: str, now: dt.datetime
) -> ContributorDecision | None:
    rows = await session.scalars(
        select(ContributorDecision).where(
            ContributorDecision.nominal_id == nominal_id,
            ContributorDecision.agency_id == agency_id,
        )
    )
    for row in rows.all():
        if lawful_basis.contributor_fact(row).stands_at(now):
            return row
    return None


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _status(row: ContributorDecision, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "standing" if lawful_basis.contributor_fact(row).stands_at(now) else "expired"


def _shaped(model: type[BaseModel], document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (None values left out) as its schema serialises it; RedactionFailed (503,
    nothing sent) if it carries a field the schema does not define."""
    try:
        return shape(model, {k: v for k, v in document.items() if v is not None})
    except ViewRefused as exc:
        raise errors.RedactionFailed(diagnostics={"rule": "view-schema", "why": str(exc)}) from exc


def _withheld(decision: policies.Decision, where: str) -> tuple[Withheld, ...]:
    """The reasons, withheld from every view but the RA's (their names, never their values)."""
    if decision.view is policies.View.FULL:
        return ()
    rule = f"view:{decision.view}"
    return tuple(Withheld(field=f"{where}{name}", rule=rule) for name in _REASONS)


@dataclass(frozen=True, slots=True)
class _Notice:
    """What the contributor is told of a decision: a message sealed to it, with the decision
    that lets it see the decision, or nothing; and what the write's audit entry says of it."""

    detail: dict[str, Any]
    push: deliver.Push | None = None
    decision: policies.Decision | None = None
    #: A message that could not be sealed (no usable key), kept sealed at rest until it can.
    held: HeldNotification | None = None

    async def stage(self, call: Call, session: AsyncSession) -> dict[str, Any]:
        """Queue the message and its disclosure entry in the write's transaction, or keep the
        held one; the write's audit detail about it."""
        if self.push is not None and self.decision is not None:
            withheld = _withheld(self.decision, "")
            await pushed(
                call, session, self.push, self.decision, resource=NOTICE_KIND, withheld=withheld
            )
        if self.held is not None:
            session.add(self.held)
        return {"contributor_notice": self.detail}


async def _notice(
    call: Call, session: AsyncSession, nominal: Nominal, row: ContributorDecision, status: str
) -> _Notice:
    """The ``contributor_decision`` message to the agency ``row`` names, sealed to it before the
    write's transaction opens. Need-to-know judges it on ``row`` as it stands now (a revocation's
    message on the decision it ends); the agency is told nothing if refused, not active, or
    without a usable encryption key (never in clear)."""
    agency = await session.get(Agency, row.agency_id)
    if agency is None or agency.status is not AgencyStatus.ACTIVE:
        return _Notice({"status": "not_sent", "why": "agency_not_active"})
    tied = policies.Involvements(contributions=(lawful_basis.contributor_fact(row),))
    facts = need_to_know.agency_facts(agency)
    try:
        decision = need_to_know.decide_with(facts, nominal, _TARGET, call.now, tied)
    except errors.NotFound as refused:
        return _Notice({"status": "not_sent", "rule": refused.diagnostics.get("rule")})
    body = _shaped(
        ContributorNoticeView,
        {
            "decision_id": row.id,
            "nominal_id": nominal.id,
            "purposes": list(row.purposes),
            "ends_on": _iso(row.ends_on),
            "review_date": _iso(row.review_date),
            "status": status,
        },
    )
    keys = await call.keys(session, agency.id, "enc")
    try:
        push = deliver.prepare_push(
            call.sealer,
            body,
            recipient_id=agency.id,
            keys=keys,
            kind=NOTICE_KIND,
            nominal_ref=nominal.id,
            now=call.now,
        )
    except errors.RecipientKeyUnavailable as exc:
        message_id = new_message_id()  # the jti it is sent under: time-ordered
        held = HeldNotification(
            id=message_id,
            owner_agency_id=agency.id,
            kind=NOTICE_KIND,
            nominal_ref=nominal.id,
            reason=exc.code,
            body_sealed=call.case_sealer.seal(
                HELD_TABLE, message_id, "body_sealed", _held_body(call, body)
            ),
            held_at=call.now,
        )
        return _Notice({"status": "held", "reason": exc.code, "message_id": message_id}, held=held)
    return _Notice({"status": "queued", "payload_digest": push.sealed.digest}, push, decision)


def _held_body(call: Call, message: dict[str, Any]) -> dict[str, Any]:
    """A held message and who it reports (for the audit entry of its release): the message
    alone is ever sealed to the agency."""
    caller = call.caller
    return {
        "message": message,
        "record_ids": [message["decision_id"]],
        "by": {"agency_id": caller.agency_id, "officer": caller.officer},
        "legal_basis": caller.legal_basis,
        "purpose": caller.purpose,
        "request_id": caller.request_id,
    }


def held_notice_message(body: dict[str, Any]) -> dict[str, Any]:
    """What a held ``contributor_decision`` message says to the agency."""
    message: dict[str, Any] = body["message"]
    return message


async def held_notice_decision(
    session: AsyncSession, body: dict[str, Any], now: dt.datetime
) -> tuple[policies.Decision, tuple[Withheld, ...]]:
    """Whether the agency a held message is for may still see the decision it reports, judged
    at release (``now``) on the decision as it stands then (a revocation's message, on the
    decision it ends): the decision and what the message withholds, or
    :class:`gateway.errors.NotFound` with the refusing rule. So a held message that a decision
    stands is not sent once the decision has been revoked or has run out; the revocation's own
    message still is."""
    message = held_notice_message(body)
    row = await session.get(ContributorDecision, message.get("decision_id"))
    nominal = await session.get(Nominal, message.get("nominal_id"))
    agency = await session.get(Agency, row.agency_id) if row is not None else None
    if row is None or nominal is None or agency is None:
        raise need_to_know.not_found("contributor decision")
    if agency.status is not AgencyStatus.ACTIVE:
        raise errors.NotFound(
            diagnostics={"reason_code": "agency_not_active", "rule": "agency-active"}
        )
    fact = lawful_basis.contributor_fact(row)
    if message.get("status") == "revoked":
        # A revocation's message is judged on the decision it ends, as when it was written: not
        # revoked, and ending when it would have (the revocation moved ends_at to its time).
        ends_on = dt.date.fromisoformat(str(message.get("ends_on")))
        ends_at = _policy().need_to_know.settings.end_of(ends_on)
        fact = dataclasses.replace(fact, revoked=False, ends_at=ends_at)
    tied = policies.Involvements(contributions=(fact,))
    decision = need_to_know.decide_with(
        need_to_know.agency_facts(agency), nominal, _TARGET, now, tied
    )
    return decision, _withheld(decision, "")


def _new_decision(call: Call, nominal: Nominal, decision_in: ContributorIn) -> ContributorDecision:
    """The caller's decision (not yet stored), its reason sealed at rest."""
    row = ContributorDecision(
        id=new_id(),
        nominal_id=nominal.id,
        agency_id=decision_in.agency_id,
        recorded_by_agency_id=call.caller.agency_id,
        officer=call.caller.officer,
        purposes=sorted(decision_in.purposes),
        ends_on=decision_in.ends_on,
        review_date=decision_in.review_date,
        ends_at=_policy().need_to_know.settings.end_of(decision_in.ends_on),
        decided_at=call.now,
    )
    row.reason_sealed = call.case_sealer.seal(
        _TABLE, row.id, "reason_sealed", {"reason": decision_in.reason}
    )
    return row


async def record_contributor(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/contributors: the RA records an s.325(4A)(c) decision; the agency
    it names is told, in the same transaction."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ContributorIn)
        if body.replay is not None:
            return body.replay
        nominal, decision = await visible_nominal(call, session, nominal_id)
        responsible_authority_only(call, nominal)
        decision_in = body.body
        _check_purposes(decision_in.purposes)
        _check_dates(call, decision_in)
        await _check_contributor(session, decision_in.agency_id)
        if await _standing(session, nominal.id, decision_in.agency_id, call.now) is not None:
            raise errors.Conflict(diagnostics={"reason": "contributor_decision_stands"})
        row = _new_decision(call, nominal, decision_in)
        notice = await _notice(call, session, nominal, row, "standing")
    call.record_refs = (row.id,)

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(row)
        told = await notice.stage(call, session)
        ack = AckOut(id=row.id, status="recorded", nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            rule=decision.rule,
            policy_version=decision.policy_version,
            detail={
                "resource": "contributor_decision",
                "basis_opened": BASIS,
                "contributor": row.agency_id,
                "purposes": list(row.purposes),
                "ends_on": row.ends_on.isoformat(),
                "review_date": row.review_date.isoformat() if row.review_date else None,
                **told,
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def revoke_contributor(call: Call, nominal_id: str, decision_id: str) -> Response:
    """POST /v1/nominals/{id}/contributors/{decision_id}/revocation: the RA withdraws it; the
    agency it named is told, in the same transaction."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ContributorRevocationIn)
        if body.replay is not None:
            return body.replay
        nominal, decision = await visible_nominal(call, session, nominal_id)
        responsible_authority_only(call, nominal)
        found = (
            await session.get(ContributorDecision, decision_id)
            if well_formed(decision_id)
            else None
        )
        if found is None or found.nominal_id != nominal.id:
            raise errors.NotFound(
                diagnostics={"reason_code": "not_found", "why": "no such contributor decision"}
            )
        if not lawful_basis.contributor_fact(found).stands_at(call.now):
            raise errors.Conflict(diagnostics={"reason": "contributor_decision_ended"})
        notice = await _notice(call, session, nominal, found, "revoked")
    call.record_refs = (decision_id,)
    revocation = call.case_sealer.seal(
        _TABLE, decision_id, "revocation_sealed", {"reason": body.body.reason}
    )

    async def act(session: AsyncSession) -> Audited[Written]:
        row = await session.get(ContributorDecision, decision_id, with_for_update=True)
        if row is None or row.revoked_at is not None:
            raise errors.Conflict(diagnostics={"reason": "contributor_decision_ended"})
        row.revoked_at = call.now
        row.ends_at = min(row.ends_at, call.now)
        row.revoked_by_agency_id = call.caller.agency_id
        row.revoked_officer = call.caller.officer
        row.revocation_sealed = revocation
        told = await notice.stage(call, session)
        ack = AckOut(id=row.id, status="revoked", nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.ALTERATION,
            rule=decision.rule,
            policy_version=decision.policy_version,
            detail={
                "resource": "contributor_decision",
                "basis_closed": BASIS,
                "contributor": row.agency_id,
                **told,
            },
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)


async def _visible_decisions(
    call: Call, session: AsyncSession, nominal_id: str
) -> tuple[Nominal, policies.Decision]:
    """The nominal and the caller's need-to-know decision on its s.325(4A)(c) decisions.

    Refused them, an agency that may not know of the nominal gets the 404 of an unknown one
    (audited with the rule that refused the nominal); one that may know of it gets 403, audited
    with the rule that refused the decisions."""
    try:
        return await visible_nominal(call, session, nominal_id, _TARGET)
    except errors.NotFound as refused:
        await visible_nominal(call, session, nominal_id)
        raise errors.AccessDenied(diagnostics=refused.diagnostics) from refused


def _entry(call: Call, row: ContributorDecision, view: policies.View) -> dict[str, Any]:
    """One decision in the caller's view: with the reasons in the RA's (``full``), without in
    any other, each shaped by its own schema."""
    entry: dict[str, Any] = {
        "id": row.id,
        "nominal_id": row.nominal_id,
        "agency_id": row.agency_id,
        "purposes": list(row.purposes),
        "ends_on": _iso(row.ends_on),
        "review_date": _iso(row.review_date),
        "decided_at": _iso(row.decided_at),
        "decided_by_agency_id": row.recorded_by_agency_id,
        "status": _status(row, call.now),
        "revoked_at": _iso(row.revoked_at),
    }
    if view is not policies.View.FULL:
        return _shaped(ContributorDecisionEntry, entry)
    sealer = call.case_sealer
    entry["reason"] = sealer.unseal(_TABLE, row.id, "reason_sealed", row.reason_sealed)["reason"]
    if row.revocation_sealed is not None:
        revocation = sealer.unseal(_TABLE, row.id, "revocation_sealed", row.revocation_sealed)
        entry["revocation_reason"] = revocation["reason"]
    return _shaped(ContributorDecisionWithReasons, entry)


async def list_contributors(call: Call, nominal_id: str) -> Response:
    """GET /v1/nominals/{id}/contributors: the s.325(4A)(c) decisions on a nominal, oldest
    first, a page at a time: all of them with their reasons to the RA of the area, the
    caller's own without reasons to a contributor."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    page = page_of(call.request)
    async with call.db.read() as session:
        nominal, decision = await _visible_decisions(call, session, nominal_id)
        query = select(ContributorDecision).where(ContributorDecision.nominal_id == nominal.id)
        if decision.view is not policies.View.FULL:
            query = query.where(ContributorDecision.agency_id == call.caller.agency_id)
        rows: Sequence[ContributorDecision] = (
            await session.scalars(
                page.select(query, ContributorDecision.decided_at, ContributorDecision.id)
            )
        ).all()
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    answer: dict[str, Any] = {
        "contributor_decisions": [_entry(call, row, decision.view) for row in rows]
    }
    if len(rows) == page.limit:
        answer["next_cursor"] = encode_cursor(rows[-1].decided_at, rows[-1].id)
    sealed = call.answer(answer, caller_keys)
    await released(
        call,
        decision,
        _withheld(decision, "contributor_decisions[].") if rows else (),
        sealed,
        record_refs=tuple(row.id for row in rows),
        detail={"listed": NOTICE_KIND},
    )
    return deliver.jose_response(sealed)
