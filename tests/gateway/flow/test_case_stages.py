"""The flow's case stages on their own: lawful basis, need-to-know facts, redaction, idempotency."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from starlette.requests import Request

import policies
from gateway import errors
from gateway.domain import AgencyType, Category, Level, NominalStatus, RecordKind, Role
from gateway.flow import deliver, idempotency, lawful_basis, need_to_know, redact
from gateway.flow.authenticate import Caller
from gateway.store.models import Agency, ContributorDecision, Nominal

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)


def _caller(
    role: str = "duty_to_cooperate", agency_type: str = "housing", **context: str
) -> Caller:
    return Caller(
        client_id="housing-1",
        agency_id="housing-1",
        agency_type=agency_type,
        role=role,
        area="barnet",
        scopes=("case:read",),
        officer=context.get("officer", "H-1"),
        legal_basis=context.get("basis", "CJA2003-s325-4"),
        purpose=context.get("purpose", "risk-management"),
        request_id="r-1",
        token_jti="j",
        jkt="k",
    )


def _nominal(**changes: Any) -> Nominal:
    values: dict[str, Any] = {
        "id": "nom-1",
        "area": "barnet",
        "category": 2,
        "level": 2,
        "lead_agency_id": "police-1",
        "status": NominalStatus.ACTIVE,
        "level_changed_at": None,
    }
    values.update(changes)
    return Nominal(**values)


def test_lawful_basis_refusal_carries_the_rule_for_the_audit_only() -> None:
    """A refused basis is the opaque 403; the rule and version are in diagnostics."""
    with pytest.raises(errors.LawfulBasisRefused) as caught:
        lawful_basis.check(
            _caller(basis="CJA2003-s327A", purpose="public-disclosure"), concerns_nominal=True
        )
    assert caught.value.diagnostics["rule"] == "role-allowed-for-basis"
    assert caught.value.diagnostics["policy_version"] == policies.POLICY_VERSION
    assert caught.value.detail is None


def test_nominal_condition_is_held_again_once_the_nominal_is_known() -> None:
    """s.325(4A)(c) passes the pre-read check but not the nominal's, unless the RA recorded it."""
    caller = _caller(
        role="other_contributor",
        agency_type="other",
        basis="CJA2003-s325-4A-c",
        purpose="risk-assessment",
    )
    lawful_basis.check(caller, concerns_nominal=True)
    with pytest.raises(errors.LawfulBasisRefused):
        lawful_basis.check(caller, concerns_nominal=False)
    row = ContributorDecision(
        id="cd-1",
        nominal_id="nom-1",
        agency_id="housing-1",
        recorded_by_agency_id="police-1",
        officer="DI-1",
        purposes=["risk-assessment"],
        ends_on=NOW.date(),
        ends_at=NOW + dt.timedelta(hours=12),
        reason_sealed=b"",
        decided_at=NOW,
        revoked_at=None,
    )
    fact = lawful_basis.contributor_fact(row)
    assert fact.stands_at(NOW) and not fact.stands_at(NOW + dt.timedelta(hours=12))
    recorded = policies.RecordedContributions("housing-1", "nom-1", (fact,), NOW)
    decision = policies.check(
        caller.legal_basis, caller.purpose, Role.OTHER_CONTRIBUTOR, AgencyType.OTHER, recorded
    )
    assert decision.contributor_decision == "cd-1"
    row.revoked_at = NOW
    revoked = policies.RecordedContributions(
        "housing-1", "nom-1", (lawful_basis.contributor_fact(row),), NOW
    )
    with pytest.raises(policies.BasisNotRecordedForNominal) as caught:
        policies.check(
            caller.legal_basis, caller.purpose, Role.OTHER_CONTRIBUTOR, AgencyType.OTHER, revoked
        )
    assert caught.value.rule == "condition:nominal-recorded-other-contributor"


def test_facts_come_from_clear_columns() -> None:
    facts = need_to_know.nominal_facts(_nominal(category=4, level=3))
    assert facts.category is Category.TERRORISM and facts.level is Level.SENIOR_MULTI_AGENCY
    agency = need_to_know.agency_facts(
        Agency(
            id="cs-1",
            agency_type=AgencyType.CHILDRENS_SERVICES,
            role=Role.DUTY_TO_COOPERATE,
            area="barnet",
        )
    )
    assert agency.agency_type is AgencyType.CHILDRENS_SERVICES
    assert need_to_know.caller_agency(_caller()).role is Role.DUTY_TO_COOPERATE


