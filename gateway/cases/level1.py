"""The monthly level 1 list: level 1 nominals of the caller's area, minimal fields.

A nominal appears once screened (or once the RA set its level): not while the referral that
made it awaits screening.

Level 1 nominals are managed by their lead agency alone; the MAPPA agencies of the area are told
of them through this list, not through meetings. Each entry is decided (rule
``level-1-monthly-list``: category 4 nominals reach only the agencies the policy names) and cut
to the list's allow-list (names, date of birth, category, level, lead agency, area).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, exists, select
from starlette.responses import Response

import policies
from gateway import errors
from gateway.cases import documents
from gateway.cases.context import READ, Call, released
from gateway.cases.paging import collect, page_of
from gateway.domain import Level, NominalStatus
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.need_to_know import LINKED_REFERRAL
from gateway.store.models import Nominal, Referral

__all__ = ["RULE", "level_1_nominals", "read_level_1_list"]

RULE = "level-1-monthly-list"


def _entry(call: Call, nominal: Nominal) -> tuple[policies.Decision, redact.Released] | None:
    """The nominal's list entry for the caller and its decision; None if it may not see it
    (a category 4 nominal, to all but the agencies the policy names)."""
    try:
        decision = need_to_know.decide_with(
            call.agency, nominal, policies.Level1ListTarget(), call.now, policies.Involvements()
        )
    except errors.NotFound:
        return None
    document = documents.nominal_document(nominal, call.case_sealer)
    return decision, redact.redact(decision, call.agency, document, purpose=call.caller.purpose)


def _awaiting_screening() -> Any:
    """The nominal was made by a referral not yet screened (its own referral still open; a
    later referral that found it, ``linked``, does not count). Such a nominal is no case of the
    area's yet: listing it would give every agency of the area the referred person's name and
    date of birth before the RA has screened them, and tell a referrer whether an identifier it
    sent was already registered (a known one makes no new nominal, an unknown one did)."""
    return exists(
        select(Referral.id).where(
            Referral.nominal_id == Nominal.id,
            Referral.closed_at.is_(None),
            Referral.status != LINKED_REFERRAL,
        )
    )


def level_1_nominals(area: str) -> Select[Nominal]:
    """The area's active level 1 nominals (screened), for :func:`collect` to page through by
    (``created_at``, ``id``): ix_nominals_level_1_list reads them in that order, a page at a
    time, never the area's level 2 and 3 nominals and its past ones."""
    return select(Nominal).where(
        Nominal.area == area,
        Nominal.level == int(Level.LEAD_AGENCY),
        Nominal.status == NominalStatus.ACTIVE,
        ~_awaiting_screening(),
    )


async def read_level_1_list(call: Call) -> Response:
    """GET /v1/level-1-list: this month's level 1 list for the caller's area, a page at a time."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=False)
    page = page_of(call.request)
    async with call.db.read() as session:
        query = level_1_nominals(call.caller.area)
        kept, cursor = await collect(
            session, page, query, Nominal.created_at, Nominal.id, lambda row: _entry(call, row)
        )
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    releases = [release for _, (_, release) in kept]
    decision = kept[0][1][0] if kept else None
    entries = [release.document for release in releases]
    answer: dict[str, Any] = {"entries": entries, "area": call.caller.area}
    if cursor is not None:
        answer["next_cursor"] = cursor
    sealed = call.answer(answer, caller_keys)
    if decision is None:  # nothing disclosed but the area's (empty) page: recorded all the same
        decision = policies.Decision(
            rule=RULE,
            view=policies.View.MONTHLY_LIST_MINIMAL,
            resource=policies.Resource.LEVEL_1_LIST,
            policy_version=policies.POLICY_VERSION,
            why="no entry on this page",
        )
    await released(
        call,
        decision,
        redact.withheld_names(releases),  # the same fields of every entry: each (field, rule) once
        sealed,
        record_refs=tuple(e["id"] for e in entries if "id" in e),
        nominals=[nominal.id for nominal, _ in kept],  # none erased since the page was read
    )
    return deliver.jose_response(sealed)
