"""Erasure of a nominal's case data, by the Responsible Authority (``POST
/v1/nominals/{id}/erasure``).

Who and when. The Responsible Authority of the nominal's area (or its lead agency), as for every
RA-only change (:func:`gateway.cases.subjects.responsible_authority_only`), under a basis that
serves erasure (the register's ``DPA2018-s47``) and for the purpose ``erasure`` only (any other
purpose is refused before anything is read, whatever the basis). The reason is a code of
:class:`gateway.domain.ErasureReason`; a nominal still registered is erased only as
``created_in_error`` (a registration that should never have been has no case to close): for the
other reasons the RA deregisters it first (409 ``not_deregistered``), so that the end of the
case, which ends every agency's involvement, is its own decision and its own audit entry, and
retention runs from it.

What is erased, in one transaction with the audit entry (no audit, no erasure):

* every sealed column about the nominal is set to NULL: its details (names, date of birth,
  address, identifiers) and the blind indexes of its PNC id, CRN and ViSOR reference; its
  referrals' details, its information records' bodies, its meetings' closure reasons, the
  minutes and action points of its meetings and their status notes, its hazard flags' and
  warning markers' details, its onward-disclosure requests' details, its history's reasons and
  its s.325(4A)(c) decisions' reasons. A meeting is about one nominal (``meetings.nominal_id``),
  so its minutes and actions concern this nominal only and are erased with it. The rows stay as
  skeletons (ids, agencies, dates, statuses), for the rows and audit entries that name them;
* rows that only carried case data are removed: the outbox messages about the nominal
  (whatever their status: a queued one is never pushed or listed after the erasure), owner
  notifications held about it, the agencies' signed bodies of its writes (evidence of origin;
  the audit entries keep their digests) and the remembered answers of its writes
  (``Idempotency-Key``);
* the nominal becomes a tombstone: status ``erased``, when, by which agency and officer, and the
  reason code. Its history gains an ``erasure`` row whose note is sealed.

From then on need-to-know refuses the nominal to everyone (:data:`policies.NOMINAL_ERASED`):
every read, lookup, list and replay about it answers 404 exactly as an id that does not exist,
and a new referral of the same person matches nothing (the blind indexes are gone) and
registers a new nominal. A second erasure, with the same ``Idempotency-Key`` or another, is
that 404 too.

The audit log keeps the act: one ``erasure`` entry naming the erased rows by id and count, the
rows removed (outbox messages by id, kind and status; the others by count or entry id) and the
notices sent, never any content (ids and codes only, as every entry). The log itself is not
touched: it held no personal data, and its Merkle tree still verifies.

Partners hold their own copies, which the gateway cannot erase. Every agency the log shows held
something of the case (the lead, the agency erasing, and every agency that supplied or was
disclosed any of it, a page of the level 1 list that listed it included) is sent an
``erasure`` notice, sealed to it: the nominal's gateway id and the reason code, and the ids of
the hazard flags or warning markers raised for that agency (ids it already holds), nothing else;
whatever need-to-know says of it now, as it tells the recipient nothing but that its copy is to
be reviewed. The notice names no nominal in the outbox row, so the relay and the inbox do not
decide it again on the erased nominal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Delete, and_, delete, func, not_, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from starlette.responses import Response

import policies
from gateway import errors
from gateway.cases.context import Call
from gateway.cases.nominals import Change, change_nominal
from gateway.contract import ErasureIn
from gateway.domain import ErasureReason, NominalStatus
from gateway.flow import deliver, lawful_basis
from gateway.flow.audit import Operation, Outcome
from gateway.flow.need_to_know import LINKED_REFERRAL
from gateway.store.models import (
    Action,
    ActionUpdate,
    Agency,
    AuditEntry,
    AuditEntryNominal,
    ContributorDecision,
    HazardFlag,
    HeldNotification,
    IdempotentRequest,
    InformationRecord,
    Meeting,
    Minutes,
    Nominal,
    NominalChange,
    OnwardDisclosureRequest,
    OriginEvidence,
    OutboxMessage,
    Referral,
    WarningMarker,
)

__all__ = ["ERASURE_PURPOSE", "KIND", "NOT_DEREGISTERED", "erase_nominal", "erasure_notice"]

#: The only purpose an erasure is made for (the register's vocabulary).
ERASURE_PURPOSE: Final = "erasure"
#: The kind of the notice sent to the agencies that held the case.
KIND: Final = "erasure"
#: The 409 reason of an erasure of a registered nominal for a reason that needs it deregistered.
NOT_DEREGISTERED: Final = "not_deregistered"
#: The rule recorded when the erasure route is called for another purpose.
_PURPOSE_RULE: Final = "purpose-allowed-for-operation"
#: The audit entry of a referral linked to a registered case (`gateway.cases.referrals`): its
#: referrer was told nothing of the case, and nothing the erasure does may tell it.
_LINKED_REFERRAL_ENTRY: Final = and_(
    AuditEntry.operation == str(Operation.COLLECTION),
    func.coalesce(AuditEntry.detail["referral_status"].as_string(), "") == LINKED_REFERRAL,
)
#: Audit operations whose allowed entries show an agency held some of the case.
_HELD_BY: Final = (
    Operation.COLLECTION,
    Operation.ALTERATION,
    Operation.CONSULTATION,
    Operation.DISCLOSURE,
)


def _erasure_purpose_only(call: Call) -> None:
    """Refuse (403, before anything is read) an erasure stated for any purpose but erasure: a
    basis that allows several purposes is no licence to erase for one of the others."""
    if call.caller.purpose == ERASURE_PURPOSE:
        return
    refusal = policies.PurposeNotAllowed(
        f"{call.caller.operation_name} is made for the purpose {ERASURE_PURPOSE} only",
        rule=_PURPOSE_RULE,
        policy_version=policies.POLICY_VERSION,
        diagnostics={"purpose": (call.caller.purpose or "")[:64]},
    )
    raise lawful_basis.refused(refusal)


def _deregistered_first(nominal: Nominal, reason: ErasureReason) -> None:
    """A registered nominal is erased only as created in error (409 otherwise)."""
    if nominal.status is NominalStatus.ACTIVE and reason is not ErasureReason.CREATED_IN_ERROR:
        raise errors.Conflict(
            diagnostics={
                "reason": NOT_DEREGISTERED,
                "why": f"a registered nominal is erased as created_in_error only, not {reason}",
            }
        )


def erasure_notice(
    nominal_id: str,
    reason: ErasureReason,
    hazard_flag_ids: Sequence[str] = (),
    warning_marker_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The body of an ``erasure`` notice: the gateway id and the reason code, and the ids of the
    flags or markers raised for the recipient (which it holds); nothing about the person."""
    body: dict[str, Any] = {"nominal_id": nominal_id, "reason": str(reason)}
    if hazard_flag_ids:
        body["hazard_flag_ids"] = sorted(hazard_flag_ids)
    if warning_marker_ids:
        body["warning_marker_ids"] = sorted(warning_marker_ids)
    return body


