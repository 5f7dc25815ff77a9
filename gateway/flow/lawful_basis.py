"""The lawful-basis stage: the call's stated basis and purpose against the register.

:func:`check` runs before any case data is read. It holds the caller's ``MAPPA-Legal-Basis``,
``MAPPA-Purpose``, s.325 role and agency type against the legal-basis register
(:func:`policies.check`). A basis whose condition needs the nominal (s.325(4A)(c): the RA
recorded, for this nominal, that the caller could contribute) is held again by
:func:`confirm_for_nominal` once the need-to-know stage has found the nominal, with the RA's
decisions on it (:func:`recorded_contributions`), before anything of it is disclosed; so is a basis
only for nominals of some categories (s.327A: category 1), with the nominal's category. Both
checks hold the case API operation the call runs (``Caller.operation_name``) against the
operations the basis serves, so a basis that serves only reads refuses a write before anything is
read. A refusal
is :class:`gateway.errors.LawfulBasisRefused` (403): its ``diagnostics`` carry the rule, policy
version and reason for the audit record, never for the caller.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.domain import AgencyType, Category, Role
from gateway.flow.authenticate import Caller
from gateway.store.models import ContributorDecision, Nominal

__all__ = [
    "check",
    "confirm_for_nominal",
    "contributor_fact",
    "recorded_contributions",
    "refused",
]


def refused(exc: policies.PolicyError) -> errors.LawfulBasisRefused:
    """The gateway's opaque 403 for a policy refusal, with the full reason for the audit."""
    return errors.LawfulBasisRefused(diagnostics=exc.audit_fields())


def check(caller: Caller, *, concerns_nominal: bool) -> policies.BasisDecision:
    """Allow the call's basis and purpose for this caller, or raise LawfulBasisRefused.

    ``concerns_nominal``: the call is about one nominal. Its nominal-specific conditions are
    taken as holding here and checked by :func:`confirm_for_nominal`; a call about no single
    nominal cannot satisfy them at all.
    """
    try:
        return policies.check(
            caller.legal_basis,
            caller.purpose,
            Role(caller.role),
            AgencyType(caller.agency_type),
            None,
            defer_nominal_conditions=concerns_nominal,
            operation=caller.operation_name,
        )
    except policies.LawfulBasisRefused as exc:
        raise refused(exc) from exc


def contributor_fact(row: ContributorDecision) -> policies.ContributorDecision:
    """A stored s.325(4A)(c) decision as the policies see it."""
    return policies.ContributorDecision(
        decision_id=row.id,
        agency_id=row.agency_id,
        nominal_id=row.nominal_id,
        purposes=frozenset(row.purposes),
        ends_at=row.ends_at,
        revoked=row.revoked_at is not None,
    )


_ON_NOMINAL = select(ContributorDecision).where(
    ContributorDecision.nominal_id == bindparam("nominal_id")
)


async def recorded_contributions(
    session: AsyncSession, caller: Caller, nominal_id: str, now: dt.datetime
) -> policies.RecordedContributions:
    """The RA's s.325(4A)(c) decisions on the nominal (all of them: the policy says which count
    for the caller), asked about for the caller at ``now``."""
    rows = (await session.scalars(_ON_NOMINAL, {"nominal_id": nominal_id})).all()
    return policies.RecordedContributions(
        agency_id=caller.agency_id,
        nominal_id=nominal_id,
        decisions=tuple(contributor_fact(row) for row in rows),
        now=now,
    )


async def confirm_for_nominal(
    caller: Caller, session: AsyncSession, nominal: Nominal, now: dt.datetime
) -> policies.BasisDecision:
    """The same check with what the RA recorded for this nominal (s.325(4A)(c)) and its category
    (a basis only for some categories, s.327A); the decisions are read only when the stated basis
    needs them. Called once need-to-know has let the caller know the nominal, so its 403 tells
    nothing to an agency that may not."""
    recorded = None
    if policies.default_policy_set().legal_bases.needs_nominal(caller.legal_basis):
        recorded = await recorded_contributions(session, caller, nominal.id, now)
    try:
        return policies.check(
            caller.legal_basis,
            caller.purpose,
            Role(caller.role),
            AgencyType(caller.agency_type),
            recorded,
            operation=caller.operation_name,
            nominal_category=Category(nominal.category),
        )
    except policies.LawfulBasisRefused as exc:
        raise refused(exc) from exc
