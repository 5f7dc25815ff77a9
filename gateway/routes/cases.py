"""The case API v1: one :class:`~gateway.routes.sealed.Route` per endpoint, over the operations
in :mod:`gateway.cases`.

Every route authenticates (DPoP-bound token, fresh proof, ``MAPPA-*`` context headers), then
hands the call to its operation under :func:`gateway.cases.context.guarded`, which audits any
refusal; :mod:`gateway.routes.sealed` holds that shape once. Bodies with case data travel as
``application/jose`` both ways; writes carry an ``Idempotency-Key``. The models named below are
those of the JSON inside the signed, encrypted body (``x-mappa-sealed-schema``); the full
contract is in ``docs/api.md``.

Each row reads: the endpoint, its name (FastAPI's operationId is made from it: keep it stable),
its summary, how the audit records the call, the operation it runs with the path's ids, and its
sealed bodies (:func:`write` a body for an AckOut, :func:`read` an answer, :func:`lookup` a body
for an answer).
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway import contract
from gateway.cases import (
    actions,
    contributors,
    disclosures,
    erasure,
    hazard_flags,
    level1,
    markers,
    meetings,
    nominals,
    records,
    referrals,
    reports,
)
from gateway.contract.markers import WarningMarkerRevocationIn
from gateway.contract.pages import (
    ContributorDecisionsPage,
    Level1Page,
    RecordsPage,
    ReportsList,
    WarningMarkersPage,
)
from gateway.flow.audit import Operation
from gateway.routes.sealed import Route, add_routes, lookup, page, read, write

__all__ = ["ROUTES", "router"]

ROUTES: tuple[Route, ...] = (
    # ---------------------------------------------------------------------------- referrals
    Route(
        "POST /referrals",
        "post_referral",
        "Refer a subject (MAPPA A, or a non-offender: not MAPPA)",
        Operation.COLLECTION,
        referrals.create_referral,
        write(contract.ReferralIn),
    ),
    # ----------------------------------------------------------------------------- nominals
    Route(
        "POST /nominals/lookup",
        "post_nominal_lookup",
        "Find a nominal by its PNC id, CRN or ViSOR reference (in the sealed body)",
        Operation.CONSULTATION,
        nominals.lookup_nominal,
        lookup(contract.NominalLookupIn, contract.NominalView),
    ),
    Route(
        "GET /nominals/{nominal_id}",
        "get_nominal",
        "A nominal, as the caller may see it",
        Operation.DISCLOSURE,
        nominals.read_nominal,
        read(contract.NominalView),
    ),
    Route(
        "POST /nominals/{nominal_id}/level",
        "post_level",
        "Change the level (Responsible Authority)",
        Operation.ALTERATION,
        nominals.change_level,
        write(contract.LevelChangeIn, 200),
    ),
    Route(
        "POST /nominals/{nominal_id}/category",
        "post_category",
        "Change the category (Responsible Authority)",
        Operation.ALTERATION,
        nominals.change_category,
        write(contract.CategoryChangeIn, 200),
    ),
    Route(
        "POST /nominals/{nominal_id}/screening",
        "post_screening",
        "Record the screening outcome (Responsible Authority)",
        Operation.ALTERATION,
        nominals.record_screening,
        write(contract.ScreeningIn, 200),
    ),
    Route(
        "POST /nominals/{nominal_id}/deregistration",
        "post_deregistration",
        "Deregister the nominal (Responsible Authority)",
        Operation.ALTERATION,
        nominals.deregister,
        write(contract.DeregistrationIn, 200),
    ),
    Route(
        "POST /nominals/{nominal_id}/erasure",
        "post_erasure",
        "Erase the nominal's case data, leaving a tombstone (Responsible Authority)",
        Operation.ERASURE,
        erasure.erase_nominal,
        write(contract.ErasureIn, 200),
    ),
    # ------------------------------------------------------------------------------ records
    Route(
        "POST /nominals/{nominal_id}/records",
        "post_record",
        "Share an information record",
        Operation.COLLECTION,
        records.create_record,
        write(contract.RecordIn),
    ),
    Route(
        "GET /nominals/{nominal_id}/records",
        "get_records",
        "The records the caller may see (cursor pages)",
        Operation.DISCLOSURE,
        records.list_records,
        page(RecordsPage),
    ),
    Route(
        "GET /nominals/{nominal_id}/records/{record_id}",
        "get_record",
        "One record",
        Operation.DISCLOSURE,
        records.read_record,
        read(contract.RecordView),
    ),
    # ----------------------------------------------------------------------------- meetings
    Route(
        "POST /meetings",
        "post_meeting",
        "Convene a meeting about a nominal",
        Operation.COLLECTION,
        meetings.create_meeting,
        write(contract.MeetingIn),
    ),
    Route(
        "GET /meetings/{meeting_id}",
        "get_meeting",
        "A meeting and its participants, never its minutes (participants, invited, co-ordinator)",
        Operation.DISCLOSURE,
        meetings.read_meeting,
        read(contract.MeetingView),
    ),
    Route(
        "POST /meetings/{meeting_id}/participants",
        "post_participants",
        "Set participation: invited, attended, minutes only, or removed (chair)",
        Operation.ALTERATION,
        meetings.set_participants,
        write(contract.ParticipantsIn, 200),
    ),
    Route(
        "POST /meetings/{meeting_id}/closure",
        "post_meeting_closure",
        "Close the meeting's need: what it grants ends for every agency (chair or co-ordinator)",
        Operation.ALTERATION,
        meetings.close_meeting,
        write(contract.MeetingClosureIn, 200),
    ),
    Route(
        "POST /meetings/{meeting_id}/minutes",
        "post_minutes",
        "Minutes (MAPPA B), circulated to participants only",
        Operation.COLLECTION,
        meetings.create_minutes,
        write(contract.MinutesIn),
    ),
    Route(
        "GET /meetings/{meeting_id}/minutes",
        "get_minutes",
        "The minutes: in full to participants, approved parts to a recipient",
        Operation.DISCLOSURE,
        meetings.read_minutes,
        read(contract.MinutesView),
    ),
    Route(
        "POST /meetings/{meeting_id}/reports",
        "post_report",
        "A written report from an agency invited that cannot attend",
        Operation.COLLECTION,
        reports.create_report,
        write(contract.WrittenReportIn),
    ),
    Route(
        "GET /meetings/{meeting_id}/reports",
        "get_reports",
        "The meeting's written reports (chair, co-ordinator, participants)",
        Operation.DISCLOSURE,
        reports.list_reports,
        read(ReportsList),
    ),
    Route(
        "POST /meetings/{meeting_id}/actions",
        "post_action",
        "An action point (chair)",
        Operation.COLLECTION,
        meetings.create_action,
        write(contract.ActionIn),
    ),
    # -------------------------------------------------------------------------- disclosures
    Route(
        "POST /disclosures",
        "post_disclosure",
        "Ask to share minutes beyond the meeting",
        Operation.COLLECTION,
        disclosures.request_disclosure,
        write(contract.DisclosureIn),
    ),
    Route(
        "GET /disclosures/{disclosure_id}",
        "get_disclosure",
        "An onward-disclosure request's status (the requesting agency, chair or co-ordinator)",
        Operation.DISCLOSURE,
        disclosures.read_disclosure,
        read(contract.DisclosureRequestView),
    ),
    Route(
        "POST /disclosures/{disclosure_id}/decision",
        "post_decision",
        "Approve or refuse an onward disclosure (chair or co-ordinator)",
        Operation.ALTERATION,
        disclosures.decide_disclosure,
        write(contract.DecisionIn, 200),
    ),
    # ------------------------------------------------------------------------- hazard flags
    Route(
        "POST /hazard-flags",
        "post_hazard_flag",
        "Raise an HZD flag for children's services",
        Operation.DISCLOSURE,
        hazard_flags.raise_hazard_flag,
        write(contract.HazardFlagIn),
    ),
    Route(
        "GET /hazard-flags/{flag_id}",
        "get_hazard_flag",
        "A hazard flag (its recipient, the RA, the lead)",
        Operation.DISCLOSURE,
        hazard_flags.read_hazard_flag,
        read(contract.HazardFlagView),
    ),
    # ---------------------------------------------------------------------- warning markers
    Route(
        "POST /warning-markers",
        "post_warning_marker",
        "Mark a property for a housing provider (PWM; Responsible Authority)",
        Operation.DISCLOSURE,
        markers.raise_warning_marker,
        write(contract.WarningMarkerIn),
    ),
    Route(
        "GET /nominals/{nominal_id}/warning-markers",
        "get_warning_markers",
        "The warning markers raised on a nominal (Responsible Authority; cursor pages)",
        Operation.DISCLOSURE,
        markers.list_warning_markers,
        page(WarningMarkersPage),
    ),
    Route(
        "POST /warning-markers/{marker_id}/revocation",
        "post_warning_marker_revocation",
        "Revoke a warning marker; housing removes the PWM (Responsible Authority)",
        Operation.ALTERATION,
        markers.revoke_warning_marker,
        write(WarningMarkerRevocationIn, 200),
    ),
    # ------------------------------------------------------------------------- level 1 list
    Route(
        "GET /level-1-list",
        "get_level_1_list",
        "The monthly level 1 list of the caller's area",
        Operation.DISCLOSURE,
        level1.read_level_1_list,
        page(Level1Page),
    ),
    # ------------------------------------------------------- s.325(4A)(c) contributor decisions
    Route(
        "POST /nominals/{nominal_id}/contributors",
        "post_contributor",
        "Record that an agency could contribute, s.325(4A)(c) (Responsible Authority)",
        Operation.COLLECTION,
        contributors.record_contributor,
        write(contract.ContributorIn),
    ),
    Route(
        "GET /nominals/{nominal_id}/contributors",
        "get_contributors",
        "The s.325(4A)(c) decisions on a nominal: the RA's with reasons, a contributor's own "
        "(cursor pages)",
        Operation.DISCLOSURE,
        contributors.list_contributors,
        page(ContributorDecisionsPage),
    ),
    Route(
        "POST /nominals/{nominal_id}/contributors/{decision_id}/revocation",
        "post_contributor_revocation",
        "Revoke an s.325(4A)(c) decision (Responsible Authority)",
        Operation.ALTERATION,
        contributors.revoke_contributor,
        write(contract.ContributorRevocationIn, 200),
    ),
    # ------------------------------------------------------------------------ action points
    Route(
        "GET /actions/{action_id}",
        "get_action",
        "An action point (its owner, the meeting's participants, co-ordinator)",
        Operation.DISCLOSURE,
        actions.read_action,
        read(contract.ActionView),
    ),
    Route(
        "POST /actions/{action_id}/status",
        "post_action_status",
        "Move an action point: open, in progress, done, cancelled (owner or chair)",
        Operation.ALTERATION,
        actions.update_action_status,
        write(contract.ActionStatusIn, 200),
    ),
)

router = APIRouter(prefix="/v1", tags=["cases"])
add_routes(router, ROUTES)
