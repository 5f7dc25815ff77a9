"""The reviewed data files: strict loading, empty sets deny, and the policy version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.domain import AgencyType
from policies import (
    POLICY_VERSION,
    NoNeedToKnow,
    PolicyDataInvalid,
    decide,
    default_policy_set,
    load_need_to_know,
    load_policy_set,
)
from policies._data import DATA_FILES, default_data_dir, read_data
from tests.policies.policies_support import agency, copy_data, facts, meeting

ROOT = Path(__file__).resolve().parents[2]


def _edit(data: Path, name: str, old: str, new: str) -> None:
    path = data / name
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_packaged_policy_set_loads_with_one_version() -> None:
    """The shipped files load, cross-check, and every part carries POLICY_VERSION."""
    policy = default_policy_set()
    assert policy.policy_version == POLICY_VERSION
    assert policy.legal_bases.policy_version == POLICY_VERSION
    assert policy.need_to_know.policy_version == POLICY_VERSION
    assert policy.recipients.policy_version == POLICY_VERSION


def test_data_files_ship_in_the_package() -> None:
    """Every data file is in policies/data and pyproject's package-data includes it."""
    assert sorted(p.name for p in default_data_dir().glob("*.toml")) == sorted(DATA_FILES)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "data/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["policies"]


def test_policy_version_is_the_date_and_a_digest_of_the_files() -> None:
    """POLICY_VERSION reads <newest version date>+<12 hex digits>."""
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\+[0-9a-f]{12}", POLICY_VERSION)
    assert POLICY_VERSION.startswith("2026-12-07+")


@pytest.mark.parametrize("name", DATA_FILES)
def test_policy_version_changes_when_a_data_file_changes(tmp_path: Path, name: str) -> None:
    """Any edit to any rule file, even a comment, changes the version decisions record."""
    data = copy_data(tmp_path)
    assert read_data(data).version == POLICY_VERSION
    with (data / name).open("a") as handle:
        handle.write("\n# reviewed again\n")
    edited = read_data(data).version
    assert edited != POLICY_VERSION
    assert load_policy_set(data).need_to_know.policy_version == edited


def test_policy_version_changes_when_a_file_is_removed(tmp_path: Path) -> None:
    """Removing a file is a change of policy too."""
    data = copy_data(tmp_path)
    (data / "recipients.toml").unlink()
    assert read_data(data).version != POLICY_VERSION


def test_decision_records_the_version_of_the_rules_that_made_it(tmp_path: Path) -> None:
    """A decision made under edited rules names the edited version."""
    data = copy_data(tmp_path)
    _edit(data, "need_to_know.toml", "meeting_without_review_date_days = 90",
          "meeting_without_review_date_days = 30")  # fmt: skip
    policy = load_need_to_know(data)
    decision = decide(facts(agency(AgencyType.POLICE)), policy=policy)
    assert decision.policy_version == read_data(data).version != POLICY_VERSION


@pytest.mark.parametrize("content", [None, "", "# nothing yet\n"])
def test_empty_or_missing_need_to_know_denies_everything(
    tmp_path: Path, content: str | None
) -> None:
    """With no rules, even the Responsible Authority and an attendee are refused."""
    data = copy_data(tmp_path)
    path = data / "need_to_know.toml"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    policy = load_need_to_know(data)
    housing = agency(AgencyType.HOUSING)
    for row in (facts(agency(AgencyType.POLICE)), facts(housing, meetings=(meeting(housing),))):
        with pytest.raises(NoNeedToKnow) as caught:
            decide(row, policy=policy)
        assert caught.value.rule == "default-deny"


def test_removing_a_rule_removes_only_that_grant(tmp_path: Path) -> None:
    """Without the RA rule the police lose area-wide access but keep their meeting involvement."""
    data = copy_data(tmp_path)
    text = (data / "need_to_know.toml").read_text()
    start = text.index("[rules.responsible-authority-of-area]")
    end = text.index("# The agency that supplied a record")
    (data / "need_to_know.toml").write_text(text[:start] + text[end:])
    policy = load_need_to_know(data)
    police = agency(AgencyType.POLICE)
    with pytest.raises(NoNeedToKnow):
        decide(facts(police), policy=policy)
    attended = facts(police, meetings=(meeting(police),))
    assert decide(attended, policy=policy).rule == "involved-meeting"


