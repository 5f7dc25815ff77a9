"""Redaction: THREATS.md "Redaction" lines, caveats, allow-lists, and the failure mode."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest

from gateway.domain import AgencyType, RecordKind, Role
from policies import (
    POLICY_VERSION,
    Decision,
    Draft,
    Redacted,
    RedactionContext,
    RedactionFailed,
    Resource,
    View,
    Withheld,
    apply_allow_list,
    redact,
)
from tests.policies.policies_support import agency, context

THIRD_PARTY_TEXT = "Mrs NEIGHBOUR-AT-No-4 saw him with the children at the park"
RECORD: dict[str, Any] = {
    "id": "rec-1",
    "nominal_id": "nom-1",
    "kind": "risk_assessment",
    "owner_agency_id": "police-barnet",
    "officer": "PC-4471",
    "marking": "OFFICIAL-SENSITIVE",
    "caveats": [],
    "created_at": "2026-11-01T10:00:00Z",
    "summary": "High risk of serious harm to children",
    "content": "OASys assessment: risk to children high; to the public medium.",
    "risk": {"children": "high", "public": "medium"},
    "sources": [
        {"id": "s1", "third_party": True, "released": False, "text": THIRD_PARTY_TEXT},
        {"id": "s2", "third_party": False, "text": "PNC conviction history"},
    ],
}
POLICE = agency(AgencyType.POLICE)
PROBATION = agency(AgencyType.PROBATION)
CSC = agency(AgencyType.CHILDRENS_SERVICES)
HOUSING = agency(AgencyType.HOUSING)


def _serialised(result: Redacted) -> bytes:
    return result.to_json() + json.dumps(result.audit_withheld()).encode()


@pytest.mark.parametrize("recipient", [PROBATION, CSC, HOUSING], ids=lambda a: a.agency_type)
def test_third_party_source_is_absent_from_the_output_bytes(recipient: Any) -> None:
    """Anyone but the originator receives no byte of the third-party text, anywhere."""
    result = redact(context(recipient, originator=POLICE.id), RECORD)
    output = _serialised(result)
    assert THIRD_PARTY_TEXT.encode() not in output
    assert b"NEIGHBOUR" not in output
    assert Withheld("sources[#1]", "third-party-source") in result.withheld


def test_originator_sees_its_own_third_party_source() -> None:
    """The agency that supplied the source receives it."""
    result = redact(context(POLICE, originator=POLICE.id), RECORD)
    assert THIRD_PARTY_TEXT.encode() in result.to_json()


def test_source_released_by_its_originator_is_shared() -> None:
    """A third-party source the originator released reaches other recipients."""
    released = copy.deepcopy(RECORD)
    released["sources"][0]["released"] = True
    result = redact(context(PROBATION, originator=POLICE.id), released)
    assert THIRD_PARTY_TEXT.encode() in result.to_json()


def test_source_without_a_third_party_flag_is_treated_as_third_party() -> None:
    """Fail safe: a source that does not say it is not third party is withheld."""
    unflagged = copy.deepcopy(RECORD)
    del unflagged["sources"][0]["third_party"]
    result = redact(context(PROBATION, originator=POLICE.id), unflagged)
    assert THIRD_PARTY_TEXT.encode() not in result.to_json()


def test_source_with_its_own_originator_is_judged_by_it() -> None:
    """A source brought by another agency is not released to the document's owner."""
    doc = copy.deepcopy(RECORD)
    doc["sources"][0]["originator_agency_id"] = HOUSING.id
    assert THIRD_PARTY_TEXT.encode() not in redact(context(POLICE), doc).to_json()
    housing_ctx = context(HOUSING, resource=Resource.MINUTES, record_kind=None)
    minutes = {"meeting_id": "m", "sources": doc["sources"]}
    assert THIRD_PARTY_TEXT.encode() in redact(housing_ctx, minutes).to_json()


