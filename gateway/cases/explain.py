"""``mappa-gateway policy explain``: why an agency may or may not see a nominal, rule by rule.

The facts come from the store exactly as the need-to-know stage builds them for a request (the
agency's type, role and area; the nominal's category, level, status and area; the agency's
referral, meeting, action and onward-disclosure involvements), so what this prints is what a
request at that moment would be decided on. It prints identifiers and codes only, never personal
data, and the consultation is audited.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import policies
from gateway.audit.commit import record_alone
from gateway.flow import need_to_know
from gateway.flow.audit import AuditEvent, Operation, Outcome
from gateway.settings import get_settings
from gateway.store import Database
from gateway.store.models import Agency, HazardFlag, InformationRecord, Nominal

__all__ = ["ExplainRefused", "explain_access", "register"]

RESOURCES = ("nominal", "record", "minutes", "hazard-flag", "level-1-list", "contributors")


class ExplainRefused(ValueError):
    """The agency, nominal or target named does not exist (nothing to explain)."""


async def _target(db: Database, nominal_id: str, args: dict[str, str | None]) -> policies.Target:
    resource = args.get("resource") or "nominal"
    if resource == "nominal":
        return policies.NominalTarget()
    if resource == "level-1-list":
        return policies.Level1ListTarget()
    if resource == "contributors":
        return policies.ContributorDecisionsTarget()
    if resource == "minutes":
        if not args.get("meeting"):
            raise ExplainRefused("--meeting is needed for minutes")
        return policies.MinutesTarget(str(args["meeting"]))
    async with db.read() as session:
        if resource == "record":
            record = await session.get(InformationRecord, args.get("record") or "")
            if record is None or record.nominal_id != nominal_id:
                raise ExplainRefused("no such record of this nominal")
            return policies.RecordTarget(record.id, record.owner_agency_id, record.kind)
        flag = await session.get(HazardFlag, args.get("flag") or "")
        if flag is None or flag.nominal_id != nominal_id:
            raise ExplainRefused("no such hazard flag of this nominal")
        return policies.HazardFlagTarget(
            flag.id, flag.recipient_agency_id, active=flag.status == "active"
        )


async def explain_access(
    db: Database,
    *,
    agency_id: str,
    nominal_id: str,
    target: dict[str, str | None] | None = None,
    now: dt.datetime | None = None,
) -> str:
    """The explanation text, as the need-to-know stage would decide at ``now``."""
    at = now or dt.datetime.now(dt.UTC)
    async with db.read() as session:
        agency = await session.get(Agency, agency_id)
        nominal = await session.get(Nominal, nominal_id)
        if agency is None or nominal is None:
            raise ExplainRefused("no such agency or nominal")
        tied = await need_to_know.involvements(session, agency_id, nominal_id)
    chosen = await _target(db, nominal_id, target or {})
    facts = policies.Facts(
        need_to_know.agency_facts(agency), need_to_know.nominal_facts(nominal), chosen, at, tied
    )
    text = policies.render_explanation(facts)
    await record_alone(
        db,
        AuditEvent(
            occurred_at=at,
            operation=Operation.CONSULTATION,
            outcome=Outcome.ALLOWED,
            officer_id="operator:policy-explain",
            nominal_ref=nominal_id,
            policy_version=policies.POLICY_VERSION,
            reason_code="policy_explain",
            detail={"agency": agency_id, "resource": str(chosen.resource)},
        ),
    )
    return text


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="The sharing rules: explain a decision")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    explain = sub.add_parser(
        "explain", help="Why an agency may or may not see a nominal (rule by rule)"
    )
    explain.add_argument("--agency", required=True)
    explain.add_argument("--nominal", required=True)
    explain.add_argument("--resource", choices=RESOURCES, default="nominal")
    explain.add_argument("--record", help="the record id (--resource record)")
    explain.add_argument("--meeting", help="the meeting id (--resource minutes)")
    explain.add_argument("--flag", help="the hazard flag id (--resource hazard-flag)")
    explain.add_argument("--at", help="decide at this ISO 8601 time (default: now)")
    explain.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        at = dt.datetime.fromisoformat(args.at) if args.at else None
        if at is not None and at.tzinfo is None:
            raise ValueError("--at needs a time zone")
    except ValueError as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2

    async def run() -> str:
        db = Database(settings.database_url)
        try:
            return await explain_access(
                db,
                agency_id=args.agency,
                nominal_id=args.nominal,
                target={
                    "resource": args.resource,
                    "record": args.record,
                    "meeting": args.meeting,
                    "flag": args.flag,
                },
                now=at,
            )
        finally:
            await db.dispose()

    try:
        print(asyncio.run(run()), end="")
    except ExplainRefused as exc:
        print(f"mappa-gateway: {exc}", file=sys.stderr)
        return 2
    return 0