def test_not_found_is_the_same_error_as_a_refusal() -> None:
    missing = need_to_know.not_found("nominal")
    with pytest.raises(errors.NotFound) as refused:
        need_to_know.decide_with(
            need_to_know.caller_agency(_caller()),
            _nominal(),
            policies.NominalTarget(),
            NOW,
            policies.Involvements(),
        )
    assert type(missing) is type(refused.value)
    assert (missing.code, missing.title, missing.detail) == (
        refused.value.code,
        refused.value.title,
        refused.value.detail,
    )
    assert refused.value.diagnostics["reason_code"] == "no_need_to_know"
    assert missing.diagnostics["rule"] == "resource-exists"


def _decision(resource: policies.Resource = policies.Resource.RECORD) -> policies.Decision:
    return policies.Decision(
        rule="record-owner",
        view=policies.View.FULL,
        resource=resource,
        policy_version=policies.POLICY_VERSION,
        why="test",
    )


def test_a_field_no_rule_classifies_is_withheld_never_shown() -> None:
    """An unclassified field is withheld with its rule; the view schema never sees it."""
    document = {"id": "r1", "summary": "ok", "favourite_colour": "blue"}
    released = redact.redact(
        _decision(),
        need_to_know.caller_agency(_caller(role="responsible_authority", agency_type="police")),
        document,
        purpose="risk-management",
        originator_agency_id="police-1",
        record_kind=RecordKind.CASE_NOTE,
    )
    assert "favourite_colour" not in released.document
    assert ("favourite_colour", "unclassified-field") in {
        (w.field, w.rule) for w in released.withheld
    }


def test_a_document_the_view_does_not_define_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a bug let a field through the chain, the view schema refuses it: 503, nothing sent."""

    def leaky(context: Any, document: Any, steps: Any = None) -> policies.Redacted:
        return policies.Redacted({"id": "r1", "leak": "x"}, (), policies.POLICY_VERSION)

    monkeypatch.setattr(policies, "redact", leaky)
    with pytest.raises(errors.RedactionFailed) as caught:
        redact.redact(
            _decision(),
            need_to_know.caller_agency(_caller(role="responsible_authority", agency_type="police")),
            {"id": "r1"},
            purpose="risk-management",
            record_kind=RecordKind.CASE_NOTE,
        )
    assert caught.value.diagnostics["rule"] == "view-schema"


def test_hazard_flag_is_built_from_its_allow_list_whatever_the_source_holds() -> None:
    cs = need_to_know.agency_facts(
        Agency(
            id="cs-1",
            agency_type=AgencyType.CHILDRENS_SERVICES,
            role=Role.DUTY_TO_COOPERATE,
            area="barnet",
        )
    )
    source = {
        "child_or_family_ref": "ICS-1",
        "relationship": "father",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
        "offence": "rape of a child under 13",
        "intelligence": "seen at school gates",
        "sources": [{"id": "s1", "description": "neighbour"}],
    }
    built = redact.hazard_flag(cs, source, purpose="safeguarding")
    assert set(built.document) == {
        "child_or_family_ref",
        "flag",
        "relationship",
        "statement",
        "contact",
    }
    assert {w.field for w in built.withheld} == {"offence", "intelligence", "sources"}
    housing = need_to_know.caller_agency(_caller())
    with pytest.raises(errors.RedactionFailed):
        redact.hazard_flag(housing, source, purpose="safeguarding")


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/x", "headers": headers})


def test_idempotency_key_and_digest() -> None:
    assert idempotency.key_of(_request([(b"idempotency-key", b"abc-1")])) == "abc-1"
    for headers in ([], [(b"idempotency-key", b"a b")], [(b"idempotency-key", b"a")] * 2):
        with pytest.raises(errors.IdempotencyKeyMissing):
            idempotency.key_of(_request(headers))
    one = idempotency.request_digest("post", "/v1/x", {"b": 1, "a": [1, 2]})
    assert one == idempotency.request_digest("POST", "/v1/x", {"a": [1, 2], "b": 1})
    assert one != idempotency.request_digest("POST", "/v1/y", {"a": [1, 2], "b": 1})


def test_jose_response_is_sealed_and_not_cached() -> None:
    response = deliver.jose_response(deliver.Sealed("a.b.c.d.e", "sha256:x"), 201)
    assert response.status_code == 201
    assert response.media_type == "application/jose"
    assert response.headers["cache-control"] == "no-store"