@pytest.mark.parametrize(
    ("author", "source_originator", "shared"),
    [
        (POLICE.id, HOUSING.id, False),  # the author releases housing's source: not counted
        (None, HOUSING.id, False),  # the author is not known: fail closed
        (POLICE.id, POLICE.id, True),  # the author names itself: its own release
        (POLICE.id, None, True),  # no originator of its own: the author's
    ],
    ids=["another-agencys", "author-unknown", "author-named", "no-originator"],
)
@pytest.mark.parametrize("recipient", [PROBATION, CSC], ids=lambda a: a.agency_type)
def test_only_the_originator_releases_a_third_party_source(
    author: str | None, source_originator: str | None, shared: bool, recipient: Any
) -> None:
    """A source marked released by a document's author counts as released only when the
    author is its originator; otherwise it reaches its originator alone."""
    minutes = {
        "meeting_id": "meet-1",
        "sources": [{**RECORD["sources"][0], "released": True}],
        "discussion": [{"id": "d1", "text": "Neighbour's account", "source": "s1"}],
    }
    if source_originator is not None:
        minutes["sources"][0]["originator_agency_id"] = source_originator
    ctx = context(recipient, resource=Resource.MINUTES, originator=author, record_kind=None)
    result = redact(ctx, minutes)
    assert (THIRD_PARTY_TEXT.encode() in result.to_json()) is shared
    assert ("discussion" in result.document and bool(result.document["discussion"])) is shared
    if source_originator == HOUSING.id:
        originator_ctx = replace(ctx, recipient_agency_id=HOUSING.id)
        assert THIRD_PARTY_TEXT.encode() in redact(originator_ctx, minutes).to_json()


def test_items_citing_a_withheld_source_are_withheld_with_it() -> None:
    """Entries citing a withheld (or unknown) source are withheld with it."""
    minutes = {
        "meeting_id": "meet-1",
        "sources": RECORD["sources"],
        "discussion": [
            {"id": "d1", "text": "Neighbour's account", "source": "s1"},
            {"id": "d2", "text": "Conviction history", "source": "s2"},
            {"id": "d3", "text": "Uncited remark"},
            {"id": "d4", "text": "Cites a source not in the minutes", "sources": ["s9"]},
        ],
    }
    ctx = context(HOUSING, resource=Resource.MINUTES, record_kind=None)
    result = redact(ctx, minutes)
    assert [d["id"] for d in result.document["discussion"]] == ["d2", "d3"]
    assert {w.field for w in result.withheld} >= {"discussion[#1]", "discussion[#4]"}


def test_field_no_rule_classifies_is_withheld() -> None:
    """A field unknown to the classification never leaves, even for the Responsible Authority."""
    doc = {**RECORD, "victim_address": "12 Acacia Avenue"}
    result = redact(context(POLICE), doc)
    assert "victim_address" not in result.document
    assert Withheld("victim_address", "unclassified-field") in result.withheld
    assert b"Acacia" not in _serialised(result)


@pytest.mark.parametrize(
    ("recipient", "kind", "present", "absent"),
    [
        # RA: the whole record, the supplying officer included.
        (POLICE, RecordKind.RISK_ASSESSMENT, {"officer", "content", "sources"}, set()),
        # Children's services: content and sources, not the officer.
        (CSC, RecordKind.RISK_ASSESSMENT, {"content", "risk"}, {"officer"}),
        # Children's services: of intelligence, the summary only.
        (CSC, RecordKind.INTELLIGENCE, {"summary"}, {"content", "sources", "officer"}),
        # Housing: the risk and summary, not the narrative or sources.
        (HOUSING, RecordKind.RISK_ASSESSMENT, {"summary", "risk"}, {"content", "sources"}),
        # Jobcentre Plus: the summary and the risk only.
        (agency(AgencyType.JOBCENTRE_PLUS), RecordKind.CASE_NOTE, {"summary", "risk"},
         {"content", "sources", "caveats"}),
    ],
)  # fmt: skip
def test_recipient_receives_only_its_allow_list(
    recipient: Any, kind: RecordKind, present: set[str], absent: set[str]
) -> None:
    """Each recipient type gets its own allow-list; the rest is withheld under that list's rule."""
    result = redact(context(recipient, record_kind=kind), {**RECORD, "kind": str(kind)})
    assert present <= result.document.keys()
    assert not absent & result.document.keys()
    for name in absent:
        assert any(w.field == name and w.rule.startswith("allow-list:") for w in result.withheld)


def test_recipient_without_an_allow_list_receives_nothing() -> None:
    """An agency type with no allow-list for the document gets an empty document."""
    rec = agency(AgencyType.OTHER, Role.ASSOCIATE)
    result = redact(context(rec, resource=Resource.LEVEL_1_LIST, view=View.MONTHLY_LIST_MINIMAL),
                    {"id": "nom-1", "names": ["A B"]})  # fmt: skip
    assert result.document == {}
    assert {w.rule for w in result.withheld} == {"no-allow-list"}


