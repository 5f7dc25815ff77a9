"""s.327A (the child sex offender disclosure scheme) in the register: only the Responsible
Authority's police, probation and prisons, only to read what a disclosure decision needs (the
nominal and its records), only about one nominal of category 1, never for a write, a flag, a
marker or the level 1 list. One row per case."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.domain import AgencyType, Category, Role
from policies import (
    POLICY_VERSION,
    LawfulBasisRefused,
    PolicyDataInvalid,
    RoleNotAllowed,
    check,
    load_legal_bases,
)
from policies.errors import CategoryNotAllowed, OperationNotAllowed
from tests.policies.test_lawful_basis import _edit

S327A = ("CJA2003-s327A", "public-disclosure")
RA, DTC = Role.RESPONSIBLE_AUTHORITY, Role.DUTY_TO_COOPERATE
A = AgencyType
C = Category
READS = ("post_nominal_lookup", "get_nominal", "get_records", "get_record")


def test_register_says_what_s327a_serves() -> None:
    """The register lists the operations and the category; the summary says so."""
    basis = load_legal_bases().bases["CJA2003-s327A"]
    assert basis.operations == frozenset(READS)
    assert basis.nominal_categories == frozenset({C.REGISTERED_SEXUAL_OFFENDER})
    assert basis.roles == frozenset({RA})
    assert basis.agency_types == frozenset({A.POLICE, A.PROBATION, A.PRISON})
    assert "category 1" in basis.summary


@pytest.mark.parametrize(
    ("agency_type", "operation"),
    [
        (A.POLICE, "get_nominal"),  # police read the nominal the member of the public asked about
        (A.POLICE, "post_nominal_lookup"),  # found by the identifier they were given
        (A.PROBATION, "get_records"),  # probation read the records (the convictions)
        (A.PRISON, "get_record"),  # a prison reads one record
    ],
)
def test_category_1_is_allowed_for_the_ra_and_a_read(
    agency_type: AgencyType, operation: str
) -> None:
    """Allowed before the nominal is read (its category deferred) and once it is (category 1)."""
    early = check(*S327A, RA, agency_type, None, defer_nominal_conditions=True, operation=operation)
    assert early.rule == "legal-basis:CJA2003-s327A"
    late = check(*S327A, RA, agency_type, None, operation=operation, nominal_category=C(1))
    assert late == early
    assert late.policy_version == POLICY_VERSION


@pytest.mark.parametrize(
    ("role", "agency_type", "operation", "category", "deferred", "error", "rule"),
    [
        # category 2 (violent or other sexual offender), 3 and 4 (terrorism): not the scheme's
        (RA, A.POLICE, "get_nominal", C(2), False, CategoryNotAllowed,
         "nominal-category-allowed-for-basis"),
        (RA, A.PROBATION, "get_records", C(3), False, CategoryNotAllowed,
         "nominal-category-allowed-for-basis"),
        (RA, A.POLICE, "get_record", C(4), False, CategoryNotAllowed,
         "nominal-category-allowed-for-basis"),
        # the level 1 list concerns no single nominal: not an operation the basis serves
        (RA, A.POLICE, "get_level_1_list", None, False, OperationNotAllowed,
         "operation-allowed-for-basis"),
        # a read it serves, but about no single nominal, is refused too
        (RA, A.POLICE, "get_nominal", None, False, CategoryNotAllowed,
         "nominal-category-allowed-for-basis"),
        # writes, before anything is read, whatever the nominal's category
        (RA, A.POLICE, "post_record", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "post_category", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "post_level", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.PROBATION, "post_deregistration", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "post_meeting", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "post_referral", None, False, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "post_disclosure", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        # a hazard flag or a warning marker is a disclosure to an agency, not to the public
        (RA, A.POLICE, "post_hazard_flag", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "post_warning_marker", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        # other reads: minutes, meetings, flags
        (RA, A.POLICE, "get_minutes", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        (RA, A.POLICE, "get_hazard_flag", None, True, OperationNotAllowed,
         "operation-allowed-for-basis"),
        # a call that names no operation at all is refused (default deny)
        (RA, A.POLICE, None, C(1), False, OperationNotAllowed, "operation-allowed-for-basis"),
        # roles and agency types: as before, and before the operation
        (DTC, A.HOUSING, "get_nominal", C(1), False, RoleNotAllowed, "role-allowed-for-basis"),
        (RA, A.MAPPA_COORDINATION, "get_nominal", C(1), False, RoleNotAllowed,
         "agency-type-allowed-for-basis"),
    ],
)  # fmt: skip
def test_anything_else_is_refused_with_its_rule(
    role: Role,
    agency_type: AgencyType,
    operation: str | None,
    category: Category | None,
    deferred: bool,
    error: type[LawfulBasisRefused],
    rule: str,
) -> None:
    with pytest.raises(error) as caught:
        check(
            *S327A,
            role,
            agency_type,
            None,
            defer_nominal_conditions=deferred,
            operation=operation,
            nominal_category=category,
        )
    assert type(caught.value) is error
    assert caught.value.rule == rule
    assert caught.value.policy_version == POLICY_VERSION
    assert caught.value.audit_fields()["reason_code"] == error.code


def test_other_bases_are_not_limited_by_operation_or_category() -> None:
    """A basis that lists neither serves every operation and every category, and none."""
    for operation, category in (("post_record", C(4)), (None, None), ("get_level_1_list", None)):
        check("CJA2003-s325-4", "risk-management", DTC, A.HOUSING, None,
              operation=operation, nominal_category=category)  # fmt: skip


OPERATIONS = 'operations = ["post_nominal_lookup", "get_nominal", "get_records", "get_record"]'


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (OPERATIONS, "operations = []", "operations is empty"),
        (OPERATIONS, 'operations = ["GET /nominals"]', "not an operation name"),
        (OPERATIONS, 'operations = ["get_nominal", "get_nominal"]', "lists a value twice"),
        ('nominal_categories = ["1"]', "nominal_categories = []", "nominal_categories is empty"),
        ('nominal_categories = ["1"]', 'nominal_categories = ["5"]', "unknown value"),
        ('nominal_categories = ["1"]', 'nominal_categories = ["sex offender"]', "unknown value"),
        ('nominal_categories = ["1"]', 'nominal_category = ["1"]', "unknown key"),
    ],
)
def test_bad_limits_fail_to_load(tmp_path: Path, old: str, new: str, message: str) -> None:
    """A malformed limit is a load error, never a basis without it."""
    with pytest.raises(PolicyDataInvalid, match=message):
        load_legal_bases(_edit(tmp_path, old, new))


def test_removing_the_limits_is_a_reviewed_change_of_version(tmp_path: Path) -> None:
    """The limits are data: an edit changes the policy version every decision records."""
    data = _edit(tmp_path, 'nominal_categories = ["1"]\n', "")
    register = load_legal_bases(data)
    assert register.policy_version != POLICY_VERSION
    assert register.bases["CJA2003-s327A"].nominal_categories is None
