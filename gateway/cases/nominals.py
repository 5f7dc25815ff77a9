"""Nominals: read one, or find one by an identifier; change its category or level, record
screening, deregister (RA only).

A lookup (``POST /v1/nominals/lookup``) names a PNC id, nDelius CRN or ViSOR reference in its
sealed body, never in the URL (an identifier in a path lands in access logs, proxies and metric
labels). It is found through the identifier's blind index and answered exactly as a read of the
nominal by its id: need-to-know, redaction, the answer sealed to the caller, one audit entry (a
consultation, naming the kind of identifier, never its value).

A change of level ends every involvement granted by a meeting held at the old level: the next
request under it is refused (need-to-know compares the meeting's level with the nominal's). The
agencies involved are sent a ``level_change`` message with the change.
Screening closes the nominal's open referrals, so their involvement ends too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents, level_changes
from gateway.cases.context import (
    READ,
    WRITE,
    Call,
    Written,
    erased_meanwhile,
    inbound,
    released,
    write,
)
from gateway.cases.subjects import (
    responsible_authority_only,
    visible_nominal,
    visible_nominal_by_index,
)
from gateway.contract import (
    AckOut,
    CategoryChangeIn,
    DeregistrationIn,
    LevelChangeIn,
    NominalLookupIn,
    ScreeningIn,
    ScreeningOutcome,
)
from gateway.domain import Category, Level, MeetingType, NominalStatus
from gateway.flow import deliver, lawful_basis, redact
from gateway.flow.audit import Outcome
from gateway.http.body import validate
from gateway.store.models import Meeting, Nominal, NominalChange, Referral, new_id

__all__ = [
    "Change",
    "change_category",
    "change_level",
    "change_nominal",
    "deregister",
    "lookup_nominal",
    "read_nominal",
    "record_screening",
]

M = TypeVar("M", bound=BaseModel)


async def read_nominal(call: Call, nominal_id: str) -> Response:
    """GET /v1/nominals/{id}: the nominal as the caller may see it."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        nominal, decision = await visible_nominal(call, session, nominal_id)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    return await _release_nominal(call, nominal, decision, caller_keys)


async def lookup_nominal(call: Call) -> Response:
    """POST /v1/nominals/lookup: the nominal with the PNC id, CRN or ViSOR reference in the
    sealed body, as the caller may see it (404 as for an unknown identifier otherwise)."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        opened = await call.open_body(session)
        lookup = validate(NominalLookupIn, opened.body)
        index = call.case_sealer.index(lookup.kind, lookup.value)
        nominal, decision = await visible_nominal_by_index(call, session, lookup.kind, index)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    return await _release_nominal(call, nominal, decision, caller_keys, {"lookup": lookup.kind})


async def _release_nominal(
    call: Call,
    nominal: Nominal,
    decision: policies.Decision,
    caller_keys: Sequence[Mapping[str, Any]],
    detail: Mapping[str, Any] | None = None,
) -> Response:
    """The nominal redacted for the caller and sealed to it, released with its audit entry."""
    document = documents.nominal_document(nominal, call.case_sealer)
    release = redact.redact(decision, call.agency, document, purpose=call.caller.purpose)
    sealed = call.answer(release.document, caller_keys)
    await released(call, decision, release.withheld, sealed, detail=detail)
    return deliver.jose_response(sealed)


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a nominal: what, from what, to what, why (sealed at rest), and the meeting
    that decided; for the audit entry, the agencies it was sent to, a reason code and more
    detail (ids and codes only)."""

    kind: str
    old: str | None
    new: str | None
    reason: str
    meeting_id: str | None = None
    recipients: tuple[str, ...] = ()
    reason_code: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


