"""``mappa-gateway partner init``: a new partner's folder, and what the operator receives."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from adapters.identity import AgencyIdentity
from adapters.kit import partner_init
from gateway.oauth.jwks import parse_jwks


def test_partner_init_writes_keys_config_and_registration(tmp_path: Path) -> None:
    """Private keys 0600, public JWKS the gateway accepts, a config and a registration request."""
    kit = partner_init(
        tmp_path / "kit",
        agency_id="barnet-yot",
        name="Barnet Youth Offending Team",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        issuer="https://gateway.example",
        endpoint_url="https://yot.example/mappa/deliveries",
    )
    assert stat.S_IMODE(kit.private_jwks.stat().st_mode) == 0o600
    identity = AgencyIdentity.load(kit.directory)
    assert identity.agency_id == "barnet-yot"
    request = json.loads(kit.registration.read_text())
    assert request["jwks"] == json.loads(kit.public_jwks.read_text())
    assert {k.use for k in parse_jwks(request["jwks"])} == {"sig", "enc"}
    assert '"d"' not in kit.registration.read_text()  # no private key material
    assert 'gateway_issuer = "https://gateway.example"' in kit.config.read_text()


def test_partner_init_refuses_to_overwrite_keys(tmp_path: Path) -> None:
    """Running it twice never replaces a partner's keys."""
    args = dict(
        agency_id="barnet-yot",
        name="YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        issuer="https://gateway.example",
    )
    partner_init(tmp_path, **args)  # type: ignore[arg-type]
    with pytest.raises(FileExistsError):
        partner_init(tmp_path, **args)  # type: ignore[arg-type]
