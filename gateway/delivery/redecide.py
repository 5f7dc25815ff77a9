"""A queued message is decided again for its recipient when it is pushed or pulled.

A push is decided when it is sealed, but it may wait in the outbox (a partner down, or one that
only pulls) while the case moves on: the nominal becomes category 4, is deregistered, changes
level, a meeting's review date passes. Before the relay pushes a message
(:func:`gateway.delivery.lease.claim`) and before the inbox lists it
(:func:`gateway.delivery.inbox.list_inbox`), need-to-know decides again, for the recipient,
on the message's nominal (``nominal_ref``) and on the target its kind was decided on at sealing
(:data:`TARGETS`). A message the recipient may no longer have is dead-lettered as
``recipient_may_not_know`` (:data:`NOT_KNOWN`): never pushed, never listed, logged by ids and
audited (a refused disclosure naming the refusing rule and the message id, never content), as a
message sealed to a retired key is (:func:`gateway.delivery.lease.retire_unopenable`).

One decision per message, with the engine and the involvement query of the case API
(:func:`gateway.flow.need_to_know.decide_any`): within one call the nominal and the recipient's
involvements are read once per nominal, however many of its messages are decided. A message
with no ``nominal_ref`` names no nominal, and goes as it was sealed.

Minutes and an onward disclosure of minutes name the meeting they are of (``subject_ref``), and
are decided again on that meeting alone: an agency removed from it, or whose meeting's need was
closed, is refused them though it still takes part in another meeting about the nominal. A row
queued before the outbox kept the meeting (``subject_ref`` null; the body, sealed to the
recipient, names it but is not opened here) is decided on any meeting of the recipient's about
the nominal, as it was then.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.delivery.dead_letters import DeadLetter, dead_letter
from gateway.domain import Level
from gateway.flow import need_to_know
from gateway.store.models import Agency, Nominal, NominalChange, OutboxMessage

__all__ = ["NOT_KNOWN", "TARGETS", "Judged", "judge"]


#: The dead-letter code (and the audit's reason code) of a message need-to-know no longer lets
#: its recipient have.
NOT_KNOWN = "recipient_may_not_know"
#: Which messages are not decided again (their body, sealed to the recipient, holds what they
#: were decided on): an owner notification (ids and codes: decided for the owner on the records
#: it names when sealed, and again when a held one is released) and an s.325(4A)(c) decision's
#: message (its standing or revoked status, also decided again at release).
NOT_DECIDED_AGAIN = frozenset({"owner_notification", "contributor_decision"})

#: The kinds whose targets (or second decision) need the recipient's involvements loaded.
_NEED_INVOLVEMENTS = frozenset({"minutes", "onward_disclosure", "level_change"})

_Targets = Callable[[OutboxMessage, Agency, policies.Involvements], tuple[policies.Target, ...]]


def _marker(
    row: OutboxMessage, agency: Agency, tied: policies.Involvements
) -> tuple[policies.Target, ...]:
    from gateway.cases.markers import RECIPIENT_TARGETS  # late: the case flows import delivery

    return RECIPIENT_TARGETS


def _of_meeting(row: OutboxMessage, meetings: Iterable[str]) -> tuple[policies.Target, ...]:
    """The minutes of the meeting ``row`` is about; for a row queued before the outbox named
    it (``subject_ref`` null), those of any of the recipient's ``meetings`` about the nominal."""
    if row.subject_ref is not None:
        return (policies.MinutesTarget(row.subject_ref),)
    return tuple(policies.MinutesTarget(meeting_id) for meeting_id in meetings)


#: The targets a message of each kind is decided on again (the first that grants), as at sealing.
TARGETS: dict[str, _Targets] = {
    # minutes: to a participant of the meeting they are of, while its part lasts
    "minutes": lambda row, agency, tied: _of_meeting(row, (m.meeting_id for m in tied.meetings)),
    # an onward disclosure: the approved parts of minutes, while the approval's meeting lasts
    "onward_disclosure": lambda row, agency, tied: _of_meeting(
        row, (g.meeting_id for g in tied.disclosures)
    ),
    # a record shared with the lead agency: the nominal (the rules grant records as nominals)
    "record": lambda row, agency, tied: (policies.NominalTarget(),),
    # a hazard flag: to the children's services agency it was raised for (named by the message)
    "hazard_flag": lambda row, agency, tied: (policies.HazardFlagTarget(row.id, agency.id),),
    # a warning marker, and its revocation: the nominal, or its level 1 list entry
    "warning_marker": _marker,
    "warning_marker_revocation": _marker,
    # a level change: the nominal, at the level it announces a change from or at the new one
    "level_change": lambda row, agency, tied: (policies.NominalTarget(),),
}


