"""The children's services hazard flag, and the approved view of minutes for onward disclosure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.domain import AgencyType
from policies import (
    HazardFlagTarget,
    RedactionFailed,
    Resource,
    View,
    Withheld,
    approved_view,
    decide,
    redact,
)
from tests.policies.policies_support import agency, context, facts

CSC = agency(AgencyType.CHILDRENS_SERVICES)
FLAG_KEYS = {"child_or_family_ref", "flag", "relationship", "statement", "contact", "review_date"}
SOURCE: dict[str, Any] = {
    "child_or_family_ref": "ICS/123456",
    "relationship": "father",
    "contact": {"role": "mappa_unit", "telephone": "020 8200 0000"},
    "review_date": "2027-02-12",
}
HOSTILE_EXTRAS: dict[str, Any] = {
    "offence": "Sexual assault of a child under 13",
    "intelligence": "Seen loitering near St Mary's primary school",
    "sources": [{"id": "s1", "third_party": True, "text": "Mrs Jones at No 4"}],
    "category": 1,
    "level": 3,
    "risk": {"children": "very_high"},
    "nominal_name": "John Smith",
    "notes": "Victim is his stepdaughter",
    "flag": "NOT-HZD",
    "statement": "convicted sex offender",
}


def _flag_context() -> Any:
    return context(CSC, resource=Resource.HAZARD_FLAG, view=View.HAZARD_FLAG_ONLY, record_kind=None)


def test_hazard_flag_carries_exactly_its_allow_list() -> None:
    """The flag is the reference, HZD, the relationship, "known to MAPPA", a contact, a date."""
    result = redact(_flag_context(), SOURCE)
    assert result.to_dict() == {
        "child_or_family_ref": "ICS/123456",
        "flag": "HZD",
        "relationship": "father",
        "statement": "known to MAPPA",
        "contact": {"role": "mappa_unit", "telephone": "020 8200 0000"},
        "review_date": "2027-02-12",
    }


@pytest.mark.parametrize("extra", sorted(HOSTILE_EXTRAS))
def test_hazard_flag_carries_only_allow_listed_keys_whatever_the_source_holds(extra: str) -> None:
    """Offences, intelligence, third parties or a forged flag in the source never reach it."""
    result = redact(_flag_context(), {**SOURCE, extra: HOSTILE_EXTRAS[extra]})
    assert set(result.document) == FLAG_KEYS
    assert result.document["flag"] == "HZD"
    assert result.document["statement"] == "known to MAPPA"
    assert Withheld(extra, "hazard-flag-allow-list") in result.withheld
    output = result.to_json()
    for text in ("Sexual", "primary", "Jones", "Smith", "stepdaughter", "very_high", "convicted"):
        assert text.encode() not in output


def test_hazard_flag_with_everything_hostile_at_once() -> None:
    """All hostile fields together: still exactly the allow-listed keys."""
    result = redact(_flag_context(), {**SOURCE, **HOSTILE_EXTRAS})
    assert set(result.document) == FLAG_KEYS
    assert {w.field for w in result.withheld} == set(HOSTILE_EXTRAS)


def test_hazard_flag_review_date_is_optional() -> None:
    """Without a review date the flag has the other five keys."""
    source = {k: v for k, v in SOURCE.items() if k != "review_date"}
    assert set(redact(_flag_context(), source).document) == FLAG_KEYS - {"review_date"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # A relationship outside the vocabulary (free text could carry an offence).
        ("relationship", "father, convicted of rape in 2009"),
        # A reference that is prose, not a reference.
        ("child_or_family_ref", "the Smith children at 4 Elm Road"),
        # A review date that is not a date.
        ("review_date", "when the trial ends"),
        # A required field missing.
        ("relationship", None),
    ],
)
def test_hazard_flag_refuses_values_that_could_carry_details(key: str, value: Any) -> None:
    """A flag that cannot be built safely is not built: RedactionFailed, nothing to send."""
    with pytest.raises(RedactionFailed) as caught:
        redact(_flag_context(), {**SOURCE, key: value})
    assert caught.value.rule == "redaction-step:build_hazard_flag"
    assert "convicted" not in caught.value.why and "Offence" not in caught.value.why


@pytest.mark.parametrize(
    "contact",
    [
        "MAPPA Unit\nOffence: indecent images",  # text with a line break smuggling more
        "x" * 121,  # text too long to be a contact
        {"name": "PC Smith"},  # an object that is not a contact
        {"role": "mappa_unit", "telephone": "020 8200 0000", "note": "re: his stepdaughter"},
    ],
)
def test_a_stored_contact_without_the_contacts_shape_is_withheld(contact: Any) -> None:
    """A contact stored before contacts had a shape (free text) never goes: the flag goes
    without it, and the withheld list names it (new ones are refused at the contract)."""
    redacted = redact(_flag_context(), {**SOURCE, "contact": contact})
    assert set(redacted.document) == FLAG_KEYS - {"contact"}
    assert Withheld("contact", "hazard-flag-allow-list") in redacted.withheld
    assert "Offence" not in json.dumps(redacted.to_dict())


def test_hazard_flag_is_only_for_childrens_services() -> None:
    """The hazard-flag view for another agency type is refused."""
    housing = agency(AgencyType.HOUSING)
    ctx = context(
        housing, resource=Resource.HAZARD_FLAG, view=View.HAZARD_FLAG_ONLY, record_kind=None
    )
    with pytest.raises(RedactionFailed):
        redact(ctx, SOURCE)


def test_need_to_know_and_redaction_together_give_the_flag_alone() -> None:
    """The recipient's decision is hazard-flag-only, and its redaction is the bare flag."""
    decision = decide(facts(CSC, target=HazardFlagTarget("flag-1", CSC.id)))
    assert decision.view is View.HAZARD_FLAG_ONLY
    ctx = context(CSC, resource=decision.resource, view=decision.view, record_kind=None)
    assert set(redact(ctx, {**SOURCE, **HOSTILE_EXTRAS}).document) == FLAG_KEYS


