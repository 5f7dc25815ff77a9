"""Onboarding agency identities: the service functions, the CLI, and JWKS from a jwks_uri."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gateway import agencies
from gateway.agency_commands import parse_duration
from gateway.oauth import jwks
from gateway.oauth.jwks import JwksFetcher
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import Agency, AgencyKey
from tests.gateway.oauth.support import (
    ONBOARDING,
    AgencyClient,
    Clock,
    Ledger,
    agencies_cli,
    assert_refused,
)


def _jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": list(keys)}


EC = ECKey.generate_key("P-256")
ED = OKPKey.generate_key("Ed25519")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # a private key: the gateway must never hold an agency's private key
        ({"jwks": _jwks(EC.as_dict(private=True))}, "private"),
        # an RSA signing key: outside the allow-list
        (
            {"jwks": _jwks({**RSAKey.generate_key(2048).as_dict(private=False), "use": "sig"})},
            "EC P-256",
        ),
        # a symmetric key
        ({"jwks": _jwks({"kty": "oct", "k": "c2VjcmV0", "use": "sig"})}, "private"),
        # two keys, one kid
        (
            {
                "jwks": _jwks(
                    {**EC.as_dict(private=False), "kid": "k"},
                    {**ED.as_dict(private=False), "kid": "k"},
                )
            },
            "kid",
        ),
        # a kid that looks like a path
        ({"jwks": _jwks({**EC.as_dict(private=False), "kid": "../../etc/passwd"})}, "kid"),
        # an alg that does not fit the key
        ({"jwks": _jwks({**EC.as_dict(private=False), "alg": "RS256"})}, "alg"),
        # no keys
        ({"jwks": {"keys": []}}, "non-empty"),
        # both a JWKS and a jwks_uri
        ({"jwks_uri": "https://police.example/jwks.json"}, "exactly one"),
        # a plain-http jwks_uri
        ({"jwks": None, "jwks_uri": "http://police.example/jwks.json"}, "https"),
        # an id with capitals and spaces
        ({"agency_id": "Police Avon"}, "agency id"),
        # an unknown agency type
        ({"agency_type": "bank"}, "bank"),
        # a malformed scope
        ({"scopes": ["Nominals READ"]}, "scope"),
    ],
)
async def test_add_agency_refuses_bad_input_and_writes_nothing(
    gateway_state: GatewayState, ledger: Ledger, overrides: dict[str, Any], message: str
) -> None:
    """Invalid onboarding requests are refused before anything is written."""
    with pytest.raises(agencies.AgencyError, match=message):
        await agencies.add_agency(gateway_state.db, **{**ONBOARDING, **overrides})
    assert await ledger.count(Agency) == 0
    assert await ledger.count(AgencyKey) == 0


async def test_add_show_list_suspend_reinstate_are_audited(
    gateway_state: GatewayState, ledger: Ledger
) -> None:
    """Each administrative act leaves an administration audit entry."""
    db = gateway_state.db
    view = await agencies.add_agency(
        db,
        agency_id="housing-bristol",
        name="Bristol housing",
        agency_type="housing",
        role="duty_to_cooperate",
        area="avon-somerset",
        scopes=["case:read"],
        jwks=_jwks({**ED.as_dict(private=False), "kid": "ed-1"}),
    )
    assert view.keys[0].kid == "ed-1" and view.keys[0].alg == "EdDSA"
    assert [a.id for a in await agencies.list_agencies(db)] == ["housing-bristol"]
    assert (await agencies.suspend_agency(db, "housing-bristol")).status == "suspended"
    assert (await agencies.reinstate_agency(db, "housing-bristol")).status == "active"
    shown = await agencies.get_agency(db, "housing-bristol")
    assert shown.keys[0].not_after is None
    actions = [e.reason_code for e in await ledger.audit("administration", "allowed")]
    assert actions == ["agency_added", "agency_suspended", "agency_reinstated"]


async def test_rotation_refuses_a_reused_kid_for_another_key(
    gateway_state: GatewayState, police: AgencyClient
) -> None:
    """A kid names one key: rotating in a different key under the same kid is refused."""
    other = {**ECKey.generate_key("P-256").as_dict(private=False), "kid": police.kid}
    with pytest.raises(agencies.AgencyError, match="already registered"):
        await agencies.rotate_agency_keys(
            gateway_state.db, police.client_id, _jwks(other), dt.timedelta(hours=1)
        )


@pytest.mark.parametrize(
    "text", ["\u0661\u0665m", "\uff11\uff15m", "\u0967d", "\u00b2h", "1234567s", "15mx"]
)
def test_an_overlap_is_one_to_six_ascii_digits_and_a_unit(text: str) -> None:
    """``--overlap 15m``, never 15 in another script's digits (``\\d`` matched those)."""
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)
    assert parse_duration("15m") == dt.timedelta(minutes=15)


