"""One call to the case API: who calls, when, and how its refusals and writes are audited.

:class:`Call` carries the authenticated :class:`~gateway.flow.authenticate.Caller`, the clock
reading every check of the call uses, and the state's database and sealers. :func:`guarded` runs
an operation and audits any refusal it raises, with the full reason (rule, policy version,
diagnostics) for the IG officer while the caller sees one opaque problem. :func:`write` commits
a write with its audit entry, its ``Idempotency-Key`` and the agency's signed JWS (sealed, as
evidence of origin) in one transaction and answers with the result sealed to the caller; a retry
with the same key and body gets the same answer, and that replay is audited as a disclosure
that names the original write's entry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited, commit_audited
from gateway.audit.origin import ORIGIN_TABLE
from gateway.contract.views import AckOut
from gateway.domain import NominalStatus, Scope
from gateway.flow import deliver, idempotency, lawful_basis, need_to_know
from gateway.flow.audit import AuditEvent, Operation, Outcome, Withheld, record
from gateway.flow.authenticate import Caller, PendingSpend, refuse_unspent, settle
from gateway.flow.group_commit import Unspent
from gateway.flow.need_to_know import caller_agency
from gateway.flow.seal import OpenedBody, Sealer, agency_public_jwks_by_use
from gateway.http.body import validate
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.direct import Direct
from gateway.store.models import AuditEntryNominal, Nominal, OriginEvidence
from gateway.store.sealed import CaseSealer

__all__ = [
    "READ",
    "REPLAY_RULE",
    "WRITE",
    "Call",
    "Inbound",
    "Written",
    "answered_fields",
    "erased_meanwhile",
    "guarded",
    "inbound",
    "keep_origin",
    "not_erased",
    "pushed",
    "released",
    "replay",
    "write",
]

M = TypeVar("M", bound=BaseModel)

#: Scopes of the case API: reading case data, and writing it.
READ = Scope.CASE_READ.value
WRITE = Scope.CASE_WRITE.value
#: Diagnostics keys copied into a refusal's audit detail (codes and ids, never values).
_DETAIL_KEYS = ("why", "reason", "diagnostics", "db_error", "recipient", "table", "column")


@dataclass(slots=True)
class Call:
    """One authenticated call: the caller, the request, and the moment it is judged at."""

    state: GatewayState
    caller: Caller
    request: Request
    operation: Operation
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: The nominal the call concerns, once known (for the refusal's audit entry).
    nominal_ref: str | None = None
    record_refs: tuple[str, ...] = ()
    #: The lawful-basis decision, once made.
    basis: policies.BasisDecision | None = None
    #: Digest of the inbound signed body, once opened.
    payload_digest: str | None = None
    #: The inbound body as opened: the agency's own JWS, kept by a write as evidence of origin.
    origin: OpenedBody | None = None
    #: Whether the caller's pending proof (if any) has been spent in a committed transaction.
    spent: bool = False
    _agency: policies.CallerAgency | None = None
    #: Agencies' public keys by use, as read once in this call (see :meth:`keys`).
    _keys: dict[str, dict[str, list[Mapping[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def start(
        cls, request: Request, caller: Caller, operation: Operation, name: str | None = None
    ) -> Call:
        """The call of ``caller`` to the case API operation ``name`` (its route's name, which
        the legal-basis check holds against the register), audited as ``operation``."""
        state: GatewayState = request.app.state.gateway
        if name is not None:
            caller = dataclasses.replace(caller, operation_name=name)
        return cls(state, caller, request, operation, now=state.clock())

    @property
    def unspent(self) -> PendingSpend | None:
        """The caller's proof, if it is still to be spent before anything is released."""
        return None if self.spent else self.caller.pending

    @property
    def db(self) -> Database:
        return self.state.db

    @property
    def agency(self) -> policies.CallerAgency:
        if self._agency is None:
            self._agency = caller_agency(self.caller)
        return self._agency

    @property
    def sealer(self) -> Sealer:
        if self.state.sealer is None:
            raise errors.Unavailable(diagnostics={"reason": "payload_keys_unavailable"})
        return self.state.sealer

    @property
    def case_sealer(self) -> CaseSealer:
        if self.state.case_sealer is None:
            raise errors.Unavailable(diagnostics={"reason": "case_sealer_unavailable"})
        return self.state.case_sealer

    def require_scope(self, scope: str) -> None:
        if not self.caller.has_scope(scope):
            raise errors.InsufficientScope(diagnostics={"reason": f"scope {scope} not granted"})

    def event(self, outcome: Outcome, **fields: Any) -> AuditEvent:
        """An audit event of this call, with its agency, officer, basis, purpose and request."""
        base: dict[str, Any] = {
            "occurred_at": self.now,
            "operation": self.operation,
            "outcome": outcome,
            "agency_id": self.caller.agency_id,
            "officer_id": self.caller.officer,
            "legal_basis": self.caller.legal_basis,
            "purpose": self.caller.purpose,
            "request_id": self.caller.request_id,
            "nominal_ref": self.nominal_ref,
            "record_refs": self.record_refs,
            "payload_digest": self.payload_digest,
        }
        base.update(fields)
        if self.basis is not None and self.basis.contributor_decision is not None:
            # the RA's s.325(4A)(c) decision the stated basis relied on
            detail = dict(base.get("detail") or {})
            detail.setdefault("contributor_decision", self.basis.contributor_decision)
            base["detail"] = detail
        return AuditEvent.model_validate(base)

    async def keys(
        self, session: AsyncSession, agency_id: str, use: str
    ) -> Sequence[Mapping[str, Any]]:
        """An agency's registered public keys of ``use`` valid at the call's moment.

        Read on every call, so that a key withdrawn or expired bites on the very next request;
        within one call, an agency's keys of every use are read once (a write needs the
        caller's signing key to open its body and its encryption key to answer)."""
        known = self._keys.get(agency_id)
        if known is None:
            known = await agency_public_jwks_by_use(session, agency_id, self.now)
            self._keys[agency_id] = known
        return list(known.get(use, ()))

    async def open_body(self, session: AsyncSession) -> OpenedBody:
        """The inbound application/jose body, verified against the caller's signing keys."""
        opened = await self.sealer.open(
            self.request,
            sender_id=self.caller.agency_id,
            sender_keys=await self.keys(session, self.caller.agency_id, "sig"),
            now=self.now,
        )
        self.payload_digest = opened.digest
        self.origin = opened
        return opened

    def answer(self, body: Mapping[str, Any], keys: Sequence[Mapping[str, Any]]) -> deliver.Sealed:
        """``body`` sealed to the caller (signed by the gateway, encrypted to its key)."""
        return deliver.seal_answer(
            self.sealer, body, recipient_id=self.caller.agency_id, keys=keys, now=self.now
        )


