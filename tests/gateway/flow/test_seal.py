"""The seal stage at the gateway's boundary: application/jose in, application/jose out."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwe
from starlette.requests import Request

from adapters.client import GatewayClient
from adapters.identity import AgencyIdentity
from gateway import errors
from gateway.agencies import add_agency
from gateway.contract.envelope import BODY_MAX_AGE, SignedBody
from gateway.flow.seal import Sealer, agency_public_jwks
from gateway.flow.signed_push import PUSH_MAX_AGE, SignedPush
from gateway.state import GatewayState
from gateway.store.models import Agency
from keys import Purpose

ISSUER = "https://gateway.test"


def _request(body: bytes, content_type: str = "application/jose") -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/referrals",
        "headers": [(b"content-type", content_type.encode())],
    }
    return Request(scope, receive)


@pytest.fixture
def state(app: FastAPI) -> GatewayState:
    gateway: GatewayState = app.state.gateway
    return gateway


@pytest.fixture
def sealer(state: GatewayState) -> Sealer:
    assert state.sealer is not None
    return state.sealer


async def _register(state: GatewayState, agency_id: str) -> AgencyIdentity:
    identity = AgencyIdentity.generate(agency_id)
    await add_agency(
        state.db,
        agency_id=agency_id,
        name=agency_id,
        agency_type="police",
        role="responsible_authority",
        area="barnet",
        scopes=["case:write"],
        jwks=identity.public_jwks(),
    )
    return identity


@pytest.fixture
async def police(state: GatewayState, client: httpx.AsyncClient) -> AsyncIterator[GatewayClient]:
    identity = await _register(state, "barnet-police")
    yield GatewayClient(identity, ISSUER, client)


async def _sender_keys(state: GatewayState, agency_id: str) -> list[Any]:
    async with state.db.read() as session:
        return list(await agency_public_jwks(session, agency_id, "sig", dt.datetime.now(dt.UTC)))


async def test_sealed_body_opens_with_evidence_of_origin(
    state: GatewayState, sealer: Sealer, police: GatewayClient
) -> None:
    """A body sealed by the agency opens to the same body, with its JWS kept as evidence."""
    compact = await police.seal({"reasons": "risk to known adult"})
    opened = await sealer.open(
        _request(compact.encode()),
        sender_id="barnet-police",
        sender_keys=await _sender_keys(state, "barnet-police"),
        now=dt.datetime.now(dt.UTC),
    )
    assert opened.body == {"reasons": "risk to known adult"}
    assert opened.jws.count(".") == 2
    assert opened.digest.startswith("sha256:")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",  # plain JSON case data is refused
        "text/plain",
        "application/jose+json",  # the JSON serialisation is not accepted
    ],
)
async def test_case_data_not_as_compact_jose_is_415(
    state: GatewayState, sealer: Sealer, content_type: str
) -> None:
    """Anything but application/jose is refused as an unsupported media type."""
    with pytest.raises(errors.UnsupportedMediaType):
        await sealer.open(
            _request(b'{"reasons": "x"}', content_type),
            sender_id="barnet-police",
            sender_keys=[],
            now=dt.datetime.now(dt.UTC),
        )


@pytest.mark.parametrize("segment", [0, 1, 2, 3, 4])
async def test_bit_flip_in_any_segment_is_one_generic_error(
    state: GatewayState, sealer: Sealer, police: GatewayClient, segment: int
) -> None:
    """A bit flipped in header, key, IV, ciphertext or tag gives the same opaque error."""
    parts = (await police.seal({"reasons": "x"})).split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[segment] + "=="))
    raw[len(raw) // 2] ^= 0x01
    parts[segment] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(errors.UnreadableBody) as caught:
        await sealer.open(
            _request(".".join(parts).encode()),
            sender_id="barnet-police",
            sender_keys=await _sender_keys(state, "barnet-police"),
            now=dt.datetime.now(dt.UTC),
        )
    assert caught.value.code == "unreadable_body"
    assert caught.value.detail is None  # nothing outward beyond the code and title
    assert caught.value.diagnostics["reason"]  # the audit gets the precise reason


async def test_body_signed_by_another_agency_is_refused(
    state: GatewayState, sealer: Sealer, police: GatewayClient, client: httpx.AsyncClient
) -> None:
    """A valid JWE whose inner JWS is by another registered agency is refused."""
    housing_identity = await _register(state, "barnet-housing")
    impostor = GatewayClient(
        AgencyIdentity(
            "barnet-police", housing_identity.signing_key, housing_identity.encryption_key
        ),
        ISSUER,
        client,
    )
    compact = await impostor.seal({"reasons": "x"})
    with pytest.raises(errors.UnreadableBody):
        await sealer.open(
            _request(compact.encode()),
            sender_id="barnet-police",
            sender_keys=await _sender_keys(state, "barnet-police"),
            now=dt.datetime.now(dt.UTC),
        )


async def test_body_claiming_another_sender_is_refused(
    state: GatewayState, sealer: Sealer, client: httpx.AsyncClient
) -> None:
    """A body signed by agency B but naming A as its sender opens for nobody."""
    housing_identity = await _register(state, "barnet-housing")
    housing = GatewayClient(housing_identity, ISSUER, client)
    compact = await housing.seal({"reasons": "x"})
    with pytest.raises(errors.UnreadableBody) as caught:
        await sealer.open(
            _request(compact.encode()),
            sender_id="barnet-police",
            sender_keys=await _sender_keys(state, "barnet-housing"),
            now=dt.datetime.now(dt.UTC),
        )
    assert "another sender" in caught.value.diagnostics["reason"]


async def test_stale_body_is_refused(
    state: GatewayState, sealer: Sealer, police: GatewayClient
) -> None:
    """A sealed body captured and replayed ten minutes later no longer opens."""
    compact = await police.seal({"reasons": "x"})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with pytest.raises(errors.UnreadableBody) as caught:
        await sealer.open(
            _request(compact.encode()),
            sender_id="barnet-police",
            sender_keys=await _sender_keys(state, "barnet-police"),
            now=later,
        )
    assert "stale" in caught.value.diagnostics["reason"]


@pytest.mark.parametrize(
    "iat",
    [
        10**12,  # the year 33658: no datetime holds it
        10**20,  # beyond the platform's time_t
        -(10**15),  # long before the year 1
    ],
)
async def test_body_issued_beyond_the_calendar_is_refused_not_a_crash(
    state: GatewayState,
    sealer: Sealer,
    police: GatewayClient,
    monkeypatch: pytest.MonkeyPatch,
    iat: int,
) -> None:
    """A signed body whose ``iat`` no datetime can hold is simply not fresh: the one opaque
    refusal, never an overflow (a 500)."""
    wrap = SignedBody.wrap

    def far(body: dict[str, Any], *, iss: str, aud: str, now: dt.datetime) -> SignedBody:
        return wrap(body, iss=iss, aud=aud, now=now).model_copy(update={"iat": iat})

    monkeypatch.setattr(SignedBody, "wrap", far)
    compact = await police.seal({"reasons": "x"})
    with pytest.raises(errors.UnreadableBody) as caught:
        await sealer.open(
            _request(compact.encode()),
            sender_id="barnet-police",
            sender_keys=await _sender_keys(state, "barnet-police"),
            now=dt.datetime.now(dt.UTC),
        )
    assert "stale" in caught.value.diagnostics["reason"]


SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("issued", "max_age", "fresh"),
    [
        (-BODY_MAX_AGE, None, True),
        (-BODY_MAX_AGE - SECOND, None, False),
        (BODY_MAX_AGE, None, True),
        (BODY_MAX_AGE + SECOND, None, False),
        (-PUSH_MAX_AGE, PUSH_MAX_AGE, True),
        (-PUSH_MAX_AGE - SECOND, PUSH_MAX_AGE, False),
        # a push's longer window reaches back only: the clock skew ahead stays BODY_MAX_AGE
        (BODY_MAX_AGE, PUSH_MAX_AGE, True),
        (BODY_MAX_AGE + SECOND, PUSH_MAX_AGE, False),
    ],
)
def test_freshness_reaches_back_max_age_and_ahead_by_the_clock_skew(
    issued: dt.timedelta, max_age: dt.timedelta | None, fresh: bool
) -> None:
    """One freshness check: ``iat`` from ``max_age`` (an answer's five minutes unless given, a
    push's seven days) before now to five minutes after, bounds included."""
    now = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
    signed = SignedPush.wrap({}, iss=ISSUER, aud="barnet-housing", now=now + issued, kind="x")
    assert (signed.fresh_at(now) if max_age is None else signed.fresh_at(now, max_age)) is fresh
    assert SignedPush(**{**signed.model_dump(), "iat": 10**20}).fresh_at(now, PUSH_MAX_AGE) is False


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RSA1_5", "enc": "A256GCM"},  # padding-oracle prone
        {"alg": "dir", "enc": "A256GCM"},
        {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2c": 10_000_000, "p2s": "AAAAAAAAAAA"},
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "zip": "DEF"},  # compression bombs
        {"alg": "ECDH-ES+A256KW", "enc": "A128CBC-HS256"},
    ],
)
async def test_disallowed_jwe_headers_are_refused_before_any_work(
    state: GatewayState, sealer: Sealer, header: dict[str, Any]
) -> None:
    """JWE algorithms outside the allow-list are refused from the header alone."""
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    compact = f"{head}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(errors.UnreadableBody):
        await sealer.open(
            _request(compact.encode()),
            sender_id="barnet-police",
            sender_keys=[{"kty": "EC"}],
            now=dt.datetime.now(dt.UTC),
        )