async def test_rotation_sets_the_end_of_overlap_on_old_keys(
    gateway_state: GatewayState, police: AgencyClient
) -> None:
    """Old keys get not_after = now + overlap; the new key is current."""
    new = {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "police-2027"}
    view = await agencies.rotate_agency_keys(
        gateway_state.db,
        police.client_id,
        _jwks(new),
        dt.timedelta(hours=24),
        now=police.clock.now,
    )
    ends = {k.kid: k.not_after for k in view.keys}
    assert ends["police-2027"] is None
    assert ends[police.kid] == police.clock.now + dt.timedelta(hours=24)


def test_cli_adds_lists_shows_suspends_and_rotates(sqlite_url: str, tmp_path: Path) -> None:
    """`mappa-gateway agencies ...` end to end on a migrated database."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    first = tmp_path / "police.jwks.json"
    first.write_text(json.dumps(_jwks({**EC.as_dict(private=False), "kid": "p-1"})))
    second = tmp_path / "police-2.jwks.json"
    second.write_text(json.dumps(_jwks({**ED.as_dict(private=False), "kid": "p-2"})))

    added = agencies_cli(
        "add",
        "--id",
        "police-avon",
        "--name",
        "Avon and Somerset Police",
        "--type",
        "police",
        "--role",
        "responsible_authority",
        "--area",
        "avon-somerset",
        "--scope",
        "case:read",
        "--jwks",
        str(first),
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert "police-avon  active" in added.stdout
    assert "police-avon" in agencies_cli("list", env=env).stdout
    rotated = agencies_cli(
        "rotate-keys", "police-avon", "--jwks", str(second), "--overlap", "2h", env=env
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "key p-2  sig  EdDSA  until current" in rotated.stdout
    assert "key p-1  sig  ES256  until 20" in rotated.stdout
    assert "suspended" in agencies_cli("suspend", "police-avon", env=env).stdout
    assert "suspended" in agencies_cli("show", "police-avon", env=env).stdout
    missing = agencies_cli("show", "nobody", env=env)
    assert missing.returncode == 1 and "no agency" in missing.stderr
    bad = tmp_path / "private.jwks.json"
    bad.write_text(json.dumps(_jwks(EC.as_dict(private=True))))
    refused = agencies_cli(
        "add",
        "--id",
        "rogue",
        "--name",
        "Rogue",
        "--type",
        "other",
        "--role",
        "associate",
        "--area",
        "x",
        "--jwks",
        str(bad),
        env=env,
    )
    assert refused.returncode == 1 and "private" in refused.stderr


class JwksServer:
    """An agency's JWKS endpoint, served through httpx.MockTransport; counts fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.status = 200
        self.extra = b""
        #: The Content-Length to declare instead of the true one (raw bytes, as sent).
        self.declared: bytes | None = None
        self.delay = 0.0
        self.in_flight = 0
        self.peak = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        assert str(request.url) == "https://em.example/jwks.json"
        if self.status != 200:
            return httpx.Response(self.status, headers={"Location": "https://evil.example/"})
        headers = [(b"Content-Type", b"application/json")]
        if self.declared is not None:
            headers.append((b"Content-Length", self.declared))
        return httpx.Response(
            200, content=json.dumps(self.jwks).encode() + self.extra, headers=headers
        )