@dataclass
class Judged:
    """The rows that may go, and those dead-lettered (for the metric, once committed)."""

    kept: list[OutboxMessage] = field(default_factory=list)
    refused: list[DeadLetter] = field(default_factory=list)


async def _level_before(session: AsyncSession, row: OutboxMessage) -> Level | None:
    """The level a level change message announces a change from: the last level change of its
    nominal written by the message's time (the same transaction)."""
    old = await session.scalar(
        select(NominalChange.old_value)
        .where(
            NominalChange.nominal_id == row.nominal_ref,
            NominalChange.kind == "level",
            NominalChange.created_at <= row.created_at,
        )
        .order_by(NominalChange.created_at.desc())
        .limit(1)
    )
    try:
        return Level.parse(old) if old is not None else None
    except ValueError:
        return None


def _as_announced(
    before: Level | None,
    agency: policies.CallerAgency,
    nominal: Nominal,
    row: OutboxMessage,
    now: dt.datetime,
    tied: policies.Involvements,
) -> policies.Decision | None:
    """A level change is sent to who may see the nominal at the old level: decided again on the
    nominal as it was before the change it announces (anything since still counts: category,
    deregistration, review dates, a later level change). None if that does not grant."""
    changed = nominal.level_changed_at
    if changed is None or changed > row.created_at:
        return None
    facts = dataclasses.replace(
        need_to_know.nominal_facts(nominal),
        level=before if before is not None else Level(nominal.level),
        level_changed_at=None,
    )
    try:
        return policies.decide(policies.Facts(agency, facts, policies.NominalTarget(), now, tied))
    except policies.NoNeedToKnow:
        return None


async def _decide(
    session: AsyncSession,
    agency: Agency,
    row: OutboxMessage,
    nominals: dict[str, Nominal | None],
    involved: dict[str, policies.Involvements],
    now: dt.datetime,
) -> errors.NotFound | None:
    """None when ``row`` may go to ``agency``; else the refusal, naming its rule."""
    ref = row.nominal_ref
    if ref is None or row.kind in NOT_DECIDED_AGAIN:
        return None
    if ref not in nominals:
        nominals[ref] = await session.get(Nominal, ref)
    nominal = nominals[ref]
    if nominal is None:
        return need_to_know.not_found("nominal")
    how = TARGETS.get(row.kind)
    if how is None:  # a kind nobody said how to decide: default deny
        return errors.NotFound(
            diagnostics={"rule": policies.DEFAULT_DENY, "why": f"no targets for {row.kind}"}
        )
    facts = need_to_know.agency_facts(agency)
    tied: policies.Involvements | None = None
    if row.kind in _NEED_INVOLVEMENTS:
        if nominal.id not in involved:  # once per nominal in one call (the same recipient)
            involved[nominal.id] = await need_to_know.involvements(session, agency.id, nominal.id)
        tied = involved[nominal.id]
    targets = how(row, agency, tied or policies.Involvements())
    try:
        await need_to_know.decide_any(session, facts, nominal, targets, now, tied)
    except errors.NotFound as refused:
        if tied is not None and row.kind == "level_change":
            if _as_announced(await _level_before(session, row), facts, nominal, row, now, tied):
                return None
        if row.kind == "warning_marker_revocation":
            rules = policies.default_policy_set().recipients.warning_marker
            if rules.revocation_to_any_recipient:  # bare, and sent to any provider (policies.md)
                return None
        return refused
    return None


async def judge(
    session: AsyncSession,
    agency_id: str,
    rows: Sequence[OutboxMessage],
    *,
    now: dt.datetime,
    delivery: str,
) -> Judged:
    """Decide each of ``agency_id``'s ``rows`` again; dead-letter (in the open transaction:
    :func:`gateway.delivery.dead_letters.dead_letter`) those it may no longer have, and return
    the others. ``delivery`` (push or pull) is written in the audit."""
    judged = Judged()
    if not any(row.nominal_ref is not None for row in rows):
        judged.kept.extend(rows)
        return judged
    agency = await session.get(Agency, agency_id)
    nominals: dict[str, Nominal | None] = {}
    involved: dict[str, policies.Involvements] = {}
    for row in rows:
        refused = (
            need_to_know.not_found("agency")
            if agency is None
            else await _decide(session, agency, row, nominals, involved, now)
        )
        if refused is None:
            judged.kept.append(row)
            continue
        judged.refused.append(
            dead_letter(session, row, NOT_KNOWN, now=now, delivery=delivery, refusal=refused)
        )
    return judged
