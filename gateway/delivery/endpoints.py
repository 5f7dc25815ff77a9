"""Registering an agency's push endpoint and the CA that alone may vouch for it.

An agency without an endpoint pulls ``/v1/inbox``. With one, the relay pushes to it over TLS
trusting only ``ca_pem`` (a PEM bundle of the partner's CA certificates, checked to parse here by
the TLS library itself). The URL passes :func:`gateway.partner_urls.check_partner_url`: no
credentials, no link-local or metadata address, the loopback in the development profile only.
``http://`` is accepted for the loopback only, and is pushed to only when the development-only
``unsafe_relay_plain_http_loopback`` setting is on.
"""

from __future__ import annotations

import datetime as dt
import ssl
from urllib.parse import urlsplit, urlunsplit

from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.partner_urls import PartnerUrlRefused, check_partner_url
from gateway.store import Database
from gateway.store.models import Agency

__all__ = ["EndpointError", "check_endpoint", "set_endpoint"]


class EndpointError(ValueError):
    """The endpoint or its CA is unusable; nothing was written."""


def check_endpoint(url: str | None, ca_pem: str | None, *, development: bool = False) -> None:
    """Refuse an endpoint :func:`~gateway.partner_urls.check_partner_url` refuses (the loopback
    only when ``development``, http only there), or an https one without a CA that parses."""
    if url is None:
        return
    try:
        parts = check_partner_url(url, development=development, http_loopback=True)
    except PartnerUrlRefused as exc:
        raise EndpointError(f"endpoint refused: {exc}") from exc
    if parts.scheme == "https":
        if not ca_pem:
            raise EndpointError("an https endpoint needs the partner's CA certificate (PEM)")
        try:
            ssl.create_default_context(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise EndpointError("the CA certificate does not parse") from exc


async def set_endpoint(
    db: Database,
    agency_id: str,
    *,
    url: str | None,
    ca_pem: str | None = None,
    development: bool = False,
    now: dt.datetime | None = None,
) -> None:
    """Set (or with ``url=None`` remove) an agency's push endpoint, audited. ``development``
    (the profile) allows a loopback endpoint."""
    check_endpoint(url, ca_pem, development=development)
    if url is not None:  # stored as parsed: the scheme in lower case, as the pusher reads it
        url = urlunsplit(urlsplit(url))
    at = now or dt.datetime.now(dt.UTC)
    async with db.write() as session:
        agency = await session.get(Agency, agency_id)
        if agency is None:
            raise EndpointError(f"no agency {agency_id!r}")
        agency.endpoint_url = url
        agency.endpoint_ca_pem = ca_pem if url else None
        agency.updated_at = at
        record(
            session,
            AuditEvent(
                occurred_at=at,
                operation=Operation.ADMINISTRATION,
                outcome=Outcome.ALLOWED,
                agency_id=agency_id,
                reason_code="endpoint_set" if url else "endpoint_removed",
                detail={"action": "endpoint_set" if url else "endpoint_removed"},
            ),
        )