@pytest.fixture(params=[0.0])
async def em(
    request: pytest.FixtureRequest, gateway_state: GatewayState, clock: Clock
) -> tuple[AgencyClient, JwksServer]:
    """An agency whose keys live at its registered jwks_uri (param: the refetch interval)."""
    agency = AgencyClient("em-provider", ECKey.generate_key("P-256"), clock)
    server = JwksServer(agency.public_jwks())
    gateway_state.jwks_fetcher = JwksFetcher(
        max_bytes=4096,
        cache_seconds=300,
        timeout=2.0,
        transport=httpx.MockTransport(server.handler),
        refetch_interval=request.param,
    )
    await agencies.add_agency(
        gateway_state.db,
        agency_id="em-provider",
        name="EM",
        agency_type="electronic_monitoring",
        role="duty_to_cooperate",
        area="avon-somerset",
        scopes=["case:read"],
        jwks_uri="https://em.example/jwks.json",
    )
    return agency, server


async def test_jwks_uri_keys_are_fetched_once_and_cached(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer]
) -> None:
    """Two token requests, one fetch of the registered jwks_uri."""
    agency, server = em
    assert (await agency.token_response(http)).status_code == 200
    assert (await agency.token_response(http)).status_code == 200
    assert server.fetches == 1


async def test_jwks_uri_rotation_at_the_source_is_picked_up_by_kid(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], ledger: Ledger
) -> None:
    """A new kid forces one refetch, so the agency's own rotation works without the operator."""
    agency, server = em
    assert (await agency.token_response(http)).status_code == 200
    rotated = AgencyClient(agency.client_id, ECKey.generate_key("P-256"), agency.clock)
    server.jwks = rotated.public_jwks()
    response = await rotated.token_response(http)
    assert response.status_code == 200, [e.reason_code for e in await ledger.refusals()]
    assert server.fetches == 2


@pytest.mark.parametrize("em", [30.0], indirect=True)
async def test_made_up_kids_do_not_hammer_the_agency_jwks_uri(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], ledger: Ledger
) -> None:
    """Ten assertions with unknown kids cause at most one refetch within the interval."""
    agency, server = em
    assert (await agency.token_response(http)).status_code == 200
    for n in range(10):
        assertion = agency.assertion(header={"kid": f"made-up-{n}"})
        response = await agency.token_response(http, assertion=assertion)
        assert response.status_code == 401
    assert server.fetches == 1


async def test_oversized_jwks_is_refused(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], ledger: Ledger
) -> None:
    """A JWKS document over the size cap is refused, and so is the token request."""
    agency, server = em
    server.extra = b" " * 8192
    response = await agency.token_response(http)
    await assert_refused(
        response, ledger, code="invalid_client", reason="jwks_too_large", agency_id="em-provider"
    )


@pytest.mark.parametrize(
    "declared", ["\u00b2", "\u00b9\u00b2", "\u0661\u0662", "\uff11\uff12", "1\u00b2"]
)
async def test_jwks_content_length_not_in_ascii_digits_is_ignored_and_the_body_read_capped(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], declared: str
) -> None:
    """A declared length ``str.isdigit`` passes but ASCII has not (a superscript was a 500) is no
    length: the JWKS is read under the cap as if none were declared, and the token issued."""
    agency, server = em
    server.declared = declared.encode()
    response = await agency.token_response(http)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("declared", ["9" * 19, "1" * 5000])
async def test_jwks_declaring_a_length_of_too_many_digits_is_refused_as_too_large(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], ledger: Ledger, declared: str
) -> None:
    """ASCII digits beyond any cap (more than ``int`` reads, too: a 500 before) are too large."""
    agency, server = em
    server.declared = declared.encode()
    response = await agency.token_response(http)
    await assert_refused(
        response, ledger, code="invalid_client", reason="jwks_too_large", agency_id="em-provider"
    )


