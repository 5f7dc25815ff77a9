"""Referrals (MAPPA A), and referrals of non-offenders, which are not MAPPA.

A MAPPA referral either finds the nominal already known in the area (by the blind index of its
PNC id, nDelius CRN or ViSOR reference) or registers a new one at level 1, pending screening,
with the referral's subject as its sealed details. The referrer and the agencies it names are
involved through the referral until screening closes it. A referral that finds an existing
nominal is *linked*: it grants its referrer nothing (otherwise anyone who knew a PNC id could
refer their way into a case); the answer does not say which happened, nor does anything the
referrer sees afterwards. A linked referral's referrer is sent no erasure notice of the case,
and a retry of the referral with its Idempotency-Key after the erasure answers as before
(`gateway.cases.erasure`). A referrer that may not know of the case but would know of the
nominal a fresh referral registers (an RA agency that may not see category 4, whose lookup by
the identifiers would otherwise find a fresh subject and not the case) is not linked to it: its
referral registers a nominal of its own, to which its later referrals of the subject are
linked (`_link_target`). The Responsible Authority, who may know of both, then holds two
nominals with the same identifiers; a lookup by one of them finds the older, the registered
case.

A referral of a non-offender is stored (sealed) for a high-risk information-sharing meeting
and registers no nominal.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents
from gateway.cases.context import WRITE, Call, Written, inbound, write
from gateway.cases.subjects import IDENTIFIER_INDEXES, load_nominal
from gateway.contract import AckOut, ReferralIn
from gateway.domain import AgencyStatus, Category, Level, NominalStatus, ReferralKind, Role
from gateway.flow import lawful_basis, need_to_know
from gateway.flow.audit import Outcome
from gateway.flow.need_to_know import LINKED_REFERRAL
from gateway.store.models import Agency, Nominal, Referral, ReferralAgency, new_id
from gateway.store.sealed import CaseSealer

__all__ = ["RECEIVED", "create_referral"]

#: What every referral's answer says, whether it registered a nominal or found one.
RECEIVED = "received"
NOT_MAPPA = "not_mappa"


def _invalid(field: str, kind: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(errors=[{"loc": [field], "type": kind}])


async def _lead_agency(session: AsyncSession, call: Call, referral: ReferralIn) -> str:
    """The Responsible Authority agency of the caller's area that will lead the case."""
    lead_id = referral.lead_agency_id
    if lead_id is None:
        if call.agency.role is not Role.RESPONSIBLE_AUTHORITY:
            raise _invalid("lead_agency_id", "required_when_referrer_is_not_responsible_authority")
        return call.caller.agency_id
    lead = await session.get(Agency, lead_id)
    if (
        lead is None
        or lead.status is not AgencyStatus.ACTIVE
        or lead.role is not Role.RESPONSIBLE_AUTHORITY
        or lead.area != call.caller.area
    ):
        raise _invalid("lead_agency_id", "not_a_responsible_authority_of_the_area")
    return lead.id


async def _involved_agencies(session: AsyncSession, call: Call, referral: ReferralIn) -> list[str]:
    """The agencies the referral names as involved: registered agencies of the caller's area
    (an agency of another area would be given the area's case by naming it here)."""
    named = sorted(set(referral.agencies_involved))
    if not named:
        return []
    rows = (await session.execute(select(Agency.id, Agency.area).where(Agency.id.in_(named)))).all()
    if {row.id for row in rows} != set(named):
        raise _invalid("agencies_involved", "unknown_agency")
    if any(row.area != call.caller.area for row in rows):
        raise _invalid("agencies_involved", "agency_of_another_area")
    return named


def _indexes(sealer: CaseSealer, referral: ReferralIn) -> dict[str, str]:
    subject = referral.subject
    values = {"pnc": subject.pnc_id, "crn": subject.crn, "visor": subject.visor_ref}
    return {kind: sealer.index(kind, value) for kind, value in values.items() if value}


def _same_identifiers(indexes: dict[str, str]) -> Select[str, str, NominalStatus, dt.datetime]:
    """Every nominal, of any area or status, carrying one of the identifiers: a handful. The
    area and status are kept out of the query: SQLite, with no statistics, would otherwise read
    the area's every nominal (``ix_nominals_area``) rather than search the identifiers' indexes,
    and each referral would cost the area's whole register."""
    return select(Nominal.id, Nominal.area, Nominal.status, Nominal.created_at).where(
        or_(*(IDENTIFIER_INDEXES[kind] == value for kind, value in indexes.items()))
    )


async def _known_nominals(session: AsyncSession, area: str, indexes: dict[str, str]) -> list[str]:
    """The area's active nominals carrying one of the identifiers, the earliest registered
    first (the registered case, then any a referral registered beside it, `_link_target`).

    Read in the referral's transaction with the rows' key-share lock (PostgreSQL ``FOR KEY
    SHARE``; SQLite's writers are serialised): a nominal an erasure (or another RA change)
    holds locked for update is read once that commits, as it then is. An erased one has no
    blind indexes left and is not found, nor is one no longer active; the referral then
    registers a new nominal, and never links to (and stores the subject's details on) the
    erased one. An erasure that comes after waits for the referral and erases it too."""
    if not indexes:
        return []
    found = _same_identifiers(indexes).with_for_update(read=True, key_share=True)
    rows = (await session.execute(found)).all()
    known = sorted(
        (created_at, nominal_id)
        for nominal_id, nominal_area, status, created_at in rows
        if nominal_area == area and status == NominalStatus.ACTIVE
    )
    return [nominal_id for _, nominal_id in known]