# ------------------------------------------------------------------------ onward disclosure

THIRD_PARTY_TEXT = "the victim's sister told the officer"
MINUTES: dict[str, Any] = {
    "meeting_id": "meet-1",
    "nominal_id": "nom-1",
    "meeting_type": "level_2",
    "held_on": "2026-11-12",
    "chair": "probation-barnet",
    "attendees": ["police-barnet", "housing-barnet"],
    "marking": "OFFICIAL-SENSITIVE",
    "discussion": [{"id": "d1", "text": "Long discussion of the offending history"}],
    "sources": [
        {"id": "s1", "third_party": True, "released": True, "text": THIRD_PARTY_TEXT},
        {"id": "s2", "third_party": False, "text": "Probation OASys"},
    ],
    "conclusions": [
        {"id": "c1", "text": "Risk to children remains high"},
        {"id": "c2", "text": "Contact with the child to be supervised", "source": "s1"},
        {"id": "c3", "text": "Covert tactic agreed", "caveats": ["no-onward-disclosure"]},
    ],
    "actions": [
        {"id": "a1", "owner_agency_id": "probation-barnet", "text": "Licence condition",
         "due_date": "2026-12-01", "review_date": "2027-02-12"},
        {"id": "a2", "owner_agency_id": "police-barnet", "text": "Visit", "source": "s2",
         "due_date": "2026-12-05", "review_date": "2027-02-12"},
    ],
    "risk_management_plan": "Full plan text",
}  # fmt: skip


def _onward() -> Any:
    return context(CSC, resource=Resource.MINUTES, view=View.APPROVED_PARTS, record_kind=None,
                   purpose="child-protection", originator="probation-barnet")  # fmt: skip


def test_approved_view_has_only_approved_conclusions_and_actions() -> None:
    """Conclusions and actions approved, with the meeting reference; nothing else of the minutes."""
    result = approved_view(MINUTES, ("conclusions", "actions"), _onward())
    assert set(result.document) == {"meeting_id", "held_on", "marking", "conclusions", "actions"}
    for name in ("discussion", "sources", "risk_management_plan", "attendees", "chair"):
        assert Withheld(name, "onward-disclosure-approved-parts") in result.withheld


def test_approved_view_removes_third_party_content_even_when_released() -> None:
    """A source released to MAPPA is still removed from an onward disclosure, with its items."""
    result = approved_view(MINUTES, ("conclusions", "actions"), _onward())
    assert THIRD_PARTY_TEXT.encode() not in result.to_json()
    assert [c["id"] for c in result.document["conclusions"]] == ["c1"]
    assert Withheld("conclusions[#2]", "third-party-source") in result.withheld
    assert Withheld("conclusions[#3]", "caveat:no-onward-disclosure") in result.withheld
    assert [a["id"] for a in result.document["actions"]] == ["a1", "a2"]


def test_approved_view_of_one_part_withholds_the_other() -> None:
    """Only the conclusions approved: the actions are withheld."""
    result = approved_view(MINUTES, ("conclusions",), _onward())
    assert "actions" not in result.document
    assert Withheld("actions", "onward-disclosure-approved-parts") in result.withheld


def test_approved_view_of_single_items() -> None:
    """Approving one action shares that action alone."""
    result = approved_view(MINUTES, ("actions/a2",), _onward())
    assert [a["id"] for a in result.document["actions"]] == ["a2"]
    assert "conclusions" not in result.document
    assert Withheld("actions[#1]", "onward-disclosure-approved-parts") in result.withheld


@pytest.mark.parametrize("parts", [("discussion",), ("sources",), ("actions/",), ("*",)])
def test_approved_view_refuses_parts_that_cannot_be_approved(parts: tuple[str, ...]) -> None:
    """Only conclusions and actions can be approved; anything else fails closed."""
    with pytest.raises(RedactionFailed):
        approved_view(MINUTES, parts, _onward())


def test_approved_view_needs_the_approved_parts_context() -> None:
    """approved_view needs the approved-parts view, and redact refuses that view."""
    full = context(CSC, resource=Resource.MINUTES, view=View.FULL, record_kind=None)
    with pytest.raises(RedactionFailed):
        approved_view(MINUTES, ("conclusions",), full)
    with pytest.raises(RedactionFailed):
        redact(_onward(), MINUTES)


def test_approved_view_output_and_withheld_list_serialise() -> None:
    """The result serialises to JSON and its withheld list carries no minutes text."""
    result = approved_view(MINUTES, ("conclusions", "actions"), _onward())
    audit = json.dumps(result.audit_withheld())
    assert "Covert" not in audit and "Full plan" not in audit and THIRD_PARTY_TEXT not in audit