async def test_jwks_redirect_is_not_followed(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], ledger: Ledger
) -> None:
    """A redirect from the jwks_uri is not followed anywhere."""
    agency, server = em
    server.status = 302
    response = await agency.token_response(http)
    await assert_refused(
        response, ledger, code="invalid_client", reason="jwks_http_302", agency_id="em-provider"
    )
    assert server.fetches == 1


async def test_jwks_uri_in_the_assertion_header_is_never_fetched(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], ledger: Ledger
) -> None:
    """Only the registered URL is fetched: a jku header is refused, nothing is requested."""
    agency, server = em
    response = await agency.token_response(
        http, assertion=agency.assertion(header={"jku": "https://em.example/jwks.json"})
    )
    await assert_refused(response, ledger, code="invalid_client", reason="header_jku_refused")
    assert server.fetches == 0


async def test_registered_agencies_share_a_database(
    oauth_settings: Any,
) -> None:
    """The service functions take any Database (as the demo set-up uses them)."""
    db = Database(oauth_settings.database_url)
    try:
        assert await agencies.list_agencies(db) == []
    finally:
        await db.dispose()


def _slow_fetcher(server: JwksServer, gateway_state: GatewayState, **options: Any) -> None:
    """The agency's JWKS host answers after ``server.delay`` seconds, counting fetches at once."""
    server.in_flight, server.peak = 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        server.in_flight += 1
        server.peak = max(server.peak, server.in_flight)
        try:
            await asyncio.sleep(server.delay)
            return server.handler(request)
        finally:
            server.in_flight -= 1

    defaults: dict[str, Any] = {"max_bytes": 4096, "cache_seconds": 300, "timeout": 2.0}
    gateway_state.jwks_fetcher = JwksFetcher(
        transport=httpx.MockTransport(handler), refetch_interval=30.0, **{**defaults, **options}
    )


async def test_concurrent_token_requests_share_one_fetch_of_a_slow_jwks_uri(
    http: httpx.AsyncClient, em: tuple[AgencyClient, JwksServer], gateway_state: GatewayState
) -> None:
    """Twenty token requests at once, the partner's host slow: one fetch, which all of them
    wait for (before, each made its own, each holding a database connection meanwhile), and
    the database answers /readyz while they wait."""
    agency, server = em
    server.delay = 0.3
    _slow_fetcher(server, gateway_state)
    calls = [agency.token_response(http) for _ in range(20)]
    ready = asyncio.create_task(http.get("/readyz"))
    answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers] == [200] * 20
    assert (server.fetches, server.peak) == (1, 1)
    assert (await ready).status_code == 200


async def test_a_failing_jwks_uri_is_not_fetched_again_within_the_interval(
    http: httpx.AsyncClient,
    em: tuple[AgencyClient, JwksServer],
    ledger: Ledger,
    gateway_state: GatewayState,
) -> None:
    """The partner's host answers 500: the first request fetches and is refused; the next ones
    within the refetch interval are refused from memory, with the same reason, no fetch."""
    agency, server = em
    server.status, server.delay = 500, 0.0
    _slow_fetcher(server, gateway_state)
    for _ in range(6):
        response = await agency.token_response(http)
        assert response.status_code == 401
    assert server.fetches == 1
    reasons = [entry.reason_code for entry in await ledger.refusals()]
    assert reasons[-6:] == ["jwks_http_500"] * 6


async def test_a_jwks_fetch_is_bounded_as_a_whole(
    http: httpx.AsyncClient,
    em: tuple[AgencyClient, JwksServer],
    ledger: Ledger,
    gateway_state: GatewayState,
) -> None:
    """A host that takes longer than the fetch timeout in all: refused (jwks_fetch_deadline)."""
    agency, server = em
    server.delay = 1.0
    _slow_fetcher(server, gateway_state, timeout=0.2)
    response = await agency.token_response(http)
    assert response.status_code == 401
    assert (await ledger.refusals())[-1].reason_code == "jwks_fetch_deadline"


