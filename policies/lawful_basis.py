"""The legal-basis register and the check every call passes before any data is read.

The register is reviewed data (``policies/data/legal_bases.toml``): each basis has a code (what
agencies send in ``MAPPA-Legal-Basis``), a citation, a plain-English summary, the purposes it
allows (``MAPPA-Purpose``), the s.325 roles (and optionally agency types) that may rely on it, and
optionally the case API operations it serves and the MAPPA categories of the nominal it may be
relied on for, and conditions. :func:`check` allows with a frozen :class:`BasisDecision` or raises a
:class:`~policies.errors.LawfulBasisRefused` naming the rule; an empty or missing register
refuses everything.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gateway.domain import AgencyType, Category, Role

from ._data import DataFiles, Table, read_data
from .errors import (
    BasisNotRecordedForNominal,
    CategoryNotAllowed,
    LawfulBasisMissing,
    LawfulBasisUnknown,
    OperationNotAllowed,
    PurposeMissing,
    PurposeNotAllowed,
    RoleNotAllowed,
)
from .facts import ContributorDecision

__all__ = [
    "BasisCondition",
    "BasisDecision",
    "LegalBasis",
    "LegalBasisRegister",
    "RecordedContributions",
    "check",
    "load_legal_bases",
]

_FILE = "legal_bases.toml"
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
#: An operation of the case API, by its route's name (``gateway/routes/cases.py``).
_OPERATION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class BasisCondition(enum.StrEnum):
    """Conditions a basis may carry; the register names them, this engine knows each one."""

    #: s.325(4A)(c): the RA recorded, for this nominal, that other persons may contribute.
    NOMINAL_RECORDED_OTHER_CONTRIBUTOR = "nominal-recorded-other-contributor"
    #: The caller is a Responsible Authority agency (s.327A).
    RESPONSIBLE_AUTHORITY_ONLY = "responsible-authority-only"


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """One entry of the register."""

    code: str
    citation: str
    summary: str
    purposes: frozenset[str]
    roles: frozenset[Role]
    #: None: any agency type of the listed roles may rely on it.
    agency_types: frozenset[AgencyType] | None
    conditions: frozenset[BasisCondition]
    #: The case API operations (route names) it serves; None: any.
    operations: frozenset[str] | None = None
    #: Only for a call about one nominal of these categories (never a call about none); None:
    #: any nominal, or none.
    nominal_categories: frozenset[Category] | None = None

    def __post_init__(self) -> None:
        if not _CODE.fullmatch(self.code):
            raise ValueError(f"not a basis code: {self.code!r}")
        if not self.purposes or not self.roles:
            raise ValueError(f"basis {self.code} allows no purpose or no role")


@dataclass(frozen=True, slots=True)
class BasisDecision:
    """The register allowed a call: the basis, the purpose, the rule and the policy version."""

    basis: str
    purpose: str
    citation: str
    rule: str
    policy_version: str
    #: The RA's s.325(4A)(c) decision the call relied on, when its basis needed one.
    contributor_decision: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedContributions:
    """What the Responsible Authority recorded under s.325(4A)(c) for the one nominal a call
    concerns: its decisions (standing or not), asked about for ``agency_id`` at ``now``."""

    agency_id: str
    nominal_id: str
    decisions: tuple[ContributorDecision, ...]
    now: dt.datetime

    def __post_init__(self) -> None:
        if not isinstance(self.decisions, tuple):
            raise ValueError("decisions must be a tuple")
        for decision in self.decisions:
            if not isinstance(decision, ContributorDecision):
                raise ValueError("decisions must be ContributorDecision facts")
            if decision.nominal_id != self.nominal_id:
                raise ValueError("a decision about another nominal was passed")
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")

    def standing_for(
        self, role: Role, purpose: str
    ) -> tuple[ContributorDecision | None, list[str]]:
        """The decision that lets ``role`` rely on s.325(4A)(c) for ``purpose`` now, or None and
        why each decision does not. Another contributor needs a decision naming its own agency;
        the Responsible Authority relies on any decision standing on the nominal."""
        reasons: list[str] = []
        for decision in self.decisions:
            if role is not Role.RESPONSIBLE_AUTHORITY and decision.agency_id != self.agency_id:
                continue
            why = decision.why_not(self.now)
            if why is None and purpose not in decision.purposes:
                why = f"decision {decision.decision_id} does not cover this purpose"
            if why is None:
                return decision, reasons
            reasons.append(why)
        return None, reasons


# Rule ids recorded with a refusal (the audit's ``rule``).
RULE_BASIS_PRESENT = "lawful-basis-present"
RULE_BASIS_REGISTERED = "lawful-basis-registered"
RULE_PURPOSE_PRESENT = "purpose-present"
RULE_PURPOSE_ALLOWED = "purpose-allowed-for-basis"
RULE_ROLE_ALLOWED = "role-allowed-for-basis"
RULE_AGENCY_TYPE_ALLOWED = "agency-type-allowed-for-basis"
RULE_OPERATION_ALLOWED = "operation-allowed-for-basis"
RULE_CATEGORY_ALLOWED = "nominal-category-allowed-for-basis"


def _cap(text: str) -> str:
    return text[:64]


@dataclass(frozen=True, slots=True)
class LegalBasisRegister:
    """The loaded register: the purpose vocabulary and the bases by code."""

    policy_version: str
    purposes: Mapping[str, str]
    bases: Mapping[str, LegalBasis]

    def needs_nominal(self, basis: str | None) -> bool:
        """Whether ``basis`` has a condition only the nominal's recorded decisions can meet."""
        entry = self.bases.get(basis or "")
        return (
            entry is not None
            and BasisCondition.NOMINAL_RECORDED_OTHER_CONTRIBUTOR in entry.conditions
        )

    def check(
        self,
        basis: str | None,
        purpose: str | None,
        caller_role: Role,
        caller_agency_type: AgencyType,
        recorded: RecordedContributions | None = None,
        *,
        defer_nominal_conditions: bool = False,
        operation: str | None = None,
        nominal_category: Category | None = None,
    ) -> BasisDecision:
        """Allow the call, or raise the :class:`LawfulBasisRefused` that names the failed rule.

        ``recorded`` is what the RA recorded under s.325(4A)(c) for the nominal the call
        concerns; None when the call concerns no single nominal (a basis that needs it is then
        refused). ``defer_nominal_conditions``: the call concerns one nominal not read yet; its
        conditions (the recorded decisions, its category) are taken as holding now and must be
        checked again, with ``recorded`` and ``nominal_category``, once need-to-know has found
        it and before anything of it is disclosed. ``operation``: the case API operation (route
        name) the call runs; a basis that lists its operations refuses any other, and a call
        that names none. ``nominal_category``: the category of the one nominal the call
        concerns, None when it concerns none (a basis for some categories is then refused).
        """
        version = self.policy_version
        if not basis:
            raise LawfulBasisMissing(
                "no legal basis given", rule=RULE_BASIS_PRESENT, policy_version=version
            )
        if not purpose:
            raise PurposeMissing(
                "no purpose given", rule=RULE_PURPOSE_PRESENT, policy_version=version
            )
        entry = self.bases.get(basis)
        if entry is None:
            why = "the register is empty" if not self.bases else "basis not in the register"
            raise LawfulBasisUnknown(
                why,
                rule=RULE_BASIS_REGISTERED,
                policy_version=version,
                diagnostics={"basis": _cap(basis)},
            )
        facts = {
            "basis": entry.code,
            "role": str(caller_role),
            "agency_type": str(caller_agency_type),
        }
        if caller_role not in entry.roles:
            raise RoleNotAllowed(
                f"role {caller_role} may not rely on {entry.code}",
                rule=RULE_ROLE_ALLOWED,
                policy_version=version,
                diagnostics=facts,
            )
        if entry.agency_types is not None and caller_agency_type not in entry.agency_types:
            raise RoleNotAllowed(
                f"agency type {caller_agency_type} may not rely on {entry.code}",
                rule=RULE_AGENCY_TYPE_ALLOWED,
                policy_version=version,
                diagnostics=facts,
            )
        if purpose not in entry.purposes:
            raise PurposeNotAllowed(
                f"{entry.code} does not allow this purpose",
                rule=RULE_PURPOSE_ALLOWED,
                policy_version=version,
                diagnostics={**facts, "purpose": _cap(purpose)},
            )
        if entry.operations is not None and operation not in entry.operations:
            raise OperationNotAllowed(
                f"{entry.code} does not serve this operation",
                rule=RULE_OPERATION_ALLOWED,
                policy_version=version,
                diagnostics={**facts, "operation": _cap(operation or "none")},
            )
        if (
            entry.nominal_categories is not None
            and not defer_nominal_conditions
            and nominal_category not in entry.nominal_categories
        ):
            category = "none" if nominal_category is None else str(int(nominal_category))
            raise CategoryNotAllowed(
                f"{entry.code} is only for one nominal of its categories; the call's: {category}",
                rule=RULE_CATEGORY_ALLOWED,
                policy_version=version,
                diagnostics={**facts, "category": category},
            )
        relied_on: ContributorDecision | None = None
        for condition in sorted(entry.conditions):
            rule = f"condition:{condition}"
            if (
                condition is BasisCondition.NOMINAL_RECORDED_OTHER_CONTRIBUTOR
                and not defer_nominal_conditions
            ):
                if recorded is None:
                    raise BasisNotRecordedForNominal(
                        f"{entry.code} needs the Responsible Authority's decision for one "
                        "nominal, and the call concerns none",
                        rule=rule,
                        policy_version=version,
                        diagnostics=facts,
                    )
                relied_on, reasons = recorded.standing_for(caller_role, purpose)
                if relied_on is None:
                    raise BasisNotRecordedForNominal(
                        f"{entry.code} needs a standing decision of the Responsible Authority "
                        f"for this nominal: {'; '.join(reasons) or 'none recorded'}"[:300],
                        rule=rule,
                        policy_version=version,
                        diagnostics={**facts, "decisions": len(recorded.decisions)},
                    )
            if (
                condition is BasisCondition.RESPONSIBLE_AUTHORITY_ONLY
                and caller_role is not Role.RESPONSIBLE_AUTHORITY
            ):
                raise RoleNotAllowed(
                    f"{entry.code} is for the Responsible Authority only",
                    rule=rule,
                    policy_version=version,
                    diagnostics=facts,
                )
        return BasisDecision(
            basis=entry.code,
            purpose=purpose,
            citation=entry.citation,
            rule=f"legal-basis:{entry.code}",
            policy_version=version,
            contributor_decision=relied_on.decision_id if relied_on is not None else None,
        )

    @classmethod
    def from_data(cls, files: DataFiles) -> LegalBasisRegister:
        """Build the register from a policy set's files, validating every entry."""
        top = files.table(_FILE)
        top.only({"purposes", "basis"})
        purposes_table = top.sub("purposes")
        purposes: dict[str, str] = {}
        for code in purposes_table.keys():
            if not _PURPOSE.fullmatch(code):
                raise purposes_table.fail(f"not a purpose code: {code!r}")
            purposes[code] = purposes_table.string(code)
        bases: dict[str, LegalBasis] = {}
        for table in top.tables("basis"):
            entry = _basis(table, purposes)
            if entry.code in bases:
                raise table.fail(f"duplicate basis code {entry.code}")
            bases[entry.code] = entry
        if bases and not purposes:
            raise top.fail("bases listed without a purpose vocabulary")
        return cls(files.version, MappingProxyType(purposes), MappingProxyType(bases))