def answered_fields(exc: errors.GatewayError, route: str) -> dict[str, Any]:
    """A refusal's audit fields as far as the caller was answered: its reason code, rule and
    policy version, and a detail of the problem's code and the route only (no reasons). An
    agency reading its own refusal about a nominal it may not know sees this of
    ``need_to_know.not_found`` (gateway.audit.agency_view)."""
    diagnostics = exc.diagnostics
    return {
        "reason_code": str(diagnostics.get("reason_code") or exc.code),
        "rule": diagnostics.get("rule"),
        "policy_version": diagnostics.get("policy_version"),
        "detail": {"code": exc.code, "route": route[:200]},
    }


def _refusal_event(call: Call, exc: errors.GatewayError) -> AuditEvent:
    fields = answered_fields(exc, call.request.url.path)
    detail: dict[str, Any] = fields["detail"]
    for key in _DETAIL_KEYS:
        if key in exc.diagnostics:
            detail[key] = exc.diagnostics[key]
    if exc.errors:
        detail["errors"] = exc.errors[:20]
    server_side = isinstance(exc, errors.Unavailable | errors.InternalError)
    return call.event(Outcome.FAILED if server_side else Outcome.REFUSED, **fields)


async def guarded(call: Call, operation: Awaitable[Response]) -> Response:
    """Run ``operation``; audit any refusal or failure it raises (with its rule), then re-raise.

    If the caller's proof is still to be spent (:func:`gateway.flow.authenticate.
    authenticate_deferred`), every way out spends it first: the answer's transaction or the
    refusal's carries it, or it is spent alone before an answer that committed nothing."""
    try:
        response = await operation
    except (errors.AuditUnavailable, errors.AuthenticationFailed):
        raise  # the latter: the proof could not be spent, audited as such already
    except errors.GatewayError as exc:
        event = _refusal_event(call, exc)

        async def act(session: AsyncSession) -> Audited[None]:
            return Audited(None, event)

        await _commit(call, act, isolated=False)
        raise
    pending = call.unspent
    if pending is not None:
        await settle(call.state, pending)
        call.spent = True
    return response