@pytest.mark.parametrize(
    "document",
    [
        pytest.param("alg-list", id="a-key-whose-alg-is-a-list"),
        pytest.param(42, id="a-number"),
        pytest.param("not a jwks", id="a-string"),
        pytest.param(["x"], id="a-list-of-strings"),
    ],
)
async def test_a_jwks_uri_serving_a_malformed_document_is_refused_and_remembered(
    http: httpx.AsyncClient,
    em: tuple[AgencyClient, JwksServer],
    ledger: Ledger,
    gateway_state: GatewayState,
    document: Any,
) -> None:
    """JSON of the wrong shape (a key's alg a list, or no JWKS object at all) was a TypeError:
    a 500 on every token request, each fetching again. Now jwks_invalid, audited, and the
    failure remembered for the interval like any other."""
    agency, server = em
    if document == "alg-list":
        (key,) = server.jwks["keys"]
        server.jwks = {"keys": [{**key, "alg": ["ES256"]}]}
    else:
        server.jwks = document
    server.delay = 0.0
    _slow_fetcher(server, gateway_state)
    for _ in range(3):
        response = await agency.token_response(http)
        assert response.status_code == 401, response.text
    assert server.fetches == 1
    reasons = [entry.reason_code for entry in await ledger.refusals()]
    assert reasons[-3:] == ["jwks_invalid"] * 3


