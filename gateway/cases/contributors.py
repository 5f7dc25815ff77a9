"""The Responsible Authority's s.325(4A)(c) decisions: another person could contribute.

Only the Responsible Authority records that an agency it considers could contribute may rely on
s.325(4A)(c) for one nominal, for named purposes, until an end date (with a review date); it may
revoke the decision earlier. The decision is what the legal-basis register's condition
``nominal-recorded-other-contributor`` and the need-to-know restriction
``other-contributor-recorded`` hold calls to: while it stands, that agency (and only that agency,
for that nominal and those purposes) may state the basis. The reasons are sealed at rest; the
audit records who decided what, for whom, until when, never why in words.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases.context import WRITE, Call, Written, inbound, write
from gateway.cases.subjects import responsible_authority_only, visible_nominal, well_formed
from gateway.contract import AckOut, ContributorIn, ContributorRevocationIn
from gateway.domain import AgencyStatus, Role
from gateway.flow import lawful_basis
from gateway.flow.audit import Operation, Outcome
from gateway.store.models import Agency, ContributorDecision, new_id

__all__ = ["BASIS", "record_contributor", "revoke_contributor"]

#: The basis these decisions open, in the legal-basis register.
BASIS = "CJA2003-s325-4A-c"
_TABLE = "contributor_decisions"


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


async def record_contributor(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/contributors: the RA records an s.325(4A)(c) decision."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ContributorIn)
        if body.replay is not None:
            return body.replay
        nominal, decision = await visible_nominal(call, session, nominal_id)
        responsible_authority_only(call)
        decision_in = body.body
        _check_purposes(decision_in.purposes)
        _check_dates(call, decision_in)
        await _check_contributor(session, decision_in.agency_id)
        if await _standing(session, nominal.id, decision_in.agency_id, call.now) is not None:
            raise errors.Conflict(diagnostics={"reason": "contributor_decision_stands"})
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
    call.record_refs = (row.id,)

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(row)
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
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def revoke_contributor(call: Call, nominal_id: str, decision_id: str) -> Response:
    """POST /v1/nominals/{id}/contributors/{decision_id}/revocation: the RA withdraws it."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, ContributorRevocationIn)
        if body.replay is not None:
            return body.replay
        nominal, decision = await visible_nominal(call, session, nominal_id)
        responsible_authority_only(call)
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
            },
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)