@dataclass
class _Erased:
    """What one erasure erased (sealed parts set to NULL) and removed (rows), by id."""

    erased: dict[str, list[str]] = field(default_factory=dict)
    outbox: list[dict[str, str]] = field(default_factory=list)
    held_notifications: list[str] = field(default_factory=list)
    origin_evidence: list[str] = field(default_factory=list)
    idempotency_keys: int = 0

    def detail(self) -> dict[str, Any]:
        """The audit's account: ids and counts, never content."""
        erased = {table: ids for table, ids in self.erased.items() if ids}
        return {
            "erased": erased,
            "erased_counts": {table: len(ids) for table, ids in erased.items()},
            "removed": {
                "outbox_messages": self.outbox,
                "held_notifications": self.held_notifications,
                "origin_evidence": self.origin_evidence,
                "idempotency_keys": self.idempotency_keys,
            },
            "removed_counts": {
                "outbox_messages": len(self.outbox),
                "held_notifications": len(self.held_notifications),
                "origin_evidence": len(self.origin_evidence),
                "idempotency_keys": self.idempotency_keys,
            },
        }


def _unsynced(statement: Delete) -> Delete:
    """A bulk delete that leaves the session's identity map alone (nothing of it is loaded)."""
    return statement.execution_options(synchronize_session=False)


async def _ids(session: AsyncSession, column: InstrumentedAttribute[str], where: Any) -> list[str]:
    return sorted((await session.scalars(select(column).where(where))).all())


async def _blank(
    session: AsyncSession,
    model: Any,
    ids: Sequence[str],
    *columns: InstrumentedAttribute[Any],
) -> None:
    """Set ``columns`` of the rows ``ids`` of ``model`` to NULL."""
    if ids:
        await session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values({column.key: None for column in columns})
            .execution_options(synchronize_session=False)
        )


