"""Prometheus metrics: route templates, refusals by code, audit lag, no personal data."""

from __future__ import annotations

import asyncio
import re

import httpx
from fastapi import FastAPI
from sqlalchemy import text as sql

from gateway.audit.sequencer import sequence
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.state import GatewayState


def _value(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (("{" + labels + "}") if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    assert match, f"{name}{{{labels}}} not in metrics"
    return float(match.group(1))


async def test_requests_are_counted_by_route_template_without_ids_or_query(
    client: httpx.AsyncClient,
) -> None:
    """A path with an id and a query with a nominal reference leave neither in the metrics."""
    await client.get("/console/entries/0b7c2d1e-secret-entry", follow_redirects=False)
    await client.get("/v1/audit/entries", params={"nominal": "N-SECRET-42"})
    text = (await client.get("/metrics")).text
    assert 'route="/console/entries/{entry_id}"' in text
    assert "0b7c2d1e" not in text and "N-SECRET-42" not in text
    labels = 'method="GET",route="/v1/audit/entries",status="401"'
    assert _value(text, "mappa_gateway_requests_total", labels) == 1


async def test_a_made_up_method_adds_no_series_and_no_caller_text(
    client: httpx.AsyncClient,
) -> None:
    """The HTTP parser takes any token as a method: each would have been a new time series for
    the life of the process, holding whatever the caller wrote (here an identifier). They all
    count as OTHER, and the request's log line says OTHER too."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        for n in range(20):
            await client.request(f"PNC-1999_{n:07d}Q", "/v1/audit/entries")
    text = (await client.get("/metrics")).text
    assert "PNC-1999" not in text
    methods = set(re.findall(r'mappa_gateway_requests_total\{method="([^"]*)"', text))
    assert methods <= {"GET", "OTHER"}
    assert 'method="OTHER"' in text
    assert "PNC-1999" not in repr(logs)
    assert {e.get("method") for e in logs if e.get("event") == "request"} == {"OTHER"}


async def test_refusals_are_counted_by_problem_code(client: httpx.AsyncClient) -> None:
    """Each problem+json response counts under its stable code, refusals apart from failures."""
    await client.get("/v1/audit/entries")  # no credentials: invalid_token
    await client.get("/v1/audit/proof/consistency", params={"first": "x", "second": "1"})
    await client.get("/no/such/route")
    text = (await client.get("/metrics")).text
    assert _value(text, "mappa_gateway_refusals_total", 'code="invalid_token"') == 1
    assert _value(text, "mappa_gateway_refusals_total", 'code="invalid_parameter"') == 1
    assert _value(text, "mappa_gateway_refusals_total", 'code="not_found"') == 1
    assert 'route="<unmatched>"' in text


async def test_audit_lag_reports_unsequenced_entries_until_the_sequencer_runs(
    client: httpx.AsyncClient, app: object
) -> None:
    """Three unsequenced entries show as lag; after sequencing the lag is zero."""
    state: GatewayState = app.state.gateway  # type: ignore[attr-defined]
    assert state.audit is not None
    await state.audit.stop()  # the test sequences by hand
    for i in range(3):
        async with state.db.write() as session:
            record(
                session,
                AuditEvent(
                    operation=Operation.CONSULTATION,
                    outcome=Outcome.ALLOWED,
                    request_id=f"r{i}",
                ),
            )
    text = (await client.get("/metrics")).text
    assert _value(text, "mappa_gateway_audit_unsequenced_entries") == 3
    assert _value(text, "mappa_gateway_audit_oldest_unsequenced_age_seconds") >= 0
    assert _value(text, "mappa_gateway_outbox_depth") == 0
    assert state.audit is not None
    await sequence(state.db, state.audit.signer, state.audit.origin)
    text = (await client.get("/metrics")).text
    assert _value(text, "mappa_gateway_audit_unsequenced_entries") == 0
    assert _value(text, "mappa_gateway_audit_tree_size") == 3


async def test_an_integrity_refusal_of_the_background_sequencer_shows_in_the_metrics(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The background sequencer finds the latest checkpoint row's columns rewritten: it signs
    nothing, the integrity alert and refusal count rise, and the audit lag keeps growing."""
    state: GatewayState = app.state.gateway
    assert state.audit is not None
    await state.audit.stop()
    await sequence(state.db, state.audit.signer, state.audit.origin)  # a first checkpoint
    text = (await client.get("/metrics")).text
    assert _value(text, "mappa_gateway_audit_integrity_alert") == 0
    async with state.db.write() as session:
        await session.execute(sql("UPDATE audit_checkpoints SET root_hash = :h"), {"h": "0" * 64})
        record(session, AuditEvent(operation=Operation.CONSULTATION, outcome=Outcome.ALLOWED))
    state.audit.start(state.db, interval=0.02, batch=100)
    try:
        for _ in range(500):
            if state.audit.health.integrity_refusals >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        await state.audit.stop()
    text = (await client.get("/metrics")).text
    assert _value(text, "mappa_gateway_audit_integrity_alert") == 1
    assert _value(text, "mappa_gateway_audit_integrity_refusals") >= 2
    assert _value(text, "mappa_gateway_audit_unsequenced_entries") >= 1


async def test_metrics_answer_the_scrapers_addresses_only(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """From an address outside MAPPA_METRICS_ALLOWED, /metrics is the 404 of a path that does
    not exist (with no figure in it); a forwarded header does not make a stranger a scraper."""
    state: GatewayState = app.state.gateway
    state.settings = state.settings.model_copy(update={"metrics_allowed": ("10.9.8.0/24",)})
    missing = await client.get("/no-such-path")
    refused = await client.get("/metrics", headers={"X-Forwarded-For": "10.9.8.7"})
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["code"] == missing.json()["code"] == "not_found"
    assert "mappa_gateway" not in refused.text
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 4000))
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as scraper:
        assert "mappa_gateway_requests_total" in (await scraper.get("/metrics")).text
