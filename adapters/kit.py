"""``mappa-gateway partner init``: everything a new partner needs to start, in one folder.

Writes, refusing to overwrite anything:

* ``private-jwks.json`` (mode 0600): the agency's signing and encryption keys
  (:class:`~adapters.identity.AgencyIdentity`); they never leave the partner;
* ``public-jwks.json``: the public halves, for the gateway operator;
* ``adapter.toml``: the adapter's configuration (gateway issuer, agency id, endpoint, store);
* ``registration-request.json``: what the operator needs to run ``mappa-gateway agencies add``
  and ``mappa-gateway partner endpoint`` (public facts only).

A rotation of the agency's encryption key is two steps on the same folder (docs/partners.md,
"Rotating your encryption key"): :func:`rotate_encryption_key` makes a new key current, keeps the
one it replaces as previous in ``private-jwks.json`` and writes the new ``public-jwks.json`` for
the operator's ``agencies rotate-keys``; once the gateway no longer sends anything sealed to the
previous key (its overlap has ended), :func:`finish_encryption_key_rotation` drops it, refusing
while a delivery held for review is sealed to it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.identity import AgencyIdentity

if TYPE_CHECKING:
    from adapters.receiver import HeldDelivery

__all__ = [
    "PUBLIC_JWKS_FILE",
    "PartnerKit",
    "finish_encryption_key_rotation",
    "partner_init",
    "rotate_encryption_key",
]

PUBLIC_JWKS_FILE = "public-jwks.json"


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
    public = folder / PUBLIC_JWKS_FILE
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


def _public_jwks_text(identity: AgencyIdentity) -> str:
    return json.dumps(identity.public_jwks(), indent=2) + "\n"


def rotate_encryption_key(directory: str | os.PathLike[str]) -> AgencyIdentity:
    """A new encryption key for the agency whose kit is ``directory``, current from now; the
    one it replaces is kept as previous (the gateway may have sealed messages to it, and goes
    on delivering them through the overlap). Rewrites ``private-jwks.json`` (0600, whole or not
    at all) and ``public-jwks.json`` (the current public keys: what the operator registers with
    ``mappa-gateway agencies rotate-keys``). Restart the receiver and client with the identity
    returned (or loaded again) before the operator registers the new key."""
    folder = Path(directory)
    rotated = AgencyIdentity.load(folder).with_new_encryption_key()
    rotated.replace(folder)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".public-jwks-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(_public_jwks_text(rotated))
    os.chmod(temporary, 0o644)
    os.replace(temporary, folder / PUBLIC_JWKS_FILE)
    return rotated


def finish_encryption_key_rotation(
    directory: str | os.PathLike[str], *, held: Iterable[HeldDelivery]
) -> AgencyIdentity:
    """Drop the previous encryption keys of the agency whose kit is ``directory``: once the
    gateway's overlap for them has ended (it sends nothing sealed to them after that). ``held``
    are the deliveries the receiver holds for review (:meth:`Receiver.held_deliveries`), and
    must be given (no default: a caller who forgot them would drop a key a held delivery is
    sealed to): while one is sealed to a key to be dropped, nothing is dropped
    (:class:`ValueError`), since it could no longer be opened."""
    folder = Path(directory)
    identity = AgencyIdentity.load(folder)
    dropped = {key.kid for key in identity.previous_encryption_keys}
    stuck = sorted(item.jti for item in held if item.sealed_to in dropped)
    if stuck:
        raise ValueError(
            f"{len(stuck)} delivery(ies) held for review are sealed to a previous key "
            f"(first {stuck[0]}): reapply or dismiss them before finishing the rotation"
        )
    finished = identity.without_previous_keys()
    if identity.previous_encryption_keys:
        finished.replace(folder)
    return finished