async def test_answer_is_sealed_to_the_recipient_and_signed_by_the_gateway(
    state: GatewayState, sealer: Sealer, police: GatewayClient
) -> None:
    """Only the recipient can open the answer; it verifies against the gateway's JWKS."""
    async with state.db.read() as session:
        agency = await session.get(Agency, "barnet-police")
        keys = await agency_public_jwks(session, "barnet-police", "enc", dt.datetime.now(dt.UTC))
    assert agency is not None
    compact, digest = sealer.seal(
        {"id": "n-1"}, recipient=agency, recipient_keys=keys, now=dt.datetime.now(dt.UTC)
    )
    signed, _evidence = await police.open(compact)
    assert signed.body == {"id": "n-1"}
    assert signed.aud == "barnet-police"
    assert digest.startswith("sha256:")
    other = AgencyIdentity.generate("someone-else")
    with pytest.raises(Exception):  # any failure: another key cannot decrypt
        jwe.decrypt_compact(compact, other.encryption_key)


async def test_a_body_issued_earlier_is_signed_with_the_key_current_now(
    state: GatewayState, sealer: Sealer, police: GatewayClient
) -> None:
    """``issued_at`` dates the signed body (``iat``) and nothing else: the kind and message id
    are signed as for any push, by the signing key current at ``now``."""
    now = dt.datetime.now(dt.UTC)
    issued = now - PUSH_MAX_AGE - dt.timedelta(days=1)
    async with state.db.read() as session:
        keys = await agency_public_jwks(session, "barnet-police", "enc", now)
    compact, _ = sealer.seal(
        {"id": "n-1"},
        recipient=Agency(id="barnet-police"),
        recipient_keys=keys,
        now=now,
        kind="conformance",
        jti="0b0e7a4e-5f0e-4d2a-9a43-3c1f5d6e7a8b",
        issued_at=issued,
    )
    signed, evidence = await police.open(compact)
    assert (signed.iat, signed.kind, signed.jti) == (
        int(issued.timestamp()),
        "conformance",
        "0b0e7a4e-5f0e-4d2a-9a43-3c1f5d6e7a8b",
    )
    header = json.loads(base64.urlsafe_b64decode(evidence.split(".")[0] + "=="))
    assert header["kid"] == sealer.repository.ring(Purpose.PAYLOAD_SIGNING).current(now=now).kid
    assert not signed.fresh_at(now, PUSH_MAX_AGE)