async def change_nominal(
    call: Call,
    nominal_id: str,
    model: type[M],
    apply: Callable[[AsyncSession, Nominal, M], Awaitable[Change]],
    *,
    check: Callable[[AsyncSession, Nominal, M], Awaitable[None]] | None = None,
    level: Callable[[M], Level] | None = None,
) -> Response:
    """The shared shape of every RA change: read, decide, then alter with history and audit.

    ``check`` refuses a change the nominal as read does not allow; ``apply`` makes it on the
    nominal locked for update in the write's transaction (and may refuse it there, on the
    nominal as it now is; one erased meanwhile is refused before it, 404 as for an unknown
    id). ``level`` names the level a change sets: the agencies involved are
    then told of a change of level (:mod:`gateway.cases.level_changes`), in the same
    transaction."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, model)
        if body.replay is not None:
            return body.replay
        seen, decision = await visible_nominal(call, session, nominal_id)
        responsible_authority_only(call, seen)
        if check is not None:
            await check(session, seen, body.body)
        announcement = (
            await level_changes.announce(call, session, seen, level(body.body))
            if level is not None
            else None
        )

    async def act(session: AsyncSession) -> Audited[Written]:
        # the first lock on the nominal in this transaction, and for update: never a key-share
        # lock upgraded (write's not_erased is not run), which two RA changes would deadlock on
        nominal = await session.get(Nominal, nominal_id, with_for_update=True)
        if nominal is None:  # nothing is ever deleted, but fail closed
            raise errors.Conflict(diagnostics={"reason": "nominal_gone"})
        if nominal.status is NominalStatus.ERASED:  # erased since the read
            raise erased_meanwhile()
        change = await apply(session, nominal, body.body)
        nominal.version += 1
        nominal.updated_at = call.now
        row = NominalChange(
            id=new_id(),
            nominal_id=nominal.id,
            kind=change.kind,
            agency_id=call.caller.agency_id,
            officer=call.caller.officer,
            old_value=change.old,
            new_value=change.new,
            meeting_id=change.meeting_id,
            created_at=call.now,
        )
        row.details_sealed = call.case_sealer.seal(
            "nominal_changes", row.id, "details_sealed", {"reason": change.reason}
        )
        session.add(row)
        told = await announcement.stage(call, session, change.old) if announcement else {}
        ack = AckOut(
            id=nominal.id,
            status=str(nominal.status),
            level=nominal.level,
            category=nominal.category,
        )
        event = call.event(
            Outcome.ALLOWED,
            recipients=change.recipients,
            rule=decision.rule,
            policy_version=decision.policy_version,
            record_refs=(row.id,),
            reason_code=change.reason_code,
            detail={
                "change": change.kind,
                "from": change.old,
                "to": change.new,
                **change.detail,
                **told,
            },
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act, locks_nominal=True)


def _set_level(call: Call, nominal: Nominal, level: Level) -> tuple[str, str]:
    old = str(nominal.level)
    if nominal.level != int(level):
        nominal.level = int(level)
        nominal.level_changed_at = call.now
    return old, str(int(level))


async def change_level(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/level: the RA changes the management level."""

    async def apply(session: AsyncSession, nominal: Nominal, body: LevelChangeIn) -> Change:
        old, new = _set_level(call, nominal, body.level)
        return Change("level", old, new, body.reason)

    return await change_nominal(call, nominal_id, LevelChangeIn, apply, level=lambda b: b.level)


async def change_category(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/category: the RA changes the MAPPA category."""

    async def apply(session: AsyncSession, nominal: Nominal, body: CategoryChangeIn) -> Change:
        old = str(nominal.category)
        nominal.category = int(Category(body.category))
        return Change("category", old, str(nominal.category), body.reason)

    return await change_nominal(call, nominal_id, CategoryChangeIn, apply)


async def deregister(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/deregistration: every involvement ends with the registration."""

    async def apply(session: AsyncSession, nominal: Nominal, body: DeregistrationIn) -> Change:
        old = str(nominal.status)
        nominal.status = NominalStatus.DEREGISTERED
        return Change("deregistration", old, str(nominal.status), body.reason)

    return await change_nominal(call, nominal_id, DeregistrationIn, apply)


async def record_screening(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/screening: the screening meeting sets the level or screens out.

    The level takes effect as a level change, and the nominal's open referrals close (their
    involvement ends), as screened or screened out."""

    async def check(session: AsyncSession, nominal: Nominal, body: ScreeningIn) -> None:
        if body.meeting_id is None:
            return
        meeting = await session.get(Meeting, body.meeting_id)
        if (
            meeting is None
            or meeting.nominal_id != nominal.id
            or meeting.meeting_type is not MeetingType.SCREENING
        ):
            raise errors.ValidationFailed(
                errors=[{"loc": ["meeting_id"], "type": "not_a_screening_meeting"}]
            )

    async def apply(session: AsyncSession, nominal: Nominal, body: ScreeningIn) -> Change:
        old, new = _set_level(call, nominal, body.outcome.level)
        status = "screened_out" if body.outcome is ScreeningOutcome.SCREENED_OUT else "screened"
        await session.execute(
            update(Referral)
            .where(Referral.nominal_id == nominal.id, Referral.closed_at.is_(None))
            .values(closed_at=call.now, status=status)
            .execution_options(synchronize_session=False)
        )
        return Change("screening", old, new, body.reasons, body.meeting_id)

    return await change_nominal(
        call, nominal_id, ScreeningIn, apply, check=check, level=lambda b: b.outcome.level
    )