async def _if_known(call: Call, session: AsyncSession, nominal_id: str | None) -> str | None:
    """The nominal's id for the answer, only when need-to-know lets the referrer see it as it
    stands after the referral, and would whatever its category: otherwise the answer would say
    whether the identifiers were already registered. A referrer that may not see category 4
    would get the id of the nominal its referral made, and no id when the identifiers are those
    of a category 4 nominal it may not know of; so it gets no id either way, and finds the
    nominal with ``POST /v1/nominals/lookup`` (a referral is no existence oracle)."""
    nominal = await load_nominal(session, nominal_id) if nominal_id else None
    if nominal is None:
        return None
    try:
        for category in Category:  # a read-only copy, not in the session: nothing is written
            nominal.category = int(category)
            await need_to_know.decide(
                session, call.agency, nominal, policies.NominalTarget(), call.now
            )
    except errors.NotFound:
        return None
    return nominal_id


async def _link_target(
    call: Call, session: AsyncSession, known: list[str], *, lead_id: str, category: int
) -> str | None:
    """The nominal the referral is linked to, of the area's active ones carrying its
    identifiers (earliest first), or None: it registers one of its own.

    The first the referrer may know of as it stands (its lookup finds it anyway). If it may
    know of none, linking must not tell it that its identifiers are those of a case it may
    not know of: if it may know of the nominal a referral of a subject nobody registered makes
    (level 1, the referral's category), which it would then find by lookup, it registers one
    of its own. An RA agency that may not see category 4 (the prison, the MAPPA unit) is one:
    linked, its lookup of a category 4 case's PNC id would be 404, where a fresh subject's is
    found; its later referrals of the subject are linked to the nominal its first registered.
    A referrer that could know of neither (an agency that sees level 1 only through the
    monthly list) sees no difference, and is linked to the registered case, for the RA to
    read there."""
    for nominal_id in known:
        nominal = await load_nominal(session, nominal_id)
        if nominal is None:
            continue
        try:
            await need_to_know.decide(
                session, call.agency, nominal, policies.NominalTarget(), call.now
            )
        except errors.NotFound:
            continue
        return nominal_id
    if not known:
        return None
    fresh = Nominal(
        id=new_id(),
        area=call.caller.area,
        category=category,
        level=int(Level.LEAD_AGENCY),
        lead_agency_id=lead_id,
        status=NominalStatus.ACTIVE,
    )
    try:
        await need_to_know.decide(session, call.agency, fresh, policies.NominalTarget(), call.now)
    except errors.NotFound:
        return known[0]
    return None


async def create_referral(call: Call) -> Response:
    """POST /v1/referrals: a MAPPA A referral, or the referral of a non-offender."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=False)
    sealer = call.case_sealer
    async with call.db.read() as session:
        body = await inbound(call, session, ReferralIn)
        if body.replay is not None:
            return body.replay
        referral = body.body
        mappa = referral.kind is ReferralKind.MAPPA
        lead_id = await _lead_agency(session, call, referral) if mappa else None
        involved = await _involved_agencies(session, call, referral)
        indexes = _indexes(sealer, referral) if mappa else {}

    referral_id = new_id()
    details = referral.model_dump(mode="json", exclude_none=True)

    async def act(session: AsyncSession) -> Audited[Written]:
        nominal_id: str | None = None
        status = NOT_MAPPA
        if mappa:
            assert lead_id is not None and referral.category is not None
            known = await _known_nominals(session, call.caller.area, indexes)
            nominal_id = await _link_target(
                call, session, known, lead_id=lead_id, category=int(referral.category)
            )
            status = LINKED_REFERRAL if nominal_id else RECEIVED
            if nominal_id is None:
                nominal_id = new_id()
                session.add(
                    Nominal(
                        id=nominal_id,
                        area=call.caller.area,
                        category=int(referral.category),
                        level=int(Level.LEAD_AGENCY),
                        lead_agency_id=lead_id,
                        status=NominalStatus.ACTIVE,
                        pnc_index=indexes.get("pnc"),
                        crn_index=indexes.get("crn"),
                        visor_index=indexes.get("visor"),
                        details_sealed=sealer.seal(
                            "nominals",
                            nominal_id,
                            "details_sealed",
                            documents.nominal_details(referral),
                        ),
                        created_at=call.now,
                        updated_at=call.now,
                    )
                )
                await session.flush()
        call.nominal_ref = nominal_id
        session.add(
            Referral(
                id=referral_id,
                kind=referral.kind,
                area=call.caller.area,
                nominal_id=nominal_id,
                referring_agency_id=call.caller.agency_id,
                referrer_officer=call.caller.officer,
                category=int(referral.category) if referral.category is not None else None,
                status=status,
                details_sealed=sealer.seal("referrals", referral_id, "details_sealed", details),
                created_at=call.now,
            )
        )
        await session.flush()
        session.add_all(
            ReferralAgency(referral_id=referral_id, agency_id=agency_id)
            for agency_id in involved
            if agency_id != call.caller.agency_id
        )
        ack = AckOut(
            id=referral_id,
            status=NOT_MAPPA if not mappa else RECEIVED,
            kind=str(referral.kind),
            nominal_id=await _if_known(call, session, nominal_id),
        )
        event = call.event(
            Outcome.ALLOWED,
            nominal_ref=nominal_id,
            record_refs=(referral_id,),
            rule=call.basis.rule if call.basis else None,
            policy_version=call.basis.policy_version if call.basis else None,
            detail={"kind": str(referral.kind), "referral_status": status, "involved": involved},
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)