T = TypeVar("T")


async def _commit(
    call: Call,
    act: Callable[[AsyncSession], Awaitable[Audited[T]]],
    *,
    isolated: bool,
    alone: bool = False,
) -> T:
    """No audit, no disclosure: ``act`` and its audit entry commit together (grouped with other
    requests' when the state has a committer), or AuditUnavailable and nothing is stored.

    A proof still to spend is spent first, in the same transaction (grouped: with the batch's
    other proofs, in one statement); if it cannot be (replayed, agency suspended) the act does
    not run, and the refusal is audited and raised instead."""
    pending = call.unspent
    commits = call.state.commits
    try:
        if commits is not None and pending is not None and not isolated:
            result = await commits.audited(act, isolated=False, spend=pending)
        else:
            if pending is not None:
                acting = act

                async def act(session: AsyncSession) -> Audited[T]:
                    outcome = await pending.spend(session)
                    if outcome != "spent":
                        raise Unspent(outcome)  # before the act wrote anything
                    return await acting(session)

            if commits is not None:
                result = await commits.audited(act, isolated=isolated, alone=alone)
            else:
                result = await commit_audited(call.db, act)
    except Unspent as exc:
        assert pending is not None
        await refuse_unspent(call.state, pending, exc.outcome)
    if pending is not None:
        call.spent = True
    return result


@dataclass(frozen=True, slots=True)
class Written:
    """What a write returns to the caller: its acknowledgement and HTTP status."""

    ack: AckOut
    status_code: int = 201


async def write(
    call: Call,
    body: Inbound[Any],
    act: Callable[[AsyncSession], Awaitable[Audited[Written]]],
    *,
    locks_nominal: bool = False,
) -> Response:
    """Commit ``act``, its audit entry and the idempotency key of ``body`` (the write's opened
    body, from :func:`inbound`) together; answer sealed to the caller's keys.

    A write about a nominal is refused if the nominal was erased since it was read
    (:func:`not_erased`, which takes the row's key-share lock), unless ``locks_nominal``: the
    act then locks the nominal for update itself, before anything else, and refuses it erased
    (:func:`erased_meanwhile`). Such an act (every RA change) must not take the key-share lock
    first: its lock for update would be an upgrade, and two of them on one nominal (on two
    replicas) would deadlock, failing every act of their batches.

    If another request with the same key committed first (a retry racing its original, on this
    replica or another), its answer is replayed instead. If another write (with another key)
    took a unique row this one would have stored first (the minutes of a meeting, say), the
    store refuses this one (IntegrityError): nothing of it stands,
    and it is refused as Conflict (409, ``conflict``), which :func:`guarded` audits in a
    transaction that spends the caller's proof, so that the request cannot be sent again.
    """
    key, digest, caller_keys = body.key, body.digest, body.caller_keys

    async def with_key(session: AsyncSession) -> Audited[Written]:
        if not locks_nominal:
            await not_erased(call, session)
        audited = keep_origin(call, session, await act(session))
        written = audited.result
        await idempotency.remember(
            session,
            call.case_sealer,
            agency_id=call.caller.agency_id,
            key=key,
            digest=digest,
            status_code=written.status_code,
            answer=written.ack.model_dump(mode="json", exclude_none=True),
            audit_entry_id=audited.event.entry_id,
            now=call.now,
        )
        return audited

    try:  # a change that locks its nominal commits alone (gateway.flow.group_commit)
        written = await _commit(call, with_key, isolated=True, alone=locks_nominal)
    except IntegrityError as exc:
        async with call.db.read() as session:
            remembered = await _remembered(call, session, key, digest)
            if remembered is None:  # not our key: another write took what this one would store
                raise errors.Conflict(
                    diagnostics={"reason": "concurrent_write", "db_error": type(exc.orig).__name__}
                ) from exc
            known = await _may_still_know(call, session, remembered)  # as any replay
        return await replay(call, remembered, caller_keys, known)
    ack = written.ack.model_dump(mode="json", exclude_none=True)
    return deliver.jose_response(call.answer(ack, caller_keys), written.status_code)