def test_cli_add_with_a_jwks_uri_warns_that_the_agency_cannot_exchange_case_data(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Registered with a jwks_uri, an agency gets tokens but no sealed call (its keys are not in
    the store, where the seal stage reads them): registration goes ahead, and says so; with a
    JWKS it says nothing of the kind."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    common = ("--type", "police", "--role", "responsible_authority", "--area", "avon-somerset")
    added = agencies_cli(
        "add",
        "--id",
        "em-provider",
        "--name",
        "EM",
        *common,
        "--scope",
        "case:read",
        "--jwks-uri",
        "https://em.example/jwks.json",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert "em-provider  active" in added.stdout
    assert "warning: em-provider is registered with a jwks_uri" in added.stderr
    assert "503 recipient_key_unavailable" in added.stderr
    assert "400 unreadable_body" in added.stderr
    assert "(--jwks)" in added.stderr
    registered = tmp_path / "police.jwks.json"
    registered.write_text(json.dumps(_jwks({**EC.as_dict(private=False), "kid": "p-1"})))
    keyed = agencies_cli(
        "add", "--id", "police-avon", "--name", "P", *common, "--jwks", str(registered), env=env
    )
    assert keyed.returncode == 0, keyed.stderr
    assert "jwks_uri" not in keyed.stderr


async def test_a_key_removed_at_the_jwks_uri_stops_working_when_the_cache_runs_out(
    http: httpx.AsyncClient,
    em: tuple[AgencyClient, JwksServer],
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agency takes a key out of its JWKS: a replica that cached it still accepts it, until
    its copy is ``jwks_cache_seconds`` old (300, the most the setting allows), then not."""
    agency, server = em
    assert (await agency.token_response(http)).status_code == 200
    server.jwks = AgencyClient(
        agency.client_id, ECKey.generate_key("P-256"), agency.clock
    ).public_jwks()
    assert (await agency.token_response(http)).status_code == 200  # from the cache
    later = time.monotonic() + 300
    monkeypatch.setattr(jwks, "time", SimpleNamespace(monotonic=lambda: later))
    refused = await agency.token_response(http)
    await assert_refused(
        refused,
        ledger,
        code="invalid_client",
        reason="key_unknown",
        agency_id=agency.client_id,
        issued=2,
        jtis=4,
    )


def _sig(key: ECKey | OKPKey, kid: str) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": kid, "use": "sig"}


K1, K2, K3 = (ECKey.generate_key("P-256") for _ in range(3))


async def _k1_retired(db: Database, at: dt.datetime) -> None:
    """police-avon registered with k1, then rotated to k2 with no overlap (k1 compromised)."""
    await agencies.add_agency(
        db, **{**ONBOARDING, "jwks": _jwks(_sig(K1, "k1"))}, now=at - dt.timedelta(days=30)
    )
    await agencies.rotate_agency_keys(
        db, "police-avon", _jwks(_sig(K2, "k2")), dt.timedelta(0), now=at - dt.timedelta(days=2)
    )


@pytest.mark.parametrize(
    ("members", "message"),
    [
        # the retired key again, under its own kid
        ([_sig(K2, "k2"), _sig(K1, "k1")], r"key 'k1' was retired at .* under any kid"),
        # the retired key under a new kid: the same RFC 7638 thumbprint
        (
            [_sig(K2, "k2"), _sig(K1, "k1-again")],
            r"key 'k1-again' \(registered as 'k1'\) was retired",
        ),
        # a new key under the retired key's kid
        ([_sig(K2, "k2"), _sig(K3, "k1")], r"kid 'k1' names a key retired at"),
        # the current key under a second kid
        ([_sig(K2, "k2"), _sig(K2, "k2-copy")], "'k2' and 'k2-copy' are one key"),
        ([_sig(K2, "k2-renamed")], r"key 'k2-renamed' is already registered as 'k2'"),
    ],
)
async def test_rotation_never_brings_back_a_retired_key_nor_gives_a_key_two_kids(
    gateway_state: GatewayState, ledger: Ledger, members: list[dict[str, Any]], message: str
) -> None:
    """A key retired by a rotation stays retired: listed again, under its kid or another, or its
    kid given to another key, the rotation is refused, naming the kid, and writes nothing."""
    db, now = gateway_state.db, dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    await _k1_retired(db, now)
    before = await agencies.get_agency(db, "police-avon")
    entries = len(await ledger.audit("administration", "allowed"))
    with pytest.raises(agencies.AgencyError, match=message):
        await agencies.rotate_agency_keys(
            db, "police-avon", _jwks(*members), dt.timedelta(hours=24), now=now
        )
    assert await agencies.get_agency(db, "police-avon") == before
    assert len(await ledger.audit("administration", "allowed")) == entries


async def test_onboarding_refuses_one_key_under_two_kids(
    gateway_state: GatewayState, ledger: Ledger
) -> None:
    """A key has one kid, so that retiring the kid retires the key."""
    jwks = _jwks(_sig(K1, "k1"), {**K1.as_dict(private=False), "kid": "k1-enc", "use": "enc"})
    with pytest.raises(agencies.AgencyError, match="'k1' and 'k1-enc' are one key"):
        await agencies.add_agency(gateway_state.db, **{**ONBOARDING, "jwks": jwks})
    assert await ledger.count(Agency) == 0


async def test_a_rotation_audits_the_keys_it_keeps_and_those_it_reinstates(
    gateway_state: GatewayState, ledger: Ledger
) -> None:
    """A key listed again while still in its overlap is current again: the audit entry says so
    (``reinstated``), beside every key the rotation kept."""
    db, now = gateway_state.db, dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    await agencies.add_agency(db, **{**ONBOARDING, "jwks": _jwks(_sig(K1, "k1"))}, now=now)
    await agencies.rotate_agency_keys(
        db, "police-avon", _jwks(_sig(K2, "k2")), dt.timedelta(hours=24), now=now
    )
    later = now + dt.timedelta(hours=1)
    view = await agencies.rotate_agency_keys(
        db, "police-avon", _jwks(_sig(K2, "k2"), _sig(K1, "k1")), dt.timedelta(hours=24), now=later
    )
    assert {k.kid: k.not_after for k in view.keys} == {"k1": None, "k2": None}
    last = (await ledger.audit("administration", "allowed"))[-1]
    assert last.detail == {
        "action": "agency_keys_rotated",
        "added": [],
        "kept": ["k1", "k2"],
        "reinstated": ["k1"],
        "retiring": [],
        "overlap_seconds": 86400,
    }
