"""Held notifications go out once their recipient has a usable key: sealed to it, exactly once.

Two kinds are held: owner notifications (:mod:`gateway.cases.notifications`) and the messages
that tell an agency of an s.325(4A)(c) decision naming it (:mod:`gateway.cases.contributors`).
A held ``contributor_decision`` message goes out only if need-to-know still lets the agency see
the decision when it is released; otherwise it is settled unsent, and the audit entry
(``contributor_notice_not_sent``, refused) names the rule. A held owner notification likewise
goes out only if need-to-know still lets the owner know of what it reports (its records, or for
minutes the nominal), naming only those records; otherwise it is settled unsent
(``owner_notification_not_sent``, refused, with the rule).

An owner notification that could not be sealed (the owner had no usable encryption key) is
held (:mod:`gateway.cases.notifications`): kept sealed at rest as a
:class:`~gateway.store.models.HeldNotification`. :func:`release_held` finds the owners with
held notifications that now have a usable key (a key registered with ``mappa-gateway agencies
add`` or ``rotate-keys``, or published at the agency's ``jwks_uri``), and for each owner, in one
write transaction: claims each held row (a conditional update, so two gateways releasing at once
never both send it), seals the notification to the new key, enqueues it in the outbox under the
held row's id (the outbox's primary key: a second enqueue of the same notification cannot
commit) and records an audit entry (``owner_notification_released``) naming the consultation
it reports (its agency, officer, basis, purpose, request id and records) and the digest sent.

It runs after ``agencies add`` and ``agencies rotate-keys``, and in ``mappa-gateway serve``
beside the relay every :data:`RELEASE_INTERVAL` seconds (which is how a key published at a
``jwks_uri`` is picked up).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.cases import contributors, notifications
from gateway.cases.notifications import HELD_TABLE
from gateway.flow import deliver
from gateway.flow.audit import AuditEvent, Operation, Outcome, Withheld, record
from gateway.flow.seal import Sealer, agency_public_jwks
from gateway.logs import get_logger
from gateway.store import Database
from gateway.store.models import Agency, HeldNotification
from gateway.store.sealed import CaseSealer

if TYPE_CHECKING:
    from gateway.oauth.jwks import JwksFetcher
    from gateway.settings import Settings

__all__ = [
    "RELEASE_INTERVAL",
    "HeldReleaser",
    "owners_waiting",
    "release_held",
    "release_with_settings",
]

#: Seconds between two looks for owners who registered a key, in a running gateway.
RELEASE_INTERVAL = 15.0
REASON = "owner_notification_released"
#: The reason code of a held message need-to-know no longer lets its recipient have (settled,
#: not sent), by kind of message.
NOT_SENT = {
    contributors.NOTICE_KIND: "contributor_notice_not_sent",
    notifications.KIND: "owner_notification_not_sent",
}
#: The reason code of a release's disclosure entry, by kind of message.
RELEASED = {contributors.NOTICE_KIND: "contributor_notice_released"}

log = get_logger("gateway.cases.held_notifications")


async def _usable_keys(
    session: AsyncSession, owner: str, now: dt.datetime, fetcher: JwksFetcher | None
) -> Sequence[Mapping[str, Any]]:
    """The owner's registered encryption keys valid now, or those its ``jwks_uri`` publishes."""
    keys = await agency_public_jwks(session, owner, "enc", now)
    if keys or fetcher is None:
        return keys
    agency = await session.get(Agency, owner)
    if agency is None or not agency.jwks_uri:
        return []
    try:
        fetched = await fetcher.keys(agency.jwks_uri, refresh=True)
    except Exception as exc:
        log.info("held_notification_jwks_unavailable", agency_id=owner, error=type(exc).__name__)
        return []
    return [dict(key.jwk) for key in fetched if key.use == "enc"]


def _event(
    row: HeldNotification,
    body: Mapping[str, Any],
    digest: str | None,
    now: dt.datetime,
    trigger: str,
    decision: policies.Decision | None = None,
    withheld: Sequence[Withheld] = (),
    refused: errors.NotFound | None = None,
) -> AuditEvent:
    """The release's disclosure entry (or, ``refused``, why the message was not sent)."""
    by = body.get("by") or {}
    rule = decision.rule if decision is not None else None
    if refused is not None:
        rule = refused.diagnostics.get("rule")
    return AuditEvent(
        occurred_at=now,
        operation=Operation.DISCLOSURE,
        outcome=Outcome.ALLOWED if refused is None else Outcome.REFUSED,
        agency_id=by.get("agency_id"),
        officer_id=by.get("officer"),
        recipients=(row.owner_agency_id,),
        nominal_ref=row.nominal_ref,
        record_refs=tuple(body.get("record_ids") or ()),
        legal_basis=body.get("legal_basis"),
        purpose=body.get("purpose"),
        payload_digest=digest,
        request_id=body.get("request_id"),
        rule=rule,
        policy_version=decision.policy_version if decision is not None else None,
        withheld=tuple(withheld),
        reason_code=RELEASED.get(row.kind, REASON) if refused is None else NOT_SENT[row.kind],
        detail={
            "resource": row.kind,
            "owner": row.owner_agency_id,
            "message_id": row.id,
            "held_at": row.held_at.isoformat(),
            "held_reason": row.reason,
            "trigger": trigger,
            "delivery": "outbox" if refused is None else "none",
        },
    )


