"""Registering an agency's push endpoint and the CA that alone may vouch for it.

An agency without an endpoint pulls ``/v1/inbox``. With one, the relay pushes to it over TLS
trusting only ``ca_pem`` (a PEM bundle of the partner's CA certificates, checked to parse here by
the TLS library itself). ``http://`` is accepted for a loopback address only, and is pushed to
only when the development-only ``unsafe_relay_plain_http_loopback`` setting is on.
"""

from __future__ import annotations

import datetime as dt
import ssl
from urllib.parse import urlsplit, urlunsplit

from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.store import Database
from gateway.store.models import Agency

__all__ = ["EndpointError", "check_endpoint", "set_endpoint"]

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class EndpointError(ValueError):
    """The endpoint or its CA is unusable; nothing was written."""


def check_endpoint(url: str | None, ca_pem: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise EndpointError("endpoint must be an absolute URL without credentials or fragment")
    if parts.scheme == "https":
        if not ca_pem:
            raise EndpointError("an https endpoint needs the partner's CA certificate (PEM)")
        try:
            ssl.create_default_context(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise EndpointError("the CA certificate does not parse") from exc
    elif parts.scheme != "http" or parts.hostname not in _LOOPBACK:
        raise EndpointError("endpoint must be https (http only on the loopback, development)")


async def set_endpoint(
    db: Database,
    agency_id: str,
    *,
    url: str | None,
    ca_pem: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Set (or with ``url=None`` remove) an agency's push endpoint, audited."""
    check_endpoint(url, ca_pem)
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