#: The status of the nominal a write is about, read in the write's transaction with the row's
#: key-share lock (PostgreSQL ``FOR KEY SHARE``, the lock its foreign keys take anyway; SQLite's
#: writers are serialised): an erasure, which locks the row for update, either committed first
#: (the write is refused) or waits for the write and then erases what it stored.
_NOMINAL_STATUS = Direct(
    select(Nominal.status)
    .where(Nominal.id == bindparam("nominal_id"))
    .with_for_update(read=True, key_share=True)
)


async def not_erased(call: Call, session: AsyncSession) -> None:
    """Refuse, in the open write transaction, a write (or a read's notifications) about a
    nominal erased since the call read it: 404 as for an id that does not exist."""
    if call.nominal_ref is None:
        return
    row = await _NOMINAL_STATUS.first(session, {"nominal_id": call.nominal_ref})
    if row is not None and row[0] == NominalStatus.ERASED:
        raise erased_meanwhile()


#: The nominals of an answer about several (`released`), indexed for an erasure's notices.
_INDEX_NOMINALS = Direct(insert(cast(Table, AuditEntryNominal.__table__)))


async def _any_erased(session: AsyncSession, nominal_ids: Sequence[str]) -> bool:
    """Whether any of ``nominal_ids`` is erased, read with each row's key-share lock (as
    :func:`not_erased` reads one)."""
    statuses = await session.scalars(
        select(Nominal.status)
        .where(Nominal.id.in_(sorted(set(nominal_ids))))
        .order_by(Nominal.id)
        .with_for_update(read=True, key_share=True)
    )
    return any(status == NominalStatus.ERASED for status in statuses)


def erased_meanwhile() -> errors.NotFound:
    """The refusal of a write about a nominal found erased in the write's transaction, though
    it was not when the call read it: 404 as for an id that does not exist."""
    return errors.NotFound(
        diagnostics={
            "reason_code": "not_found",
            "rule": policies.NOMINAL_ERASED,
            "why": "the nominal was erased while the call was made",
        }
    )


def keep_origin(call: Call, session: AsyncSession, audited: Audited[T]) -> Audited[T]:
    """Keep the agency's signed JWS of this write, sealed and bound to its row (the write's
    audit entry), in the write's transaction; the entry records the JWS's digest, so the
    tamper-evident log vouches for the bytes kept (:mod:`gateway.audit.origin` checks both)."""
    origin = call.origin
    if origin is None:
        return audited
    entry_id = audited.event.entry_id
    session.add(
        OriginEvidence(
            entry_id=entry_id,
            agency_id=call.caller.agency_id,
            sender_kid=origin.sender_kid[:128],
            jws_digest=origin.digest,
            nominal_ref=audited.event.nominal_ref,
            received_at=call.now,
            jws_sealed=call.case_sealer.seal(
                ORIGIN_TABLE, entry_id, "jws_sealed", {"jws": origin.jws}
            ),
        )
    )
    detail = {**audited.event.detail, "origin_jws_digest": origin.digest}
    return Audited(audited.result, audited.event.model_copy(update={"detail": detail}))