async def _release_owner(
    db: Database,
    owner: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    sealer: Sealer,
    case_sealer: CaseSealer,
    now: dt.datetime,
    trigger: str,
) -> int:
    released = 0
    async with db.write() as session:
        rows = (
            await session.scalars(
                select(HeldNotification)
                .where(
                    HeldNotification.owner_agency_id == owner,
                    HeldNotification.released_at.is_(None),
                )
                .order_by(HeldNotification.held_at, HeldNotification.id)
            )
        ).all()
        for row in rows:
            claimed = await session.execute(
                update(HeldNotification)
                .where(HeldNotification.id == row.id, HeldNotification.released_at.is_(None))
                .values(released_at=now)
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                continue  # another gateway released it first
            body = case_sealer.unseal(HELD_TABLE, row.id, "body_sealed", row.body_sealed)
            message: Mapping[str, Any] = body
            decision: policies.Decision | None = None
            withheld: tuple[Withheld, ...] = ()
            if row.kind == contributors.NOTICE_KIND:
                try:
                    decision, withheld = await contributors.held_notice_decision(session, body, now)
                except errors.NotFound as refused:
                    record(session, _event(row, body, None, now, trigger, refused=refused))
                    continue
                message = contributors.held_notice_message(body)
            elif row.kind == notifications.KIND:
                try:
                    message = body = await notifications.held_owner_decision(
                        session, owner, body, now
                    )
                except errors.NotFound as refused:
                    record(session, _event(row, body, None, now, trigger, refused=refused))
                    continue
            push = deliver.prepare_push(
                sealer,
                message,
                recipient_id=owner,
                keys=keys,
                kind=row.kind,
                nominal_ref=row.nominal_ref,
                now=now,
                message_id=row.id,
            )
            await deliver.enqueue(session, push, now=now)  # queued under the jti it signs
            record(session, _event(row, body, push.sealed.digest, now, trigger, decision, withheld))
            released += 1
    return released


def owners_waiting(agency_id: str | None = None) -> Select[str]:
    """The owners (``agency_id``, or any) with a notification still held: read from
    ix_held_notifications_unreleased, never through every notification ever released."""
    query = (
        select(HeldNotification.owner_agency_id)
        .where(HeldNotification.released_at.is_(None))
        .distinct()
    )
    if agency_id is not None:
        query = query.where(HeldNotification.owner_agency_id == agency_id)
    return query


async def release_held(
    db: Database,
    *,
    sealer: Sealer,
    case_sealer: CaseSealer,
    now: dt.datetime | None = None,
    agency_id: str | None = None,
    jwks_fetcher: JwksFetcher | None = None,
    trigger: str = "key_registered",
) -> int:
    """Send every held notification whose owner (``agency_id``, or any) now has a usable
    encryption key; returns how many were sent (enqueued). Owners still without a key keep
    theirs held."""
    at = now or dt.datetime.now(dt.UTC)
    async with db.read() as session:
        owners = sorted((await session.scalars(owners_waiting(agency_id))).all())
        keys = {o: await _usable_keys(session, o, at, jwks_fetcher) for o in owners}
    released = 0
    for owner in owners:
        if not keys[owner]:
            continue
        try:
            count = await _release_owner(
                db,
                owner,
                keys[owner],
                sealer=sealer,
                case_sealer=case_sealer,
                now=at,
                trigger=trigger,
            )
        except errors.RecipientKeyUnavailable:
            log.warning("held_notification_key_unusable", agency_id=owner)
            continue
        if count:
            log.info("held_notifications_released", agency_id=owner, count=count)
        released += count
    return released


async def release_with_settings(settings: Settings, db: Database, agency_id: str) -> int | None:
    """:func:`release_held` for one agency with the gateway's own keys (the ``agencies``
    commands); None when the payload or case-data keys cannot be opened here (a running
    gateway then sends them on its next look)."""
    from gateway.keyring import KeyRepositoryUnavailable, open_key_repository
    from gateway.store.sealed import open_case_sealer
    from keys import KeysError

    try:
        sealer = Sealer(
            open_key_repository(settings),
            issuer=settings.issuer,
            max_json_depth=settings.max_json_depth,
        )
        case_sealer = open_case_sealer(settings)
    except (KeyRepositoryUnavailable, KeysError) as exc:
        log.warning("held_notifications_not_released", reason=str(exc)[:200])
        return None
    return await release_held(
        db, sealer=sealer, case_sealer=case_sealer, agency_id=agency_id, trigger="agency_keys"
    )


@dataclass
class HeldReleaser:
    """The periodic :func:`release_held` of a running gateway (beside its relay)."""

    db: Database
    sealer: Sealer
    case_sealer: CaseSealer
    jwks_fetcher: JwksFetcher | None = None
    interval: float = RELEASE_INTERVAL
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    _task: asyncio.Task[None] | None = None

    async def once(self) -> int:
        try:
            return await release_held(
                self.db,
                sealer=self.sealer,
                case_sealer=self.case_sealer,
                now=self.clock(),
                jwks_fetcher=self.jwks_fetcher,
                trigger="periodic",
            )
        except errors.StoreUnavailable:
            log.warning("held_notifications_store_unavailable")
            return 0

    async def _run(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="held-notifications")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