async def _erase_case(session: AsyncSession, nominal: Nominal) -> _Erased:
    """Erase (NULL) every sealed part of the nominal's case and remove the rows that only
    carried it, in the open transaction; what was touched, by id."""
    done = _Erased()
    nominal_id = nominal.id
    meetings = await _ids(session, Meeting.id, Meeting.nominal_id == nominal_id)
    actions = await _ids(session, Action.id, Action.meeting_id.in_(meetings))
    records = await _ids(session, InformationRecord.id, InformationRecord.nominal_id == nominal_id)
    found: dict[str, tuple[Any, list[str], tuple[InstrumentedAttribute[Any], ...]]] = {
        "referrals": (
            Referral,
            await _ids(session, Referral.id, Referral.nominal_id == nominal_id),
            (Referral.details_sealed,),
        ),
        "information_records": (InformationRecord, records, (InformationRecord.body_sealed,)),
        "meetings": (
            Meeting,
            await _ids(
                session,
                Meeting.id,
                (Meeting.nominal_id == nominal_id) & Meeting.need_closure_sealed.is_not(None),
            ),
            (Meeting.need_closure_sealed,),
        ),
        "minutes": (
            Minutes,
            await _ids(session, Minutes.id, Minutes.meeting_id.in_(meetings)),
            (Minutes.body_sealed,),
        ),
        "actions": (Action, actions, (Action.description_sealed,)),
        "action_updates": (
            ActionUpdate,
            await _ids(
                session,
                ActionUpdate.id,
                ActionUpdate.action_id.in_(actions) & ActionUpdate.note_sealed.is_not(None),
            ),
            (ActionUpdate.note_sealed,),
        ),
        "hazard_flags": (
            HazardFlag,
            await _ids(session, HazardFlag.id, HazardFlag.nominal_id == nominal_id),
            (HazardFlag.details_sealed,),
        ),
        "warning_markers": (
            WarningMarker,
            await _ids(session, WarningMarker.id, WarningMarker.nominal_id == nominal_id),
            (WarningMarker.details_sealed,),
        ),
        "onward_disclosure_requests": (
            OnwardDisclosureRequest,
            await _ids(
                session,
                OnwardDisclosureRequest.id,
                or_(
                    OnwardDisclosureRequest.meeting_id.in_(meetings),
                    OnwardDisclosureRequest.record_id.in_(records),
                ),
            ),
            (OnwardDisclosureRequest.details_sealed,),
        ),
        "nominal_changes": (
            NominalChange,
            await _ids(session, NominalChange.id, NominalChange.nominal_id == nominal_id),
            (NominalChange.details_sealed,),
        ),
        "contributor_decisions": (
            ContributorDecision,
            await _ids(
                session, ContributorDecision.id, ContributorDecision.nominal_id == nominal_id
            ),
            (ContributorDecision.reason_sealed, ContributorDecision.revocation_sealed),
        ),
    }
    for table, (model, ids, columns) in found.items():
        await _blank(session, model, ids, *columns)
        done.erased[table] = ids

    # The audit entries about the nominal name the writes whose signed bodies and answers carry it.
    entries = select(AuditEntry.entry_id).where(AuditEntry.nominal_ref == nominal_id)
    done.outbox = await remove_queued(session, nominal_id, meetings)
    held = HeldNotification.nominal_ref == nominal_id
    done.held_notifications = await _ids(session, HeldNotification.id, held)
    await session.execute(_unsynced(delete(HeldNotification).where(held)))
    # Two indexed conditions, each its own statement: OR-ed, they scan the whole table.
    origins = (OriginEvidence.nominal_ref == nominal_id, OriginEvidence.entry_id.in_(entries))
    found_origins: set[str] = set()
    for origin in origins:
        found_origins.update(await _ids(session, OriginEvidence.entry_id, origin))
        await session.execute(_unsynced(delete(OriginEvidence).where(origin)))
    done.origin_evidence = sorted(found_origins)
    # Not a linked referral's key: its answer names no case to a referrer that may not know of
    # it, and a retry answered afresh (a new referral) would tell it the case was erased.
    answers = IdempotentRequest.audit_entry_id.in_(entries.where(not_(_LINKED_REFERRAL_ENTRY)))
    keys = await session.scalars(select(IdempotentRequest.key).where(answers))
    done.idempotency_keys = len(keys.all())
    await session.execute(_unsynced(delete(IdempotentRequest).where(answers)))
    return done


async def remove_queued(
    session: AsyncSession, nominal_id: str, meetings: Sequence[str]
) -> list[dict[str, str]]:
    """Delete the outbox messages about the nominal or its meetings; what they were (id, kind,
    status). They are locked first, in the order an inbox pull locks its page (created_at, id),
    before the delete, whose scan would lock them in the table's order: against a pull holding
    some of them and waiting for others, that was a deadlock (PostgreSQL)."""
    queued = or_(OutboxMessage.nominal_ref == nominal_id, OutboxMessage.subject_ref.in_(meetings))
    rows = await session.execute(
        select(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.status)
        .where(queued)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .with_for_update()
    )
    removed = [{"id": i, "kind": k, "status": s} for i, k, s in rows.all()]
    await session.execute(_unsynced(delete(OutboxMessage).where(queued)))
    return removed