#: The rule recorded on a replay's audit entry: the answer was released under the original's.
REPLAY_RULE = "idempotent-replay"


async def replay(
    call: Call,
    remembered: idempotency.Remembered,
    caller_keys: Sequence[Mapping[str, Any]],
    known: policies.Decision | None = None,
) -> Response:
    """The original answer to a retried write, sealed to the caller afresh.

    The replay discloses the answer once more, so it is audited before it is sent (no audit,
    no disclosure): a ``disclosure`` to the caller, with its officer and stated basis, the
    operation replayed, the audit entry of the original write ("replay of") and, if ``known``,
    the need-to-know decision that the caller may still know the nominal the answer names
    (:func:`inbound` decides it again before any replay)."""
    sealed = call.answer(remembered.answer, caller_keys)
    answer_id = remembered.answer.get("id")
    nominal_id = remembered.answer.get("nominal_id")
    event = call.event(
        Outcome.ALLOWED,
        operation=Operation.DISCLOSURE,
        recipients=(call.caller.agency_id,),
        nominal_ref=nominal_id if isinstance(nominal_id, str) else call.nominal_ref,
        record_refs=(answer_id,) if isinstance(answer_id, str) else (),
        rule=REPLAY_RULE,
        policy_version=call.basis.policy_version if call.basis else None,
        payload_digest=sealed.digest,
        detail={
            "resource": "idempotent_replay",
            "replay_of": remembered.audit_entry_id,
            "replayed_operation": str(call.operation),
            "status_code": remembered.status_code,
            "request_digest": call.payload_digest,
            "basis_rule": call.basis.rule if call.basis else None,
            **({"need_to_know_rule": known.rule} if known is not None else {}),
        },
    )

    async def act(session: AsyncSession) -> Audited[None]:
        return Audited(None, event)

    await _commit(call, act, isolated=False)
    return deliver.jose_response(sealed, remembered.status_code)


@dataclass(frozen=True, slots=True)
class Inbound(Generic[M]):
    """A write's opened, validated body, its idempotency key and digest, the caller's keys, and
    the remembered answer if this is a retry."""

    body: M
    key: str
    digest: str
    caller_keys: Sequence[Mapping[str, Any]]
    replay: Response | None


async def inbound(call: Call, session: AsyncSession, model: type[M]) -> Inbound[M]:
    """Idempotency-Key, then the sealed body (opened and verified), then its schema."""
    key = idempotency.key_of(call.request)
    opened = await call.open_body(session)
    body = validate(model, opened.body)
    digest = idempotency.request_digest(call.request.method, call.request.url.path, opened.body)
    caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    remembered = await _remembered(call, session, key, digest)
    again = None
    if remembered is not None:
        known = await _may_still_know(call, session, remembered)
        again = await replay(call, remembered, caller_keys, known)
    return Inbound(body, key, digest, caller_keys, again)


async def _remembered(
    call: Call, session: AsyncSession, key: str, digest: str
) -> idempotency.Remembered | None:
    """The answer the caller's write with ``key`` got, if it is still kept at the call's moment."""
    return await idempotency.lookup(
        session,
        call.case_sealer,
        agency_id=call.caller.agency_id,
        key=key,
        digest=digest,
        now=call.now,
    )


