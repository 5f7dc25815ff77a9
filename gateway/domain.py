"""The MAPPA vocabulary: enumerations shared by the store, the API and the policies.

The gateway speaks its own codes (category ``1``..``4``, level ``1``..``3``) and accepts the
nDelius codes partners send at the edges (register type ``MAPP``, categories ``M1``..``M4``,
levels ``M1``..``M3``): see :meth:`Category.parse` and :meth:`Level.parse`.
"""

from __future__ import annotations

import enum
from typing import Self

__all__ = [
    "KNOWN_SCOPES",
    "ActionStatus",
    "AgencyStatus",
    "AgencyType",
    "Category",
    "DisclosureStatus",
    "ErasureReason",
    "Level",
    "MeetingType",
    "NominalStatus",
    "Participation",
    "RecordKind",
    "ReferralKind",
    "RiskGroup",
    "RiskLevel",
    "Role",
    "Scope",
    "StatusWithheldReason",
]


class _CodedIntEnum(enum.IntEnum):
    """An integer code that also accepts an nDelius ``M<n>`` code at the edges."""

    @classmethod
    def parse(cls, value: object) -> Self:
        """Accept ``2``, ``"2"`` or the nDelius ``"M2"``; refuse anything else with ValueError."""
        if isinstance(value, bool):
            raise ValueError(f"not a {cls.__name__.lower()}: {value!r}")
        if isinstance(value, str):
            text = value.strip().upper()
            if text.startswith("M"):
                text = text[1:]
            if len(text) != 1 or text not in "0123456789":  # not str.isdigit: "\u00b2" passes it
                raise ValueError(f"not a {cls.__name__.lower()}: {value!r}")
            value = int(text)
        if not isinstance(value, int):
            raise ValueError(f"not a {cls.__name__.lower()}: {value!r}")
        return cls(value)

    @property
    def ndelius(self) -> str:
        return f"M{int(self)}"


class Category(_CodedIntEnum):
    """MAPPA category (s.327 CJA 2003 and the national Guidance)."""

    REGISTERED_SEXUAL_OFFENDER = 1
    VIOLENT_OR_OTHER_SEXUAL_OFFENDER = 2
    OTHER_DANGEROUS_OFFENDER = 3
    TERRORISM = 4


class Level(_CodedIntEnum):
    """MAPPA management level."""

    LEAD_AGENCY = 1
    MULTI_AGENCY = 2
    SENIOR_MULTI_AGENCY = 3


class AgencyType(enum.StrEnum):
    POLICE = "police"
    PROBATION = "probation"
    PRISON = "prison"
    CHILDRENS_SERVICES = "childrens_services"
    ADULT_SOCIAL_CARE = "adult_social_care"
    HEALTH = "health"
    MENTAL_HEALTH = "mental_health"
    HOUSING = "housing"
    YOUTH_OFFENDING = "youth_offending"
    EDUCATION = "education"
    JOBCENTRE_PLUS = "jobcentre_plus"
    ELECTRONIC_MONITORING = "electronic_monitoring"
    UK_VISAS_IMMIGRATION = "uk_visas_immigration"
    MAPPA_COORDINATION = "mappa_coordination"
    OTHER = "other"


class Role(enum.StrEnum):
    """An agency's position under s.325 CJA 2003."""

    RESPONSIBLE_AUTHORITY = "responsible_authority"
    DUTY_TO_COOPERATE = "duty_to_cooperate"
    #: s.325(4A)(c): any other person the RA considers could contribute, case by case.
    OTHER_CONTRIBUTOR = "other_contributor"
    #: Associate agencies that sit with the arrangements without a statutory duty.
    ASSOCIATE = "associate"


class AgencyStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class NominalStatus(enum.StrEnum):
    ACTIVE = "active"
    DEREGISTERED = "deregistered"
    #: The Responsible Authority erased the nominal's case data: only a tombstone is left, and
    #: the nominal is to everyone as an id that does not exist (gateway.cases.erasure).
    ERASED = "erased"


class ErasureReason(enum.StrEnum):
    """Why the Responsible Authority erased a nominal's case data (a closed vocabulary)."""

    #: The retention period after deregistration has passed (the area's retention schedule).
    RETENTION_PERIOD_ENDED = "retention_period_ended"
    #: The nominal was registered in error (the wrong person, or no MAPPA case at all).
    CREATED_IN_ERROR = "created_in_error"
    #: An erasure request of the data subject was upheld (DPA 2018 s.47).
    ERASURE_REQUEST_UPHELD = "erasure_request_upheld"


class StatusWithheldReason(enum.StrEnum):
    """Why a nominal has not been told of their MAPPA status."""

    WOULD_DESTABILISE = "would_destabilise"
    WOULD_ENDANGER_OTHERS = "would_endanger_others"


class RiskGroup(enum.StrEnum):
    CHILDREN = "children"
    PUBLIC = "public"
    KNOWN_ADULT = "known_adult"
    STAFF = "staff"
    SELF = "self"
    PRISONERS = "prisoners"


class RiskLevel(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


class ReferralKind(enum.StrEnum):
    MAPPA = "mappa"
    #: A non-offender: not MAPPA, goes to a high-risk information-sharing meeting instead.
    HIGH_RISK_INFORMATION_SHARING = "high_risk_information_sharing"


class RecordKind(enum.StrEnum):
    RISK_ASSESSMENT = "risk_assessment"
    INTELLIGENCE = "intelligence"
    CONVICTION = "conviction"
    ADDRESS = "address"
    CASE_NOTE = "case_note"
    TENANCY = "tenancy"
    WRITTEN_REPORT = "written_report"


class MeetingType(enum.StrEnum):
    SCREENING = "screening"
    LEVEL_1_PROFESSIONALS = "level_1_professionals"
    LEVEL_2 = "level_2"
    LEVEL_3 = "level_3"
    SERIOUS_CASE_REVIEW = "serious_case_review"


class Participation(enum.StrEnum):
    INVITED = "invited"
    ATTENDED = "attended"
    #: Receives the minutes without attending (e.g. Jobcentre Plus).
    MINUTES_ONLY = "minutes_only"
    #: Taken off the meeting by its chair: the agency gets nothing through the meeting from then
    #: on (the row stays, as the record that it once took part; the audit keeps what it was sent).
    REMOVED = "removed"


class ActionStatus(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


class DisclosureStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class Scope(enum.StrEnum):
    """An OAuth scope granted to an agency at onboarding (``agencies add --scope``)."""

    #: The case API's reads (``gateway/cases``).
    CASE_READ = "case:read"
    #: The case API's writes.
    CASE_WRITE = "case:write"
    #: Pulling and acknowledging the inbox (``gateway/routes/inbox.py``).
    INBOX_READ = "inbox:read"
    #: The audit API, for a MAPPA co-ordination unit's IG system (``gateway/routes/audit.py``).
    AUDIT_READ = "audit:read"


#: Every scope an endpoint checks: onboarding refuses any other, which would grant nothing.
KNOWN_SCOPES: tuple[str, ...] = tuple(scope.value for scope in Scope)
