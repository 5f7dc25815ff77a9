"""The legal-basis register: THREATS.md "Lawful basis" lines, conditions, and the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.domain import AgencyType, Role
from policies import (
    POLICY_VERSION,
    BasisDecision,
    BasisNotRecordedForNominal,
    LawfulBasisMissing,
    LawfulBasisRefused,
    LawfulBasisUnknown,
    PolicyDataInvalid,
    PurposeMissing,
    PurposeNotAllowed,
    RecordedContributions,
    RoleNotAllowed,
    check,
    load_legal_bases,
)
from policies.errors import CategoryNotAllowed, OperationNotAllowed
from tests.policies.policies_support import NOMINAL_ID, NOW, contribution, copy_data

RA, DTC, OTHER, ASSOC = (
    Role.RESPONSIBLE_AUTHORITY,
    Role.DUTY_TO_COOPERATE,
    Role.OTHER_CONTRIBUTOR,
    Role.ASSOCIATE,
)
A = AgencyType
#: The other contributor's agency, and what the RA recorded for it on the nominal.
CONTRIBUTOR = "victim-support-barnet"
RECORDED = RecordedContributions(CONTRIBUTOR, NOMINAL_ID, (contribution(CONTRIBUTOR),), NOW)
UNRECORDED = RecordedContributions(CONTRIBUTOR, NOMINAL_ID, (), NOW)

REQUIRED_CODES = {
    "CJA2003-s325-3",
    "CJA2003-s325-4",
    "CJA2003-s325-4A-c",
    "CJA2003-s327A",
    "DPA2018-s35",
    "DPA2018-sch8",
    "CA2004-s11",
    "CA1989-s47",
    "CDA1998-s115",
}


def test_register_holds_every_basis_issue_5_names() -> None:
    """The packaged register lists at least the nine bases of issue 5, each with a citation."""
    register = load_legal_bases()
    assert REQUIRED_CODES <= set(register.bases)
    for basis in register.bases.values():
        assert basis.citation and basis.summary and basis.purposes and basis.roles


@pytest.mark.parametrize(
    ("basis", "purpose", "role", "agency_type", "recorded"),
    [
        # s.325(4): a DTC agency (housing) exchanging information to manage the risk.
        ("CJA2003-s325-4", "risk-management", DTC, A.HOUSING, None),
        # s.325(3): the RA (police) preparing a MAPPA meeting.
        ("CJA2003-s325-3", "mappa-meeting", RA, A.POLICE, None),
        # s.325(4A)(c): another contributor, when the RA recorded the decision for the nominal.
        ("CJA2003-s325-4A-c", "risk-assessment", OTHER, A.OTHER, RECORDED),
        # s.327A: its operations and categories have their own table
        # (tests/policies/test_public_disclosure_basis.py).
        # DPA 2018 s.35: a competent authority (youth offending team) for law enforcement.
        ("DPA2018-s35", "risk-assessment", DTC, A.YOUTH_OFFENDING, None),
        # DPA 2018 Sch 8: sensitive processing to safeguard children, by the police.
        ("DPA2018-sch8", "safeguarding", RA, A.POLICE, None),
        # Children Act 2004 s.11: children's services safeguarding.
        ("CA2004-s11", "safeguarding", DTC, A.CHILDRENS_SERVICES, None),
        # Children Act 1989 s.47: children's services' child protection enquiry.
        ("CA1989-s47", "child-protection", DTC, A.CHILDRENS_SERVICES, None),
        # Crime and Disorder Act 1998 s.115: housing, crime prevention.
        ("CDA1998-s115", "crime-prevention", DTC, A.HOUSING, None),
    ],
)
def test_basis_allows_its_purposes_for_its_roles(
    basis: str,
    purpose: str,
    role: Role,
    agency_type: AgencyType,
    recorded: RecordedContributions | None,
) -> None:
    """A basis, purpose and role that fit are allowed, with the rule and the policy version."""
    decision = check(basis, purpose, role, agency_type, recorded)
    assert decision == BasisDecision(
        basis=basis,
        purpose=purpose,
        citation=load_legal_bases().bases[basis].citation,
        rule=f"legal-basis:{basis}",
        policy_version=POLICY_VERSION,
        contributor_decision="cd-1" if recorded is not None else None,
    )


@pytest.mark.parametrize(
    ("basis", "purpose", "role", "agency_type", "recorded", "error", "rule"),
    [
        # THREATS: no legal basis (absent header, empty header).
        (None, "risk-management", DTC, A.HOUSING, None, LawfulBasisMissing, "lawful-basis-present"),
        ("", "risk-management", DTC, A.HOUSING, None, LawfulBasisMissing, "lawful-basis-present"),
        # No purpose.
        ("CJA2003-s325-4", None, DTC, A.HOUSING, None, PurposeMissing, "purpose-present"),
        # THREATS: an unknown basis, including a near miss and an injection attempt.
        ("CJA2003-s999", "risk-management", RA, A.POLICE, None, LawfulBasisUnknown,
         "lawful-basis-registered"),
        ("cja2003-s325-4", "risk-management", RA, A.POLICE, None, LawfulBasisUnknown,
         "lawful-basis-registered"),
        ("' OR 1=1 --", "risk-management", RA, A.POLICE, None, LawfulBasisUnknown,
         "lawful-basis-registered"),
        # THREATS: a purpose not allowed for the basis (s.325(4) is not for public disclosure).
        ("CJA2003-s325-4", "public-disclosure", RA, A.POLICE, None, PurposeNotAllowed,
         "purpose-allowed-for-basis"),
        # A purpose that is in no vocabulary at all.
        ("CJA2003-s325-4", "curiosity", DTC, A.HOUSING, None, PurposeNotAllowed,
         "purpose-allowed-for-basis"),
        # THREATS: a basis the role may not use: s.327A is for the RA only.
        ("CJA2003-s327A", "public-disclosure", DTC, A.HOUSING, None, RoleNotAllowed,
         "role-allowed-for-basis"),
        # An associate agency has no s.325 basis at all.
        ("CJA2003-s325-4", "risk-management", ASSOC, A.OTHER, None, RoleNotAllowed,
         "role-allowed-for-basis"),
        # A DTC agency may not claim the other-contributor basis.
        ("CJA2003-s325-4A-c", "risk-assessment", DTC, A.HOUSING, RECORDED, RoleNotAllowed,
         "role-allowed-for-basis"),
        # An agency type outside the basis's list: housing is not a Part 3 competent authority.
        ("DPA2018-s35", "risk-assessment", DTC, A.HOUSING, None, RoleNotAllowed,
         "agency-type-allowed-for-basis"),
        # s.327A held by an RA role but a non-RA agency type.
        ("CJA2003-s327A", "public-disclosure", RA, A.HOUSING, None, RoleNotAllowed,
         "agency-type-allowed-for-basis"),
        # s.325(4A)(c) without the RA's recorded decision for the nominal, or with no nominal.
        ("CJA2003-s325-4A-c", "risk-assessment", OTHER, A.OTHER, UNRECORDED,
         BasisNotRecordedForNominal, "condition:nominal-recorded-other-contributor"),
        ("CJA2003-s325-4A-c", "risk-assessment", OTHER, A.OTHER, None,
         BasisNotRecordedForNominal, "condition:nominal-recorded-other-contributor"),
    ],
)  # fmt: skip
def test_call_that_does_not_fit_is_refused_with_its_rule(
    basis: str | None,
    purpose: str | None,
    role: Role,
    agency_type: AgencyType,
    recorded: RecordedContributions | None,
    error: type[LawfulBasisRefused],
    rule: str,
) -> None:
    """Each misfit raises its own error class and code, naming the rule and policy version."""
    with pytest.raises(error) as caught:
        check(basis, purpose, role, agency_type, recorded)
    assert type(caught.value) is error
    assert caught.value.rule == rule
    assert caught.value.policy_version == POLICY_VERSION
    assert caught.value.audit_fields()["reason_code"] == error.code


def test_refusal_caps_the_callers_free_text_in_diagnostics() -> None:
    """An unknown basis is kept for the audit at most 64 characters long, never interpreted."""
    with pytest.raises(LawfulBasisUnknown) as caught:
        check("X" * 5000, "risk-management", RA, A.POLICE, None)
    assert caught.value.diagnostics == {"basis": "X" * 64}
    assert "X" * 65 not in caught.value.why


def test_error_codes_are_stable() -> None:
    """The machine codes the audit log and problem bodies rely on do not drift."""
    assert {
        cls.code
        for cls in (
            LawfulBasisMissing,
            LawfulBasisUnknown,
            PurposeMissing,
            PurposeNotAllowed,
            RoleNotAllowed,
            OperationNotAllowed,
            CategoryNotAllowed,
            BasisNotRecordedForNominal,
        )
    } == {
        "lawful_basis_missing",
        "lawful_basis_unknown",
        "purpose_missing",
        "purpose_not_allowed",
        "role_not_allowed",
        "operation_not_allowed",
        "category_not_allowed",
        "basis_not_recorded_for_nominal",
    }


def test_missing_register_denies_everything(tmp_path: Path) -> None:
    """With no legal_bases.toml, even a well-formed call is refused as unknown."""
    data = copy_data(tmp_path)
    (data / "legal_bases.toml").unlink()
    register = load_legal_bases(data)
    assert not register.bases
    with pytest.raises(LawfulBasisUnknown, match="register is empty"):
        register.check("CJA2003-s325-4", "risk-management", RA, A.POLICE, None)


def test_empty_register_denies_everything(tmp_path: Path) -> None:
    """An empty legal_bases.toml refuses every call."""
    data = copy_data(tmp_path)
    (data / "legal_bases.toml").write_text("# nothing reviewed yet\n")
    register = load_legal_bases(data)
    with pytest.raises(LawfulBasisUnknown):
        register.check("CJA2003-s325-3", "mappa-meeting", RA, A.POLICE, None)


def _edit(tmp_path: Path, old: str, new: str) -> Path:
    data = copy_data(tmp_path)
    path = data / "legal_bases.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return data


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # An unknown key in a basis (a typo must not silently drop a condition).
        ('conditions = ["nominal-recorded', 'condition = ["nominal-recorded', "unknown key"),
        # A duplicate code.
        ('code = "CJA2003-s325-4"', 'code = "CJA2003-s325-3"', "duplicate basis code"),
        # A purpose that the vocabulary does not define.
        ('purposes = ["public-disclosure"]', 'purposes = ["public-shaming"]', "not in the vocab"),
        # A role that s.325 does not know.
        ('roles = ["responsible_authority"]\n', 'roles = ["anyone"]\n', "unknown value"),
        # An unknown condition.
        ('conditions = ["responsible-authority-only"]', 'conditions = ["trust-me"]',
         "unknown value"),
        # An unknown top-level table.
        ("[purposes]", "[purpose]", "unknown key"),
        # A missing citation.
        ('citation = "Criminal Justice Act 2003, s.327A"\n', "", "missing key"),
        # An empty agency type list (would read as "nobody" or "everybody").
        ('agency_types = ["police", "probation", "prison"]', "agency_types = []", "empty"),
        # A header without a reviewer.
        ('reviewed_by = "Project', 'reviewed_byx = "Project', "header lacks reviewed_by"),
        # Not TOML at all.
        ("[purposes]", "[purposes", "not valid UTF-8 TOML"),
    ],
)  # fmt: skip
def test_bad_register_fails_to_load(tmp_path: Path, old: str, new: str, message: str) -> None:
    """A malformed register is a load error naming the file, never a silent default."""
    data = _edit(tmp_path, old, new)
    with pytest.raises(PolicyDataInvalid, match=message) as caught:
        load_legal_bases(data)
    assert caught.value.rule == "legal_bases.toml"
