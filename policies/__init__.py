"""The MAPPA gateway's policy core: lawful basis, need-to-know and redaction, as reviewed data.

Pure and free of I/O beyond reading its own data files once: the gateway builds the facts from
its store, calls these functions, and turns refusals into its opaque errors and audit entries.

* :func:`check` (lawful basis): the call's legal basis, purpose, and the caller's role and agency
  type against the register in ``data/legal_bases.toml``; a :class:`BasisDecision` or a
  :class:`LawfulBasisRefused`.
* :func:`decide` (need-to-know, default deny): may this agency see this nominal, record, minutes,
  meeting, action point, hazard flag or level 1 list entry, in which :class:`View`; a
  :class:`Decision` or :class:`NoNeedToKnow`. :func:`explain` and :func:`render_explanation`
  say why, rule by rule.
* :func:`redact` (redaction chain), :func:`approved_view` (onward disclosure) and the hazard flag
  builder: a :class:`Redacted` document with every :class:`Withheld` field and its rule, or
  :class:`RedactionFailed` (send nothing); :func:`build_warning_marker` builds the housing
  property warning marker from its allow-list the same way.

Every decision and refusal names its rule and :data:`POLICY_VERSION`. Errors: :mod:`.errors`.
"""

from __future__ import annotations

from ._recipients import AllowList, Caveat, HazardFlagRules, RecipientRules, WarningMarkerRules
from .errors import (
    BasisNotRecordedForNominal,
    LawfulBasisMissing,
    LawfulBasisRefused,
    LawfulBasisUnknown,
    NoNeedToKnow,
    PolicyDataInvalid,
    PolicyError,
    PurposeMissing,
    PurposeNotAllowed,
    RedactionFailed,
    Refused,
    RoleNotAllowed,
)
from .facts import (
    APPROVABLE_PARTS,
    ActionInvolvement,
    ActionTarget,
    CallerAgency,
    ContributorDecision,
    ContributorDecisionsTarget,
    Facts,
    HazardFlagTarget,
    Involvements,
    Level1ListTarget,
    MeetingInvolvement,
    MeetingTarget,
    MinutesTarget,
    NominalFacts,
    NominalTarget,
    OnwardDisclosureGrant,
    RecordTarget,
    ReferralInvolvement,
    Resource,
    Target,
)
from .lawful_basis import (
    BasisCondition,
    BasisDecision,
    LegalBasis,
    LegalBasisRegister,
    RecordedContributions,
    check,
    load_legal_bases,
)
from .need_to_know import (
    DEFAULT_DENY,
    NOMINAL_ERASED,
    Decision,
    Explanation,
    NeedToKnowPolicy,
    decide,
    decide_first,
    explain,
    load_need_to_know,
    render_explanation,
)
from .policy import AllOf, Allow, AnyOf, Policy, UnsafeAllowAll, View
from .policy_set import PolicySet, default_policy_set, load_policy_set
from .redaction import Redacted, approved_view, chain_for, redact
from .redaction_steps import (
    HAZARD_FLAG,
    HAZARD_STATEMENT,
    Draft,
    MalformedDocument,
    RedactionContext,
    Step,
    Withheld,
    apply_allow_list,
    build_hazard_flag,
    document_caveat_rule,
    honour_caveats,
    select_approved_parts,
    withheld_entry,
    withhold_every_third_party_source,
    withhold_third_party_sources,
)
from .warning_marker import (
    RULE_WARNING_MARKER,
    WARNING_MARKER_FIELDS,
    WarningMarker,
    build_warning_marker,
)

#: The version of the packaged rules: the newest data file's date and a hash of all of them.
#: Loading it here loads and checks the packaged data: a malformed file fails the import.
POLICY_VERSION: str = default_policy_set().policy_version

__all__ = [
    "APPROVABLE_PARTS",
    "DEFAULT_DENY",
    "HAZARD_FLAG",
    "HAZARD_STATEMENT",
    "NOMINAL_ERASED",
    "POLICY_VERSION",
    "RULE_WARNING_MARKER",
    "WARNING_MARKER_FIELDS",
    "ActionInvolvement",
    "ActionTarget",
    "AllOf",
    "Allow",
    "AllowList",
    "AnyOf",
    "BasisCondition",
    "BasisDecision",
    "BasisNotRecordedForNominal",
    "CallerAgency",
    "Caveat",
    "ContributorDecision",
    "ContributorDecisionsTarget",
    "Decision",
    "Draft",
    "Explanation",
    "Facts",
    "HazardFlagRules",
    "HazardFlagTarget",
    "Involvements",
    "LawfulBasisMissing",
    "LawfulBasisRefused",
    "LawfulBasisUnknown",
    "LegalBasis",
    "LegalBasisRegister",
    "Level1ListTarget",
    "MalformedDocument",
    "MeetingInvolvement",
    "MeetingTarget",
    "MinutesTarget",
    "NeedToKnowPolicy",
    "NoNeedToKnow",
    "NominalFacts",
    "NominalTarget",
    "OnwardDisclosureGrant",
    "Policy",
    "PolicyDataInvalid",
    "PolicyError",
    "PolicySet",
    "PurposeMissing",
    "PurposeNotAllowed",
    "RecipientRules",
    "RecordTarget",
    "RecordedContributions",
    "Redacted",
    "RedactionContext",
    "RedactionFailed",
    "ReferralInvolvement",
    "Refused",
    "Resource",
    "RoleNotAllowed",
    "Step",
    "Target",
    "UnsafeAllowAll",
    "View",
    "WarningMarker",
    "WarningMarkerRules",
    "Withheld",
    "apply_allow_list",
    "approved_view",
    "build_hazard_flag",
    "build_warning_marker",
    "chain_for",
    "check",
    "decide",
    "decide_first",
    "default_policy_set",
    "document_caveat_rule",
    "explain",
    "honour_caveats",
    "load_legal_bases",
    "load_need_to_know",
    "load_policy_set",
    "redact",
    "render_explanation",
    "select_approved_parts",
    "withheld_entry",
    "withhold_every_third_party_source",
    "withhold_third_party_sources",
]
