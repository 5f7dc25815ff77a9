"""``mappa-gateway partner init``: everything a new partner needs to start, in one folder.

Writes, refusing to overwrite anything:

* ``private-jwks.json`` (mode 0600): the agency's signing and encryption keys
  (:class:`~adapters.identity.AgencyIdentity`); they never leave the partner;
* ``public-jwks.json``: the public halves, for the gateway operator;
* ``adapter.toml``: the adapter's configuration (gateway issuer, agency id, endpoint, store);
* ``registration-request.json``: what the operator needs to run ``mappa-gateway agencies add``
  and ``mappa-gateway partner endpoint`` (public facts only).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from adapters.identity import AgencyIdentity

__all__ = ["PartnerKit", "partner_init"]


@dataclass(frozen=True)
class PartnerKit:
    directory: Path
    private_jwks: Path
    public_jwks: Path
    config: Path
    registration: Path


def _write_new(path: Path, text: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def partner_init(
    directory: str | os.PathLike[str],
    *,
    agency_id: str,
    name: str,
    agency_type: str,
    role: str,
    area: str,
    issuer: str,
    endpoint_url: str | None = None,
    adapter: str | None = None,
    scopes: tuple[str, ...] = ("case:read", "case:write", "inbox:read"),
) -> PartnerKit:
    folder = Path(directory)
    identity = AgencyIdentity.generate(agency_id)
    private = identity.save(folder)  # refuses to overwrite existing keys
    public = folder / "public-jwks.json"
    _write_new(public, json.dumps(identity.public_jwks(), indent=2) + "\n")
    config = folder / "adapter.toml"
    _write_new(
        config,
        "\n".join(
            [
                "# MAPPA gateway adapter configuration",
                f'agency_id = "{agency_id}"',
                f'adapter = "{adapter or agency_type}"',
                f'gateway_issuer = "{issuer.rstrip("/")}"',
                f'gateway_jwks_url = "{issuer.rstrip("/")}/.well-known/jwks.json"',
                'private_jwks = "private-jwks.json"',
                "# Where the gateway pushes deliveries (leave empty to pull /v1/inbox instead)",
                f'endpoint_url = "{endpoint_url or ""}"',
                "# TLS for the endpoint: your server certificate and key, and the CA that issued",
                "# it (the CA certificate goes to the gateway operator with the registration).",
                'tls_cert = "tls/server.pem"',
                'tls_key = "tls/server.key"',
                'tls_ca = "tls/ca.pem"',
                'store = "standin.json"',
                "",
            ]
        ),
    )
    registration = folder / "registration-request.json"
    _write_new(
        registration,
        json.dumps(
            {
                "agency_id": agency_id,
                "name": name,
                "agency_type": agency_type,
                "role": role,
                "area": area,
                "scopes": list(scopes),
                "jwks": identity.public_jwks(),
                "endpoint_url": endpoint_url,
                "endpoint_ca_pem": "<the PEM of the CA that issues your endpoint's certificate>"
                if endpoint_url
                else None,
            },
            indent=2,
        )
        + "\n",
    )
    return PartnerKit(folder, private, public, config, registration)