def _basis(table: Table, purposes: Mapping[str, str]) -> LegalBasis:
    table.only(
        {
            "code",
            "citation",
            "summary",
            "purposes",
            "roles",
            "agency_types",
            "conditions",
            "operations",
            "nominal_categories",
        },
        required={"code", "citation", "summary", "purposes", "roles"},
    )
    code = table.string("code")
    allowed = table.strings("purposes")
    unknown = sorted(set(allowed) - purposes.keys())
    if unknown:
        raise table.fail(f"{code}: purposes not in the vocabulary: {', '.join(unknown)}")
    agency_types = (
        frozenset(table.enums("agency_types", AgencyType)) if table.has("agency_types") else None
    )
    if agency_types is not None and not agency_types:
        raise table.fail(f"{code}: agency_types is empty (remove it to allow every type)")
    operations = frozenset(table.strings("operations")) if table.has("operations") else None
    if operations is not None:
        if not operations:
            raise table.fail(f"{code}: operations is empty (remove it to allow every operation)")
        bad = sorted(o for o in operations if not _OPERATION.fullmatch(o))
        if bad:
            raise table.fail(f"{code}: not an operation name: {bad[0]!r}")
    categories = (
        frozenset(table.enums("nominal_categories", Category.parse))
        if table.has("nominal_categories")
        else None
    )
    if categories is not None and not categories:
        raise table.fail(f"{code}: nominal_categories is empty (remove it to allow every one)")
    try:
        return LegalBasis(
            code=code,
            citation=table.string("citation"),
            summary=" ".join(table.string("summary").split()),
            purposes=frozenset(allowed),
            roles=frozenset(table.enums("roles", Role)),
            agency_types=agency_types,
            conditions=frozenset(table.enums("conditions", BasisCondition, default=())),
            operations=operations,
            nominal_categories=categories,
        )
    except ValueError as exc:
        raise table.fail(str(exc)) from exc


def check(
    basis: str | None,
    purpose: str | None,
    caller_role: Role,
    caller_agency_type: AgencyType,
    recorded: RecordedContributions | None = None,
    *,
    defer_nominal_conditions: bool = False,
    operation: str | None = None,
    nominal_category: Category | None = None,
    register: LegalBasisRegister | None = None,
) -> BasisDecision:
    """Check with ``register`` (default: the packaged one); see :meth:`LegalBasisRegister.check`."""
    if register is None:
        from .policy_set import default_policy_set  # late: the set imports this module

        register = default_policy_set().legal_bases
    return register.check(
        basis,
        purpose,
        caller_role,
        caller_agency_type,
        recorded,
        defer_nominal_conditions=defer_nominal_conditions,
        operation=operation,
        nominal_category=nominal_category,
    )


def load_legal_bases(directory: Path | None = None) -> LegalBasisRegister:
    """Load and validate the register of ``directory`` (default: the packaged data)."""
    return LegalBasisRegister.from_data(read_data(directory))
