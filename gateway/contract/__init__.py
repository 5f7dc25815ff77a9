"""The external contract's bodies: strict pydantic models for what agencies send and receive.

Inbound models forbid unknown fields and coerce nothing silently: a category is ``1``..``4`` or
the nDelius ``M1``..``M4``, a level ``1``..``3`` or ``M1``..``M3``, dates are ISO 8601 text,
booleans are JSON booleans. Outbound, each document and view has its own schema (:mod:`.views`):
what is on no schema is never serialised.
"""

from gateway.contract.contributors import (
    ContributorDecisionEntry,
    ContributorDecisionWithReasons,
    ContributorIn,
    ContributorNoticeView,
    ContributorRevocationIn,
)
from gateway.contract.disclosures import DecisionIn, DisclosureDecision, DisclosureIn
from gateway.contract.hazard_flags import HazardFlagIn
from gateway.contract.markers import WarningMarkerIn, WarningMarkerView
from gateway.contract.meetings import (
    ActionIn,
    ActionStatusIn,
    MeetingClosureIn,
    MeetingIn,
    MinutesIn,
    ParticipantIn,
    ParticipantsIn,
)
from gateway.contract.nominals import (
    CategoryChangeIn,
    DeregistrationIn,
    ErasureIn,
    LevelChangeIn,
    NominalLookupIn,
    ScreeningIn,
    ScreeningOutcome,
)
from gateway.contract.records import RecordIn, WrittenReportIn
from gateway.contract.referrals import ReferralIn, RiskEntry, SubjectDetails
from gateway.contract.sources import CaveatCode, ItemIn, SourceIn, SourceKind
from gateway.contract.views import (
    AckOut,
    ActionView,
    DisclosureRequestView,
    HazardFlagView,
    Level1EntryView,
    MeetingView,
    MinutesApprovedView,
    MinutesView,
    NominalView,
    ParticipantView,
    RecordView,
    ViewRefused,
    shape,
)

__all__ = [
    "AckOut",
    "ActionIn",
    "ActionStatusIn",
    "ActionView",
    "CategoryChangeIn",
    "CaveatCode",
    "ContributorDecisionEntry",
    "ContributorDecisionWithReasons",
    "ContributorIn",
    "ContributorNoticeView",
    "ContributorRevocationIn",
    "DecisionIn",
    "DeregistrationIn",
    "DisclosureDecision",
    "DisclosureIn",
    "DisclosureRequestView",
    "ErasureIn",
    "HazardFlagIn",
    "HazardFlagView",
    "ItemIn",
    "Level1EntryView",
    "LevelChangeIn",
    "MeetingClosureIn",
    "MeetingIn",
    "MeetingView",
    "MinutesApprovedView",
    "MinutesIn",
    "MinutesView",
    "NominalLookupIn",
    "NominalView",
    "ParticipantIn",
    "ParticipantView",
    "ParticipantsIn",
    "RecordIn",
    "RecordView",
    "ReferralIn",
    "RiskEntry",
    "ScreeningIn",
    "ScreeningOutcome",
    "SourceIn",
    "SourceKind",
    "SubjectDetails",
    "ViewRefused",
    "WarningMarkerIn",
    "WarningMarkerView",
    "WrittenReportIn",
    "shape",
]
