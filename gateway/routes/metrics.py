"""``GET /metrics``: the Prometheus text exposition of this process (no personal data), to the
scraper's addresses only (``MAPPA_METRICS_ALLOWED``, loopback by default; the socket's peer, never
a forwarded header): anyone else gets the 404 of a path that does not exist, so traffic, refusal
and outbox figures are not published to whoever can reach the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.audit.log import latest_checkpoint, unsequenced_lag
from gateway.errors import NotFound, StoreUnavailable
from gateway.oauth import mtls
from gateway.state import GatewayState

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics: requests, refusals, audit lag, outbox")
async def metrics(request: Request) -> Response:
    state: GatewayState = request.app.state.gateway
    peer = request.client.host if request.client is not None else None
    if peer not in mtls.trusted_proxies(state.settings.metrics_allowed):
        raise NotFound(diagnostics={"reason_code": "not_found", "why": "metrics: not a scraper"})
    gauges = state.metrics
    if gauges is None:
        return Response(b"", media_type=CONTENT_TYPE_LATEST)
    try:
        async with state.db.read() as session:
            now = state.clock()
            count, age = await unsequenced_lag(session, now)
            latest = await latest_checkpoint(session)
            await gauges.refresh_outbox(session, now)
        gauges.audit_unsequenced.set(count)
        gauges.audit_oldest_age.set(age)
        gauges.audit_tree_size.set(latest.tree_size if latest is not None else 0)
    except StoreUnavailable:
        pass  # the request counters still answer; the audit gauges keep their last values
    if state.audit is not None:
        health = state.audit.health
        gauges.audit_integrity_alert.set(1 if health.alert is not None else 0)
        gauges.audit_integrity_refusals.set(health.integrity_refusals)
        gauges.audit_witness_unwritable.set(1 if health.witness_unwritable else 0)
    return Response(generate_latest(gauges.registry), media_type=CONTENT_TYPE_LATEST)