def test_level_1_list_entry_carries_minimal_fields() -> None:
    """The monthly list gives identity, category, level and lead agency, never address or risk."""
    nominal = {
        "id": "nom-1", "names": ["John Smith"], "date_of_birth": "1970-01-01", "category": 1,
        "level": 1, "lead_agency_id": "probation-barnet", "area": "barnet",
        "address": "1 High St", "risk": {"children": "high"}, "pnc_id": "99/1234A",
    }  # fmt: skip
    ctx = context(HOUSING, resource=Resource.LEVEL_1_LIST, view=View.MONTHLY_LIST_MINIMAL)
    result = redact(ctx, nominal)
    assert set(result.document) == {
        "id", "names", "date_of_birth", "category", "level", "lead_agency_id", "area"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("caveat", "recipient", "purpose", "withheld"),
    [
        # originator-only: withheld from probation, shown to the supplying police.
        ("originator-only", PROBATION, "risk-management", True),
        ("originator-only", POLICE, "risk-management", False),
        # responsible-authority-only: withheld from children's services, shown to probation.
        ("responsible-authority-only", CSC, "risk-management", True),
        ("responsible-authority-only", PROBATION, "risk-management", False),
        # not-for-child-protection-conference: withheld when the purpose is child protection.
        ("not-for-child-protection-conference", CSC, "child-protection", True),
        ("not-for-child-protection-conference", CSC, "safeguarding", False),
        # A caveat nobody defined: withheld (it cannot be honoured, so nothing goes).
        ("eyes-only-of-the-chief", POLICE, "risk-management", True),
    ],
)
def test_document_caveats_are_honoured(
    caveat: str, recipient: Any, purpose: str, withheld: bool
) -> None:
    """A caveat withholds the whole document from those it excludes, field by field."""
    doc = {**RECORD, "caveats": [caveat]}
    result = redact(context(recipient, purpose=purpose, originator=POLICE.id), doc)
    if withheld:
        assert result.document == {}
        assert {w.field for w in result.withheld} >= set(RECORD) - {"sources"}
        assert all(
            w.rule.startswith("caveat")
            for w in result.withheld
            if not w.field.startswith("sources[")
        )
    else:
        assert result.document["summary"] == RECORD["summary"]


def test_item_caveat_withholds_only_that_item() -> None:
    """A caveat on one entry of the minutes withholds that entry and keeps the rest."""
    minutes = {
        "meeting_id": "meet-1",
        "discussion": [
            {"id": "d1", "text": "Covert deployment", "caveats": ["responsible-authority-only"]},
            {"id": "d2", "text": "Housing options"},
        ],
    }
    ctx = context(HOUSING, resource=Resource.MINUTES, record_kind=None)
    result = redact(ctx, minutes)
    assert [d["id"] for d in result.document["discussion"]] == ["d2"]
    assert Withheld("discussion[#1]", "caveat:responsible-authority-only") in result.withheld
    assert b"Covert" not in _serialised(result)


def test_withheld_list_has_names_and_rules_never_values() -> None:
    """The audit's withheld list carries field names and rules; no withheld value appears."""
    doc = {**RECORD, "mystery": "SECRET-VALUE-1"}
    result = redact(context(HOUSING), doc)
    audit = json.dumps(result.audit_withheld())
    for entry in result.audit_withheld():
        assert set(entry) == {"field", "rule"}
    for value in ("SECRET-VALUE-1", "PC-4471", "OASys", "NEIGHBOUR"):
        assert value not in audit
    assert {"officer", "content", "mystery", "sources[#1]"} <= {w.field for w in result.withheld}