async def test_recipient_without_encryption_key_gets_nothing(
    state: GatewayState, sealer: Sealer, police: GatewayClient
) -> None:
    """No usable encryption key: RecipientKeyUnavailable, never clear text."""
    async with state.db.read() as session:
        agency = await session.get(Agency, "barnet-police")
    assert agency is not None
    with pytest.raises(errors.RecipientKeyUnavailable):
        sealer.seal({"id": "n-1"}, recipient=agency, recipient_keys=[], now=dt.datetime.now(dt.UTC))


async def test_keys_by_use_are_read_at_once_and_match_the_single_use_reads(
    state: GatewayState, police: GatewayClient
) -> None:
    """One read of an agency's keys, grouped by use, gives exactly what a read per use gives,
    expired keys left out the same way; an agency with no keys has none of either use."""
    from sqlalchemy import update

    from gateway.flow.seal import agency_public_jwks_by_use
    from gateway.store.models import AgencyKey

    now = dt.datetime.now(dt.UTC)
    async with state.db.read() as session:
        by_use = await agency_public_jwks_by_use(session, "barnet-police", now)
        for use in ("sig", "enc"):
            assert by_use[use] == await agency_public_jwks(session, "barnet-police", use, now)
            assert by_use[use]
        assert await agency_public_jwks_by_use(session, "nobody", now) == {}
    async with state.db.write() as session:  # the signing key expires
        await session.execute(
            update(AgencyKey)
            .where(AgencyKey.agency_id == "barnet-police", AgencyKey.use == "sig")
            .values(not_after=now - dt.timedelta(seconds=1))
        )
    async with state.db.read() as session:
        by_use = await agency_public_jwks_by_use(session, "barnet-police", now)
    assert "sig" not in by_use
    assert by_use["enc"]