BAD_NEED_TO_KNOW = [
    # An unknown rule id (a typo must not be silently ignored).
    ("[rules.lead-agency]", "[rules.lead-agencies]", "unknown rule id"),
    # An unknown key in a rule.
    ('agency_types = ["childrens_services"]', 'agency_type = ["childrens_services"]',
     "unknown key"),
    # A resource the rule cannot cover: involvement never opens the level 1 list.
    ('[rules.involved-referral]\nresources = ["nominal", "record"]',
     '[rules.involved-referral]\nresources = ["nominal", "level_1_list"]', "subset"),
    # An agency type that does not exist.
    ('agency_types = ["police", "probation"]', 'agency_types = ["police", "mi5"]',
     "unknown value"),
    # A time zone that does not exist.
    ('time_zone = "Europe/London"', 'time_zone = "Europe/Barnet"', "unknown time zone"),
    # An onward-disclosure part that cannot be approved.
    ('parts = ["conclusions", "actions"]', 'parts = ["conclusions", "discussion"]', "parts"),
    # A version that is not a date.
    ('version = "2026-12-06"', 'version = "latest"', "ISO date"),
    # An agency the chair took off a meeting may not be granted anything through it.
    ('participations = ["invited", "attended", "minutes_only"]',
     'participations = ["invited", "attended", "minutes_only", "removed"]', "removed"),
    # A negative default.
    ("meeting_without_review_date_days = 90", "meeting_without_review_date_days = -1",
     "non-negative"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), BAD_NEED_TO_KNOW)
def test_bad_need_to_know_fails_to_load(tmp_path: Path, old: str, new: str, message: str) -> None:
    """A malformed need-to-know file is a load error naming the file."""
    data = copy_data(tmp_path)
    _edit(data, "need_to_know.toml", old, new)
    with pytest.raises(PolicyDataInvalid, match=message) as caught:
        load_policy_set(data)
    assert caught.value.rule == "need_to_know.toml"


BAD_RECIPIENTS = [
    # An allow-list field that the document classification does not know.
    ('fields = ["id", "level", "lead_agency_id", "names", "date_of_birth", "status_informed", '
     '"risk"]', 'fields = ["id", "level", "names", "offence_details"]', "not classified"),
    # Two allow-lists for the same recipient (which would win is not reviewable).
    ('agency_types = ["housing"]\nfields = [\n    "id", "category"',
     'agency_types = ["housing", "education"]\nfields = [\n    "id", "category"', "overlaps"),
    # A caveat that withholds in no case.
    ("\nwithhold_unless_originator = true", "\nwithhold_unless_originator = false",
     "must withhold"),
    # A hazard flag widened beyond what the engine allows.
    ('fields = ["child_or_family_ref", "relationship", "contact", "review_date"]',
     'fields = ["child_or_family_ref", "relationship", "contact", "offence"]', "may not carry"),
    # A hazard flag missing a required field.
    ('fields = ["child_or_family_ref", "relationship", "contact", "review_date"]',
     'fields = ["child_or_family_ref", "contact"]', "needs"),
    # A view that has no allow-list.
    ('view = "monthly-list-minimal"', 'view = "hazard-flag-only"', "has no allow-list"),
    # A caveat purpose the legal-basis register does not define (checked across files).
    ('withhold_for_purposes = ["child-protection"]', 'withhold_for_purposes = ["gossip"]',
     "does not define"),
    # An unknown document.
    ("[documents.minutes]", "[documents.diary]", "unknown document"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), BAD_RECIPIENTS)
def test_bad_recipients_fails_to_load(tmp_path: Path, old: str, new: str, message: str) -> None:
    """A malformed recipients file is a load error naming the file."""
    data = copy_data(tmp_path)
    _edit(data, "recipients.toml", old, new)
    with pytest.raises(PolicyDataInvalid, match=message) as caught:
        load_policy_set(data)
    assert caught.value.rule == "recipients.toml"