async def _holders(session: AsyncSession, nominal: Nominal, caller: str) -> list[str]:
    """Every registered agency that held some of the case: the lead, the caller, and each agency
    the audit log shows supplied, changed, read or was disclosed any of it, on the level 1 list
    too (an entry about several nominals, indexed by `AuditEntryNominal`)."""
    held = (
        AuditEntry.outcome == Outcome.ALLOWED.value,
        AuditEntry.operation.in_([str(op) for op in _HELD_BY]),
        # A linked referral's referrer was told nothing of the case it found (it may not know
        # of it): a notice naming the case would tell it (gateway.cases.referrals).
        not_(_LINKED_REFERRAL_ENTRY),
    )
    holders = select(AuditEntry.agency_id, AuditEntry.recipients)
    # About the nominal, or about several with it (a page of the level 1 list): two indexed
    # reads, since one condition OR-ing them scans every allowed entry of the log.
    rows = await session.execute(
        union_all(
            holders.where(AuditEntry.nominal_ref == nominal.id, *held),
            holders.join(
                AuditEntryNominal, AuditEntryNominal.entry_id == AuditEntry.entry_id
            ).where(AuditEntryNominal.nominal_id == nominal.id, *held),
        )
    )
    named: set[str] = {nominal.lead_agency_id, caller}
    for agency_id, recipients in rows.all():
        if agency_id:
            named.add(agency_id)
        named.update(r for r in recipients or () if isinstance(r, str))
    known = await session.scalars(select(Agency.id).where(Agency.id.in_(sorted(named))))
    return sorted(known.all())


async def _raised_for(session: AsyncSession, model: Any, nominal_id: str) -> dict[str, list[str]]:
    rows = await session.execute(
        select(model.recipient_agency_id, model.id).where(model.nominal_id == nominal_id)
    )
    out: dict[str, list[str]] = {}
    for agency_id, row_id in rows.all():
        out.setdefault(agency_id, []).append(row_id)
    return out


async def _notify(
    call: Call, session: AsyncSession, nominal: Nominal, reason: ErasureReason
) -> tuple[list[dict[str, str]], list[str]]:
    """Queue an ``erasure`` notice to every holder (see the module docstring), in the open
    transaction; the notices queued (recipient, message id, digest) and the holders that had no
    encryption key to seal one to."""
    flags = await _raised_for(session, HazardFlag, nominal.id)
    markers = await _raised_for(session, WarningMarker, nominal.id)
    sent: list[dict[str, str]] = []
    unsent: list[str] = []
    for agency_id in await _holders(session, nominal, call.caller.agency_id):
        body = erasure_notice(
            nominal.id, reason, flags.get(agency_id, ()), markers.get(agency_id, ())
        )
        try:
            push = deliver.prepare_push(
                call.sealer,
                body,
                recipient_id=agency_id,
                keys=await call.keys(session, agency_id, "enc"),
                kind=KIND,
                nominal_ref=None,  # not decided again on the erased nominal (module docstring)
                now=call.now,
            )
        except errors.RecipientKeyUnavailable:
            unsent.append(agency_id)
            continue
        await deliver.enqueue(session, push, now=call.now)
        sent.append(
            {"recipient": agency_id, "message_id": push.message_id, "digest": push.sealed.digest}
        )
    return sent, unsent


async def erase_nominal(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/erasure: the RA erases the nominal's case data (module
    docstring), as every RA change is made (:func:`gateway.cases.nominals.change_nominal`)."""
    _erasure_purpose_only(call)

    async def check(session: AsyncSession, nominal: Nominal, body: ErasureIn) -> None:
        _deregistered_first(nominal, body.reason)

    async def apply(session: AsyncSession, nominal: Nominal, body: ErasureIn) -> Change:
        # erased meanwhile: refused before apply by change_nominal, as for an unknown id
        _deregistered_first(nominal, body.reason)  # as it is now, not as it was read
        before = str(nominal.status)
        done = await _erase_case(session, nominal)
        notices, unsent = await _notify(call, session, nominal, body.reason)
        nominal.details_sealed = None
        nominal.pnc_index = nominal.crn_index = nominal.visor_index = None
        nominal.status_withheld_reason = None
        nominal.status = NominalStatus.ERASED
        nominal.erased_at = call.now
        nominal.erased_by_agency_id = call.caller.agency_id
        nominal.erased_by_officer = call.caller.officer
        nominal.erasure_reason = str(body.reason)
        return Change(
            "erasure",
            before,
            str(nominal.status),
            body.note,
            recipients=tuple(notice["recipient"] for notice in notices),
            reason_code=str(body.reason),
            detail={**done.detail(), "notices": notices, "notices_not_sent": unsent},
        )

    return await change_nominal(call, nominal_id, ErasureIn, apply, check=check)