async def _may_still_know(
    call: Call, session: AsyncSession, remembered: idempotency.Remembered
) -> policies.Decision | None:
    """A replay discloses the answer again, so the caller must still be let know the nominal it
    names (the answer's ``nominal_id``, or the path's for a write to a nominal), as a fresh
    request about it would: need-to-know and the stated basis decided again at the call's
    moment. Otherwise the same opaque NotFound as a fresh request gets (the deregistered
    nominal, the meeting involvement that has ended), audited with the rule that refused it."""
    nominal_id = remembered.answer.get("nominal_id") or call.request.path_params.get("nominal_id")
    if not isinstance(nominal_id, str):
        return None  # the answer names no nominal (a referral whose nominal it may not know)
    call.nominal_ref = nominal_id
    nominal = await session.get(Nominal, nominal_id)
    if nominal is None:
        raise need_to_know.not_found("nominal")
    decision = await need_to_know.decide(
        session, call.agency, nominal, policies.NominalTarget(), call.now
    )
    call.basis = await lawful_basis.confirm_for_nominal(call.caller, session, nominal, call.now)
    return decision


async def pushed(
    call: Call,
    session: AsyncSession,
    push: deliver.Push,
    decision: policies.Decision,
    *,
    resource: str,
    withheld: Sequence[Withheld] = (),
) -> None:
    """Queue ``push`` in the write's transaction and record its disclosure to the recipient
    (one audit entry each, with the rule that let it receive and what was withheld from it)."""
    await deliver.enqueue(session, push, now=call.now)
    record(
        session,
        call.event(
            Outcome.ALLOWED,
            operation=Operation.DISCLOSURE,
            recipients=(push.recipient_id,),
            rule=decision.rule,
            policy_version=decision.policy_version,
            withheld=tuple(withheld),
            payload_digest=push.sealed.digest,
            detail={"resource": resource, "delivery": "outbox", "kind": push.kind},
        ),
    )


async def released(
    call: Call,
    decision: policies.Decision,
    withheld: Sequence[Withheld],
    sealed: deliver.Sealed,
    *,
    record_refs: Sequence[str] = (),
    detail: Mapping[str, Any] | None = None,
    stage: Callable[[AsyncSession], Awaitable[None]] | None = None,
    nominals: Sequence[str] = (),
) -> None:
    """Commit the audit entry of an answer that discloses case data to the caller.

    Called after the answer is sealed and before it is sent: if the entry cannot be written,
    the caller gets 503 and nothing (no audit, no disclosure); if the nominal was erased since
    the answer was read, 404 as for an unknown id and nothing (:func:`not_erased`; for an
    answer about several, ``nominals``, such as the level 1 list, 409 ``conflict``: read it
    again; those are indexed with the entry, `AuditEntryNominal`, so that an erasure of any of
    them finds this agency). ``stage`` adds what the disclosure owes others to the same
    transaction (the owners' notifications)."""
    event = call.event(
        Outcome.ALLOWED,
        recipients=(call.caller.agency_id,),
        record_refs=tuple(record_refs) or call.record_refs,
        rule=decision.rule,
        policy_version=decision.policy_version,
        withheld=tuple(withheld),
        payload_digest=sealed.digest,
        detail={
            "resource": str(decision.resource),
            "view": str(decision.view),
            "basis_rule": call.basis.rule if call.basis else None,
            **(detail or {}),
        },
    )

    async def act(session: AsyncSession) -> Audited[None]:
        # An erasure that committed since the answer was made (or earlier in this batch) has
        # told every agency the log showed it disclosed to, not this one: the answer is not
        # released. One that commits later finds this entry, and tells this agency.
        await not_erased(call, session)
        if nominals:
            if await _any_erased(session, nominals):
                raise errors.Conflict(diagnostics={"reason": "nominal_erased_meanwhile"})
            # An erasure of any of them later finds this entry, and tells this agency.
            await _INDEX_NOMINALS.many(
                session,
                [{"nominal_id": n, "entry_id": event.entry_id} for n in sorted(set(nominals))],
            )
        if stage is not None:
            await stage(session)  # what the disclosure owes others
        return Audited(None, event)

    await _commit(call, act, isolated=False)
