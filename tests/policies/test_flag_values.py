"""The hazard flag's reference and the flag's and warning marker's contact: shapes, not text.

The builders refuse (RedactionFailed: nothing is sent) any reference that is not letter codes
and a number and any contact that is not a role with a UK telephone number and/or a public-sector
email address; a good contact comes out holding only the fields it has. One row per case."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.domain import AgencyType, Role
from policies import RedactionFailed, Resource, View, build_warning_marker, redact
from policies.flag_values import contact_of, contact_problem, reference_problem
from tests.policies.policies_support import agency, context

CSC = agency(AgencyType.CHILDRENS_SERVICES)
HOUSING = agency(AgencyType.HOUSING, Role.DUTY_TO_COOPERATE)
PHONE = {"role": "mappa_unit", "telephone": "020 8359 0000"}
FLAG = {"child_or_family_ref": "ICS-FAM-55821", "relationship": "father", "contact": PHONE}
MARKER = {"uprn": "200004512345", "marker": "PWM", "contact": PHONE, "review_date": "2027-02-23"}

#: Contacts that could carry details, or that are not contacts at all.
HOSTILE_CONTACTS: list[Any] = [
    # free text, as the contract took it before: an offence and a third party
    "DC Hale: convicted 2019 rape of stepdaughter; neighbour Mrs Oddington-Vance reports",
    "Barnet MAPPA unit, 020 8000 0000",
    # a field beyond role, telephone and email: a name, a note
    {**PHONE, "name": "DC Hale"},
    {**PHONE, "note": "victim is his stepdaughter"},
    # a role outside the vocabulary, or none
    {"role": "DC Hale (rape squad)", "telephone": "020 8359 0000"},
    {"telephone": "020 8359 0000"},
    {"role": ["mappa_unit"], "telephone": "020 8359 0000"},
    # no way to reach anyone
    {"role": "mappa_unit"},
    # a telephone number carrying words, lines, or not UK
    {"role": "mappa_unit", "telephone": "020 8359 0000 re rape conviction"},
    {"role": "mappa_unit", "telephone": "020 8359\n0000"},
    {"role": "mappa_unit", "telephone": "020  8359 0000"},
    {"role": "mappa_unit", "telephone": "+1 212 555 0100"},
    {"role": "mappa_unit", "telephone": "0901 234 5678"},  # premium rate
    {"role": "mappa_unit", "telephone": "020 8359 0000 0000"},  # too many digits
    {"role": "mappa_unit", "telephone": "020 835"},  # too few
    # Unicode digits that look like ASCII ones, a zero-width space, a right-to-left override
    {"role": "mappa_unit", "telephone": "\uff10\uff12\uff10 8359 0000"},
    {"role": "mappa_unit", "telephone": "\u0660\u0662\u0660 8359 0000"},
    {"role": "mappa_unit", "telephone": "020\u200b8359 0000"},
    {"role": "mappa_unit", "telephone": "020 8359 0000\u202e"},
    # an email address off the public sector, in capitals, with a sentence or a line
    {"role": "mappa_unit", "email": "dc.hale@gmail.com"},
    {"role": "mappa_unit", "email": "mappa@barnet.police.uk.evil.example"},
    {"role": "mappa_unit", "email": "mappa@notpolice.uk"},
    {"role": "mappa_unit", "email": "MAPPA.Unit@met.police.uk"},
    {"role": "mappa_unit", "email": "convicted of rape@met.police.uk"},
    {"role": "mappa_unit", "email": "mappa@met.police.uk\nOffence: rape"},
    {"role": "mappa_unit", "email": "m\u0430ppa@met.police.uk"},  # a Cyrillic a
    {"role": "mappa_unit", "email": "mappa..unit@met.police.uk"},
    {"role": "mappa_unit", "email": ("x" * 33) + "@met.police.uk"},  # mailbox too long
    {"role": "mappa_unit", "email": "a@b@met.police.uk"},
    # a good telephone number does not excuse a bad address
    {**PHONE, "email": "dc.hale@gmail.com"},
    # not an object
    ["mappa_unit", "020 8359 0000"],
    None,
]

#: References that could carry details, or that are not references.
HOSTILE_REFERENCES: list[Any] = [
    "ICS-55821.RAPE-CONVICTION-2019.INFORMANT-MRS-ODDINGTON-VANCE",  # the review's probe
    "the Smith children at 4 Elm Road",
    "Oddington-Vance",
    "ICS-55821\nRAPE",
    "ICS 55821",
    "ics-55821",
    "ICS-" + "1" * 13,
    "SMITH-55821",  # a letter code longer than four: a name
    "ICS-FAM-KID-55821",  # three letter codes
    "ICS-55821-RAPE",  # a suffix longer than three
    "\uff29\uff23\uff33-55821",  # full-width letters
    "\u0406CS-55821",  # a Cyrillic I
    "ICS-\u200b55821",
    "ICS-55821\u202e",
    "",
    55821,
]

GOOD_CONTACTS: list[dict[str, str]] = [
    PHONE,
    {"role": "public_protection_unit", "telephone": "+44 20 8359 0000"},
    {"role": "offender_manager", "telephone": "07700 900123"},
    {"role": "duty_desk", "telephone": "0800 123 4567"},
    {"role": "mappa_coordinator", "email": "mappa.coordinator@met.police.uk"},
    {"role": "offender_manager", "email": "om-barnet@justice.gov.uk", "telephone": "0300 123 4567"},
    {"role": "mappa_unit", "email": "mappa@barnet.cjsm.net"},
]
GOOD_REFERENCES = ["ICS-FAM-55821", "ICS/778812", "FAM-20931", "CF-1", "123456", "LCS-123456-A1"]


def _flag_context() -> Any:
    return context(CSC, resource=Resource.HAZARD_FLAG, view=View.HAZARD_FLAG_ONLY, record_kind=None)


@pytest.mark.parametrize("value", HOSTILE_CONTACTS)
def test_a_hostile_contact_is_not_a_contact(value: Any) -> None:
    """Refused, and the reason never repeats the value."""
    why = contact_problem(value)
    assert why is not None
    with pytest.raises(ValueError) as caught:
        contact_of(value)
    for text in value.values() if isinstance(value, dict) else [value]:
        if isinstance(text, str) and len(text) > 3:
            assert text not in why and text not in str(caught.value)


@pytest.mark.parametrize("value", [v for v in HOSTILE_CONTACTS if v is not None])
def test_a_hostile_contact_never_leaves_in_a_flag_or_a_marker(value: Any) -> None:
    """A stored contact without the contact's shape (one stored before the shape was required:
    new ones are refused at the contract) is withheld: the flag and the marker go without it,
    whatever else the source holds, and nothing of it is in what is built."""
    flag = redact(_flag_context(), {**FLAG, "contact": value})
    assert "contact" not in flag.document
    marker = build_warning_marker(HOUSING, {**MARKER, "contact": value})
    assert "contact" not in marker.document
    for built in (json.dumps(flag.to_dict()), json.dumps(dict(marker.document))):
        for text in value.values() if isinstance(value, dict) else [value]:
            if isinstance(text, str) and len(text) > 3:
                assert text not in built


def test_no_flag_and_no_marker_is_built_without_a_contact() -> None:
    """The contact is required: a source without one builds nothing (nothing is sent)."""
    with pytest.raises(RedactionFailed):
        redact(_flag_context(), {**FLAG, "contact": None})
    with pytest.raises(RedactionFailed):
        build_warning_marker(HOUSING, {**MARKER, "contact": None})


@pytest.mark.parametrize("value", HOSTILE_REFERENCES)
def test_no_flag_is_built_with_a_hostile_reference(value: Any) -> None:
    assert reference_problem(value) is not None
    with pytest.raises(RedactionFailed):
        redact(_flag_context(), {**FLAG, "child_or_family_ref": value})


@pytest.mark.parametrize("value", GOOD_CONTACTS)
def test_a_good_contact_is_built_as_given_and_no_more(value: dict[str, str]) -> None:
    """The built contact holds exactly the fields sent; an absent one is not added as null."""
    flag = redact(_flag_context(), {**FLAG, "contact": {**value, "email": value.get("email")}})
    assert flag.to_dict()["contact"] == value
    marker = build_warning_marker(HOUSING, {**MARKER, "contact": value})
    assert dict(marker.document["contact"]) == value


@pytest.mark.parametrize("value", GOOD_REFERENCES)
def test_a_good_reference_is_built_as_given(value: str) -> None:
    assert (
        redact(_flag_context(), {**FLAG, "child_or_family_ref": value}).to_dict()[
            "child_or_family_ref"
        ]
        == value
    )
