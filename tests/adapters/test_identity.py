"""An agency's own keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.identity import AgencyIdentity


def test_identity_round_trips_and_publishes_public_halves_only(tmp_path: Path) -> None:
    """Saved and loaded keys are the same; the public JWKS has no private members."""
    identity = AgencyIdentity.generate("barnet-housing")
    identity.save(tmp_path)
    loaded = AgencyIdentity.load(tmp_path)
    assert loaded.public_jwks() == identity.public_jwks()
    uses = {key["use"]: key for key in identity.public_jwks()["keys"]}
    assert uses["sig"]["alg"] == "ES256"
    assert uses["enc"]["alg"] == "ECDH-ES+A256KW"
    assert all("d" not in key for key in uses.values())


def test_identity_save_refuses_to_overwrite(tmp_path: Path) -> None:
    """An agency's private keys are never silently replaced."""
    AgencyIdentity.generate("a1").save(tmp_path)
    with pytest.raises(FileExistsError):
        AgencyIdentity.generate("a1").save(tmp_path)
