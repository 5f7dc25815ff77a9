"""``mappa-gateway conformance --adapter``: a partner's adapter client run against the gateway.

The demo adapters' client (:class:`adapters.client.GatewayClient` with the agency's own keys)
passes every check; a client with the wrong key, without DPoP, sending unsealed bodies,
accepting any signature, forgetting its Idempotency-Key or giving up on a 503 fails, each with
a line that says why. The gateway is the real one, in process, with Barnet's agencies.
"""

# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwe
from joserfc.jws import extract_compact

from adapters.client import GatewayClient
from adapters.identity import AgencyIdentity
from adapters.kit import partner_init
from gateway.contract.envelope import SignedBody
from gateway.delivery.adapter_conformance import run_adapter_conformance
from gateway.delivery.conformance import Check

# The cases' gateway fixture (Barnet's agencies on SQLite), reused rather than written again;
# its name is then every test's parameter (F811).
from tests.gateway.cases.conftest import world  # noqa: F401
from tests.gateway.cases.scenario import HOUSING, POLICE
from tests.gateway.cases.support import ISSUER, World

NAMES = [
    "token_private_key_jwt_dpop",
    "sealed_request_and_response",
    "idempotent_redelivery",
    "bad_signature_refused",
    "backpressure",
]


async def _run(
    world: World, identity: AgencyIdentity, factory: Any = GatewayClient
) -> dict[str, Check]:
    checks = await run_adapter_conformance(
        identity,
        ISSUER,
        client_factory=lambda i, issuer, http: factory(i, issuer, http, clock=world.clock),
        transport=world.http._transport,
    )
    assert [c.name for c in checks] == NAMES
    return {c.name: c for c in checks}


async def test_the_demo_adapter_client_passes_every_check(world: World) -> None:
    """Housing's keys with the SDK client: five passes; the probe is audited, nothing else kept."""
    checks = await _run(world, world[HOUSING].identity)
    assert all(c.passed for c in checks.values()), checks
    echoes = await world.audit(reason_code="conformance_echo", agency_id=HOUSING)
    assert len(echoes) == 2  # the probe and the backpressure probe; a replay adds none
    assert await world.outbox() == []


async def test_a_kit_from_partner_init_passes_once_registered(world: World, tmp_path: Path) -> None:
    """``partner init`` keys, registered by the operator, drive the client to five passes."""
    kit = partner_init(
        tmp_path / "kit",
        agency_id="barnet-yot",
        name="Barnet YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        issuer=ISSUER,
    )
    registration = json.loads(kit.registration.read_text())
    from gateway import agencies

    await agencies.add_agency(
        world.state.db,
        agency_id="barnet-yot",
        name="Barnet YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        scopes=["case:read", "case:write"],
        jwks=registration["jwks"],
        now=world.clock.now,
    )
    checks = await _run(world, AgencyIdentity.load(kit.directory))
    assert all(c.passed for c in checks.values()), checks


async def test_a_client_with_an_unregistered_key_fails_from_the_token_on(world: World) -> None:
    """Keys the gateway never registered: no token (invalid_client), so nothing else passes
    except the client's own refusal of a forged answer."""
    stranger = AgencyIdentity.generate(POLICE)
    checks = await _run(world, stranger)
    assert not checks["token_private_key_jwt_dpop"].passed
    assert "invalid_client" in checks["token_private_key_jwt_dpop"].detail
    assert not checks["sealed_request_and_response"].passed
    assert not checks["idempotent_redelivery"].passed
    assert not checks["backpressure"].passed


class NoDPoP(GatewayClient):
    """Sends a bearer-style token request: no DPoP proof at all."""

    def dpop_proof(self, method: str, url: str, token: str | None = None) -> str:
        return ""


class Unsealed(GatewayClient):
    """Sends the body as plain JSON instead of a JWS inside a JWE."""

    async def seal(self, body: dict[str, Any]) -> str:
        return json.dumps(body)


class Credulous(GatewayClient):
    """Opens answers without checking who signed them."""

    async def open(self, compact: str) -> tuple[SignedBody, str]:
        decrypted = jwe.decrypt_compact(compact, self.identity.encryption_key)
        inner = (decrypted.plaintext or b"").decode("ascii")
        return SignedBody.model_validate_json(extract_compact(inner.encode()).payload), inner


class Impatient(GatewayClient):
    """Never retries a 429 or 503."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, max_retries=0, **kwargs)


class ForgetfulKey(GatewayClient):
    """Retries a 503, but with a new Idempotency-Key (the gateway could apply it twice)."""

    async def _request(
        self, method: str, url: str, token: str, content: Any, headers: dict[str, str], params: Any
    ) -> httpx.Response:
        response = await self.http.request(method, url, content=content, headers=headers)
        if response.status_code == 503:
            await self.sleep(1)
            headers = {**headers, "Idempotency-Key": "k-" + headers["DPoP"][-20:].replace("_", "a")}
            headers["DPoP"] = self.dpop_proof(method, url, token)
            response = await self.http.request(method, url, content=content, headers=headers)
        return response


@pytest.mark.parametrize(
    ("client", "failing", "says"),
    [
        (NoDPoP, "token_private_key_jwt_dpop", "invalid_dpop_proof: the request carries no"),
        (Unsealed, "sealed_request_and_response", "not a JWS inside a JWE"),
        (Credulous, "bad_signature_refused", "accepted an answer signed by an unknown key"),
        (Impatient, "backpressure", "gave up on 503"),
        (ForgetfulKey, "backpressure", "same Idempotency-Key"),
    ],
)
async def test_a_broken_client_fails_with_a_clear_line(
    world: World, client: type[GatewayClient], failing: str, says: str
) -> None:
    """Each fault is named by the check it breaks, and the line says what went wrong."""
    checks = await _run(world, world[HOUSING].identity, client)
    assert not checks[failing].passed
    assert says in checks[failing].detail, checks[failing].detail


@pytest.mark.parametrize(
    "issuer",
    [
        "http://gateway.example",  # plain http to another machine: the keys could be swapped
        "https://user:secret@gateway.example",  # credentials in the URL
        "ftp://gateway.example",
    ],
)
def test_the_command_refuses_an_issuer_the_client_would_not_trust(
    tmp_path: Path, issuer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``conformance --adapter`` with such an issuer ends with a clear line and status 2, not a
    traceback from inside the client (which refuses to take the gateway's keys from it)."""
    from gateway.cli import main

    kit = partner_init(
        tmp_path / "kit",
        agency_id="barnet-yot",
        name="Barnet YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        issuer=ISSUER,
    )
    status = main(["conformance", "--adapter", str(kit.directory), "--issuer", issuer])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("mappa-gateway: the gateway issuer is refused:")
    assert "Traceback" not in err and "secret" not in err
