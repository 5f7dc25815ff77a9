"""The warning marker builder and its rule in recipients.toml: built, never redacted.

Whatever the source holds, the marker carries the allow-listed fields alone; everything else
is withheld and named with the rule. A value that could carry details fails the build, and the
data file cannot widen what the engine allows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.domain import AgencyType, Role
from policies import (
    POLICY_VERSION,
    RULE_WARNING_MARKER,
    PolicyDataInvalid,
    RedactionFailed,
    Withheld,
    build_warning_marker,
    default_policy_set,
    load_policy_set,
)
from tests.policies.policies_support import agency, copy_data

HOUSING = agency(AgencyType.HOUSING, Role.DUTY_TO_COOPERATE)
SOURCE = {
    "uprn": "200004512345",
    "marker": "PWM",
    "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
    "review_date": "2027-02-23",
}


def test_packaged_rule_sends_markers_to_housing_only() -> None:
    """recipients.toml: housing receives PWM markers of exactly four fields."""
    rules = default_policy_set().recipients.warning_marker
    assert rules.recipient_agency_types == {AgencyType.HOUSING}
    assert rules.fields == ("uprn", "marker", "contact", "review_date")
    assert rules.markers == {"PWM"}


def test_marker_keeps_the_allow_list_and_withholds_the_rest_by_name() -> None:
    """Offence, intelligence, names and third-party text in the source: withheld, named."""
    source = {
        **SOURCE,
        "offence": "s.7 SOA 2003",
        "intelligence": "Seen outside school",
        "family_name": "Ravenscroft",
        "third_party_source": "Neighbour at no. 43",
    }
    built = build_warning_marker(HOUSING, source)
    assert dict(built.document) == SOURCE
    assert {(w.field, w.rule) for w in built.withheld} == {
        (name, RULE_WARNING_MARKER)
        for name in ("offence", "intelligence", "family_name", "third_party_source")
    }
    assert built.policy_version == POLICY_VERSION
    assert "s.7" not in repr(built.withheld)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"uprn": "41 Quillfeather Road"}, "not a UPRN"),
        ({"uprn": None}, "no property"),
        ({"marker": "SEX"}, "outside the vocabulary"),
        ({"review_date": "next spring"}, "not a date"),
    ],
)
def test_a_value_that_could_carry_details_fails_the_build(
    change: dict[str, object], why: str
) -> None:
    """Nothing is built (RedactionFailed: send nothing) when a value is not what it claims."""
    with pytest.raises(RedactionFailed) as caught:
        build_warning_marker(HOUSING, {**SOURCE, **change})
    assert caught.value.rule == RULE_WARNING_MARKER, why


@pytest.mark.parametrize("contact", ["DS Hale\nre: s.7 offence", "x" * 121, {"name": "DS Hale"}])
def test_a_stored_contact_without_the_contacts_shape_is_withheld(contact: object) -> None:
    """A contact stored before contacts had a shape goes nowhere: the marker goes without it."""
    built = build_warning_marker(HOUSING, {**SOURCE, "contact": contact})
    assert "contact" not in built.document and built.document["uprn"] == SOURCE["uprn"]
    assert Withheld("contact", RULE_WARNING_MARKER) in built.withheld


def test_only_the_named_agency_types_receive_a_marker() -> None:
    """Children's services (or police) are not warning marker recipients."""
    for agency_type in (AgencyType.CHILDRENS_SERVICES, AgencyType.POLICE):
        with pytest.raises(RedactionFailed):
            build_warning_marker(agency(agency_type), SOURCE)


def test_the_data_file_cannot_widen_the_marker(tmp_path: Path) -> None:
    """A [warning_marker] field outside the engine's allow-list fails to load."""
    data = copy_data(tmp_path)
    path = data / "recipients.toml"
    text = path.read_text()
    old = 'fields = ["uprn", "marker", "contact", "review_date"]'
    assert old in text
    path.write_text(text.replace(old, 'fields = ["uprn", "marker", "contact", "offence"]'))
    with pytest.raises(PolicyDataInvalid, match="may not carry"):
        load_policy_set(data)


def test_without_the_rule_nobody_receives_a_marker(tmp_path: Path) -> None:
    """Default deny: no [warning_marker] table, no recipient."""
    data = copy_data(tmp_path)
    path = data / "recipients.toml"
    text = path.read_text()
    path.write_text(text[: text.index("[warning_marker]")])
    rules = load_policy_set(data).recipients
    with pytest.raises(RedactionFailed):
        build_warning_marker(HOUSING, SOURCE, rules=rules)


def test_packaged_revocation_is_bare_and_goes_to_any_provider() -> None:
    """recipients.toml: a revocation carries the marker id, UPRN and code (what the provider
    already holds), and reaches a provider that may no longer know of the nominal."""
    rules = default_policy_set().recipients.warning_marker
    assert rules.revocation_fields == ("marker_id", "uprn", "marker")
    assert rules.revocation_to_any_recipient is True


@pytest.mark.parametrize(
    ("line", "match"),
    [
        # a reason or anything about the person cannot be added to a revocation
        ('revocation_fields = ["marker_id", "uprn", "reason"]', "may not carry"),
        ('revocation_fields = ["marker_id", "uprn", "contact"]', "may not carry"),
        # the provider could not find what to remove
        ('revocation_fields = ["uprn", "marker"]', "needs"),
        ('revocation_fields = ["marker_id"]', "needs"),
        # a flag is true or false, never a string that reads as one
        ('revocation_to_any_recipient = "yes"', "true or false"),
    ],
)
def test_the_data_file_cannot_widen_the_revocation(tmp_path: Path, line: str, match: str) -> None:
    data = copy_data(tmp_path)
    path = data / "recipients.toml"
    text = path.read_text()
    key = line.split(" = ")[0]
    [old] = [row for row in text.splitlines() if row.startswith(f"{key} = ")]
    path.write_text(text.replace(old, line))
    with pytest.raises(PolicyDataInvalid, match=match):
        load_policy_set(data)


def test_without_the_revocation_keys_a_revocation_reaches_only_who_may_know(
    tmp_path: Path,
) -> None:
    """Default deny: without ``revocation_to_any_recipient`` the exception is off, and a
    revocation carries the three fields at most."""
    data = copy_data(tmp_path)
    path = data / "recipients.toml"
    text = path.read_text()
    kept = [
        row
        for row in text.splitlines()
        if not row.startswith(("revocation_fields", "revocation_to_any_recipient"))
    ]
    path.write_text("\n".join(kept) + "\n")
    rules = load_policy_set(data).recipients.warning_marker
    assert rules.revocation_to_any_recipient is False
    assert rules.revocation_fields == ("marker_id", "uprn", "marker")