@pytest.mark.parametrize("recipient", [HOUSING, CSC], ids=lambda a: a.agency_type)
def test_withheld_entries_are_named_by_place_in_the_senders_document(recipient: Any) -> None:
    """A source's or item's id is the sender's text (here naming the informant): the withheld
    list names each entry by its place in the document as sent, counted from 1, also after an
    earlier step shortened the list, never by its id."""
    informant = "Oddington-Vance.43-Quillfeather"
    minutes = {
        "meeting_id": "meet-1",
        "sources": [
            {"id": "own", "third_party": False, "text": "Offender manager"},
            {"id": informant, "third_party": True, "text": THIRD_PARTY_TEXT},
        ],
        "discussion": [
            {"id": "Oddington-said", "text": "Neighbour's account", "source": informant},
            {"id": "Kestrel-covert", "text": "Covert", "caveats": ["responsible-authority-only"]},
            {"id": "d3", "text": "Housing options", "source": "own"},
        ],
    }
    ctx = context(recipient, resource=Resource.MINUTES, record_kind=None)
    result = redact(ctx, minutes)
    assert {
        Withheld("sources[#2]", "third-party-source"),
        Withheld("discussion[#1]", "third-party-source"),
        Withheld("discussion[#2]", "caveat:responsible-authority-only"),
    } <= set(result.withheld)
    audit = json.dumps(result.audit_withheld())
    for sender_text in ("Oddington", "Kestrel", "Quillfeather"):
        assert sender_text not in audit


def _boom(context: RedactionContext, draft: Draft) -> Draft:
    raise KeyError("SECRET-VALUE-2")


def _leaky(context: RedactionContext, draft: Draft) -> Draft:
    return "not a draft"  # type: ignore[return-value]


@pytest.mark.parametrize("bad_step", [_boom, _leaky])
def test_failing_step_fails_the_whole_redaction_with_no_document(bad_step: Any) -> None:
    """If any step raises (or misbehaves), RedactionFailed is raised and no document exists."""
    result = None
    with pytest.raises(RedactionFailed) as caught:
        result = redact(context(HOUSING), RECORD, [apply_allow_list, bad_step])
    assert result is None
    assert caught.value.code == "redaction_failed"
    assert caught.value.rule == f"redaction-step:{bad_step.__name__}"
    assert caught.value.policy_version == POLICY_VERSION
    assert "SECRET-VALUE-2" not in repr(caught.value.audit_fields())


@pytest.mark.parametrize(
    "document",
    [
        # sources that are not a list.
        {**RECORD, "sources": "all of them"},
        # a source that is not an object.
        {**RECORD, "sources": ["s1"]},
        # a third_party flag that is not a boolean.
        {**RECORD, "sources": [{"id": "s1", "third_party": "no"}]},
        # caveats that are not codes.
        {**RECORD, "caveats": [{"code": "x"}]},
        # data that is not JSON.
        {**RECORD, "created_at": object()},
        # a number that is not finite.
        {**RECORD, "risk": float("nan")},
    ],
)
def test_malformed_document_fails_closed(document: dict[str, Any]) -> None:
    """A document the chain cannot read safely raises RedactionFailed, never passes through."""
    with pytest.raises(RedactionFailed):
        redact(context(HOUSING), document)


def test_redacted_output_is_read_only_and_leaves_the_input_alone() -> None:
    """The result cannot be edited, and the caller's document is not modified."""
    doc = copy.deepcopy(RECORD)
    result = redact(context(HOUSING), doc)
    assert doc == RECORD
    with pytest.raises(TypeError):
        result.document["summary"] = "x"  # type: ignore[index]
    assert result.policy_version == POLICY_VERSION


def test_context_from_a_need_to_know_decision() -> None:
    """The redaction context follows the decision's resource and view."""
    decision = Decision("involved-meeting", View.FULL, Resource.RECORD, POLICY_VERSION, "why")
    ctx = RedactionContext.for_decision(
        decision, HOUSING, "risk-management", originator_agency_id=POLICE.id,
        record_kind=RecordKind.TENANCY,
    )  # fmt: skip
    assert (ctx.resource, ctx.view, ctx.recipient_agency_type) == (
        Resource.RECORD, View.FULL, AgencyType.HOUSING,
    )  # fmt: skip


def test_context_refuses_a_view_the_resource_does_not_have() -> None:
    """A nominal has no hazard-flag view; a record needs its kind."""
    with pytest.raises(ValueError):
        context(HOUSING, resource=Resource.NOMINAL, view=View.HAZARD_FLAG_ONLY, record_kind=None)
    with pytest.raises(ValueError):
        context(HOUSING, record_kind=None)


def test_empty_chain_is_refused() -> None:
    """A chain with no steps would redact nothing: it is refused, not run."""
    with pytest.raises(RedactionFailed):
        redact(context(HOUSING), RECORD, [])
