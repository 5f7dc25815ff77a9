"""OIDC sign-in to the console against a real provider on 127.0.0.1 over TLS: an IG officer's
identity opens a session; every hostile answer is refused with the generic page, audited with its
reason, and opens nothing."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from gateway.app import create_app
from gateway.console.accounts import add_officer
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings, SettingsError
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import AuditEntry, ConsoleOidcLogin, ConsoleSession, IGOfficer
from tests.gateway.console.conftest import BASE
from tests.gateway.console.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    SUBJECT,
    OidcProvider,
    RunningProvider,
)

OIDC_OFFICER = "ig.oidc"
CALLBACK = BASE + "/console/login/oidc/callback"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningProvider]:
    runner = RunningProvider(tmp_path, CALLBACK)
    with runner:
        yield runner


@pytest.fixture
def provider(running: RunningProvider) -> OidcProvider:
    return running.provider


@pytest.fixture
async def oidc_app(console_settings: Settings, running: RunningProvider) -> AsyncIterator[FastAPI]:
    """The gateway with OIDC sign-in to the test provider and one officer registered with the
    provider's issuer and subject (created before start-up, as an operator would)."""
    settings = console_settings.model_copy(
        update={
            "console_oidc_issuer": running.provider.issuer,
            "console_oidc_client_id": CLIENT_ID,
            "console_oidc_client_secret": SecretStr(CLIENT_SECRET),
            "console_oidc_ca_file": running.ca_file,
        }
    )
    db = Database(settings.database_url)
    try:
        async with db.write() as session:
            await add_officer(
                session, OIDC_OFFICER, "Olu Idris", None, oidc=(running.provider.issuer, SUBJECT)
            )
    finally:
        await db.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def gateway(oidc_app: FastAPI) -> GatewayState:
    state: GatewayState = oidc_app.state.gateway
    return state


@pytest.fixture
async def browser(oidc_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=oidc_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


async def _to_provider(browser: httpx.AsyncClient, running: RunningProvider) -> str:
    """Begin at the gateway, let the provider sign in; the callback URL it sends back."""
    start = await browser.get("/console/login/oidc")
    assert start.status_code == 303, start.text
    context = ssl.create_default_context(cafile=str(running.ca_file))
    async with httpx.AsyncClient(verify=context) as idp:
        answer = await idp.get(start.headers["location"])
    assert answer.status_code == 302, answer.text
    callback = answer.headers["location"]
    assert callback.startswith(CALLBACK + "?")
    return callback


async def _refusal(state: GatewayState) -> AuditEntry:
    async with state.db.read() as session:
        rows = await session.execute(
            select(AuditEntry).where(AuditEntry.operation == "console").order_by(AuditEntry.id)
        )
        entries = [e for e in rows.scalars() if e.detail.get("action") == "login_failed"]
    assert len(entries) == 1, [e.reason_code for e in entries]
    assert entries[0].outcome == "refused" and entries[0].detail["method"] == "oidc"
    return entries[0]


async def _no_session(state: GatewayState, browser: httpx.AsyncClient) -> None:
    async with state.db.read() as session:
        assert (await session.execute(select(ConsoleSession))).first() is None
    assert (await browser.get("/console/entries")).status_code == 303


async def test_ig_officer_signs_in_through_oidc_with_pkce_state_and_nonce(
    browser: httpx.AsyncClient,
    gateway: GatewayState,
    running: RunningProvider,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The authorization request carries S256 PKCE, state and nonce; the callback opens a
    session for the registered officer, audited as an OIDC login; the console then opens."""
    start = await browser.get("/console/login/oidc")
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["scope"] == ["openid"]
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    binding = next(v for k, v in start.headers.multi_items() if k == "set-cookie" and "-oidc=" in v)
    assert "secure" in binding.lower() and "samesite=lax" in binding.lower()
    callback = await _to_provider(browser, running)
    response = await browser.get(callback)
    assert response.status_code == 200, response.text
    assert 'http-equiv="refresh" content="0;url=/console/entries"' in response.text
    assert "__Host-mappa-console=" in response.headers.get("set-cookie", "")
    page = await browser.get("/console/entries")
    assert page.status_code == 200 and "Olu Idris" in page.text
    async with gateway.db.read() as session:
        (login,) = [
            e
            for e in (await session.execute(select(AuditEntry))).scalars()
            if e.detail.get("action") == "login"
        ]
        pending = (await session.execute(select(ConsoleOidcLogin))).all()
    assert len(pending) == 1  # the first, abandoned sign-in; the completed one was taken
    assert login.officer_id == OIDC_OFFICER and login.detail["method"] == "oidc"
    output = capsys.readouterr()
    assert SUBJECT not in output.out + output.err  # nothing about the person in the logs


async def test_no_claim_of_the_id_token_gives_an_officer_a_scope(
    browser: httpx.AsyncClient,
    gateway: GatewayState,
    running: RunningProvider,
    provider: OidcProvider,
) -> None:
    """The provider says the officer is national, in groups and roles: the console reads the
    scope from the gateway's own record only, and this officer has none (it reads nothing,
    not the entry of no area a national officer would)."""
    provider.extra_claims = {
        "mappa_scope": "national",
        "mappa_areas": ["barnet", "wiltshire"],
        "groups": ["mappa-national-ig"],
        "roles": ["ig.national"],
    }
    async with gateway.db.write() as session:
        record(
            session,
            AuditEvent(operation=Operation.ADMINISTRATION, outcome=Outcome.ALLOWED),
        )
    assert (await browser.get(await _to_provider(browser, running))).status_code == 200
    page = await browser.get("/console/entries")
    assert page.status_code == 200 and 'id="no-scope"' in page.text
    assert "Scope: none" in page.text and "0 entries shown." in page.text
    api = await browser.get("/v1/audit/entries")
    assert api.json() == {"entries": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("wrong_aud", "oidc_id_token_aud"),  # a token minted for another client
        ("wrong_iss", "oidc_id_token_iss"),  # another issuer's token
        ("wrong_nonce", "oidc_id_token_nonce"),  # a token from another sign-in
        ("no_nonce", "oidc_id_token_nonce"),  # no nonce at all
        ("expired", "oidc_id_token_exp"),  # past its exp
        ("future_iat", "oidc_id_token_iat"),  # issued an hour from now
        ("two_audiences", "oidc_id_token_azp"),  # several audiences and no azp for us
        ("alg_none", "oidc_id_token_signature"),  # unsigned
        ("hs256", "oidc_id_token_signature"),  # HMAC keyed with the public key
        ("other_key", "oidc_id_token_signature"),  # signed by a key not in the JWKS
    ],
)
async def test_hostile_id_tokens_are_refused_audited_and_open_nothing(
    browser: httpx.AsyncClient,
    gateway: GatewayState,
    running: RunningProvider,
    provider: OidcProvider,
    tamper: str,
    reason: str,
) -> None:
    """Each bad ID token: 401 with the generic sign-in refusal, audited with its reason."""
    provider.tamper = tamper
    response = await browser.get(await _to_provider(browser, running))
    assert response.status_code == 401
    assert "The officer id or password is not right." in response.text
    assert (await _refusal(gateway)).reason_code == reason
    await _no_session(gateway, browser)


async def test_wrong_state_is_refused_before_the_code_is_used(
    browser: httpx.AsyncClient,
    gateway: GatewayState,
    running: RunningProvider,
    provider: OidcProvider,
) -> None:
    """A callback with a state the gateway never issued: refused, the code never exchanged."""
    callback = await _to_provider(browser, running)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    forged = CALLBACK + "?" + urlencode({"code": code, "state": "forged-state-value"})
    assert (await browser.get(forged)).status_code == 401
    assert (await _refusal(gateway)).reason_code == "oidc_state_unknown"
    assert provider.token_requests == 0
    await _no_session(gateway, browser)


async def test_replayed_callback_and_replayed_code_are_refused(
    browser: httpx.AsyncClient,
    gateway: GatewayState,
    running: RunningProvider,
) -> None:
    """The same callback twice: its state is spent. An old code under a fresh state: the
    provider refuses it. Neither opens a second session."""
    callback = await _to_provider(browser, running)
    assert (await browser.get(callback)).status_code == 200
    browser.cookies.clear()
    assert (await browser.get(callback)).status_code == 401
    code = parse_qs(urlsplit(callback).query)["code"][0]
    fresh = parse_qs(urlsplit(await _to_provider(browser, running)).query)["state"][0]
    replay = CALLBACK + "?" + urlencode({"code": code, "state": fresh})
    assert (await browser.get(replay)).status_code == 401
    async with gateway.db.read() as session:
        reasons = [
            e.reason_code
            for e in (await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
            if e.detail.get("action") == "login_failed"
        ]
        sessions = (await session.execute(select(ConsoleSession))).all()
    assert reasons == ["oidc_state_unknown", "oidc_code_refused"]
    assert len(sessions) == 1


async def test_callback_in_another_browser_is_refused(
    browser: httpx.AsyncClient,
    oidc_app: FastAPI,
    gateway: GatewayState,
    running: RunningProvider,
) -> None:
    """Login CSRF: a victim's browser handed an attacker's callback URL (without the binding
    cookie of the browser that began the sign-in) is not signed in as the attacker."""
    callback = await _to_provider(browser, running)
    transport = httpx.ASGITransport(app=oidc_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as victim:
        assert (await victim.get(callback)).status_code == 401
        await _no_session(gateway, victim)
    assert (await _refusal(gateway)).reason_code == "oidc_browser_mismatch"


async def test_identity_that_is_no_ig_officer_is_refused_and_audited(
    browser: httpx.AsyncClient,
    gateway: GatewayState,
    running: RunningProvider,
    provider: OidcProvider,
) -> None:
    """A valid ID token for a subject no officer is registered with: refused; the audit keeps
    the issuer and subject (references) for the IG team to follow up, nothing more."""
    provider.subject = "someone-else-at-the-idp"
    assert (await browser.get(await _to_provider(browser, running))).status_code == 401
    refusal = await _refusal(gateway)
    assert refusal.reason_code == "oidc_not_an_ig_officer"
    assert refusal.detail["oidc_subject"] == "someone-else-at-the-idp"
    assert refusal.detail["oidc_issuer"] == provider.issuer
    await _no_session(gateway, browser)


async def test_deactivated_officer_cannot_sign_in_through_oidc(
    browser: httpx.AsyncClient, gateway: GatewayState, running: RunningProvider
) -> None:
    """An officer switched off is no IG officer any more, whatever the provider says."""
    async with gateway.db.write() as session:
        officer = await session.get(IGOfficer, OIDC_OFFICER)
        assert officer is not None
        officer.active = False
    assert (await browser.get(await _to_provider(browser, running))).status_code == 401
    assert (await _refusal(gateway)).reason_code == "oidc_not_an_ig_officer"


async def test_provider_advertising_another_issuer_is_refused(
    browser: httpx.AsyncClient, gateway: GatewayState, provider: OidcProvider
) -> None:
    """Discovery must name exactly the configured issuer (a mix-up defence)."""
    provider.advertised_issuer = "https://evil.example"
    response = await browser.get("/console/login/oidc")
    assert response.status_code == 401
    assert (await _refusal(gateway)).reason_code == "oidc_discovery_invalid"


async def test_provider_with_an_untrusted_certificate_is_refused(
    console_settings: Settings, running: RunningProvider
) -> None:
    """Without the provider's CA (the system's trust store only), TLS fails: no sign-in."""
    settings = console_settings.model_copy(
        update={
            "console_oidc_issuer": running.provider.issuer,
            "console_oidc_client_id": CLIENT_ID,
            "console_oidc_client_secret": SecretStr(CLIENT_SECRET),
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            response = await client.get("/console/login/oidc")
        assert response.status_code == 401
        async with app.state.gateway.db.read() as session:
            (entry,) = (
                await session.execute(
                    select(AuditEntry).where(AuditEntry.reason_code.like("oidc_%"))
                )
            ).scalars()
    assert entry.reason_code == "oidc_discovery_failed"


async def test_oidc_routes_are_absent_without_configuration(
    console_app: FastAPI,
) -> None:
    """A gateway without an OIDC provider answers 404 and shows no OIDC button."""
    transport = httpx.ASGITransport(app=console_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        assert (await client.get("/console/login/oidc")).status_code == 404
        assert (await client.get("/console/login/oidc/callback")).status_code == 404
        assert "oidc-sign-in" not in (await client.get("/console/login")).text


@pytest.mark.parametrize(
    ("profile", "issuer", "unsafe", "accepted"),
    [
        ("production", "https://idp.example", False, True),  # the production shape
        ("production", "http://idp.example", False, False),  # plain http
        ("development", "http://127.0.0.1:9000", False, False),  # loopback, not allowed
        ("development", "http://127.0.0.1:9000", True, True),  # loopback, explicitly allowed
        ("development", "http://idp.example", True, False),  # the flag covers loopback only
        ("test", "http://127.0.0.1:9000", True, False),  # the flag is development-only
    ],
)
def test_oidc_settings_fail_closed(
    profile: str, issuer: str, unsafe: bool, accepted: bool, tmp_path: Path
) -> None:
    """A non-https provider is refused except on a development loopback, explicitly allowed."""

    def build() -> Settings:
        return Settings(
            profile=profile,  # type: ignore[arg-type]
            issuer="https://gateway.example",
            database_url="postgresql+psycopg://x@127.0.0.1/x",
            keys_dir=tmp_path,
            console_oidc_issuer=issuer,
            console_oidc_client_id=CLIENT_ID,
            console_oidc_client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
            unsafe_console_oidc_plain_http_loopback=unsafe,
        )

    if accepted:
        assert build().console_oidc_issuer == issuer
    else:
        with pytest.raises((SettingsError, ValueError)):
            build()


def test_oidc_needs_client_credentials() -> None:
    """An issuer without the client id and secret is a configuration error."""
    with pytest.raises((SettingsError, ValueError)):
        Settings(console_oidc_issuer="https://idp.example")


def _secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "oidc-client-secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_client_secret_may_come_from_a_file(tmp_path: Path) -> None:
    """MAPPA_CONSOLE_OIDC_CLIENT_SECRET_FILE, as the HSM PIN and the Vault token: the secret
    need not sit in the environment (or a unit's environment file)."""
    settings = Settings(
        console_oidc_issuer="https://idp.example",
        console_oidc_client_id=CLIENT_ID,
        console_oidc_client_secret_file=_secret_file(tmp_path, CLIENT_SECRET + "\n"),
    )
    assert settings.console_oidc_secret() == CLIENT_SECRET


@pytest.mark.parametrize(
    ("text", "mode", "why"),
    [
        (CLIENT_SECRET, 0o644, "lets group or others in"),  # readable by others
        (CLIENT_SECRET, 0o640, "lets group or others in"),  # readable by the group
        ("  \n", 0o600, "is empty"),
    ],
)
async def test_a_secret_file_that_cannot_be_used_stops_the_start(
    console_settings: Settings, tmp_path: Path, text: str, mode: int, why: str
) -> None:
    """Refused when the gateway starts, not at an officer's first sign-in; the message names
    the rule, never the file's content."""
    settings = console_settings.model_copy(
        update={
            "console_oidc_issuer": "https://idp.example",
            "console_oidc_client_id": CLIENT_ID,
            "console_oidc_client_secret_file": _secret_file(tmp_path, text, mode),
        }
    )
    app = create_app(settings)
    with pytest.raises(SettingsError, match=why) as refused:
        async with app.router.lifespan_context(app):
            pass
    assert CLIENT_SECRET not in str(refused.value)


def test_an_inline_secret_and_a_secret_file_are_not_both_taken(tmp_path: Path) -> None:
    with pytest.raises((SettingsError, ValueError), match="choose one"):
        Settings(
            console_oidc_issuer="https://idp.example",
            console_oidc_client_id=CLIENT_ID,
            console_oidc_client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
            console_oidc_client_secret_file=_secret_file(tmp_path, CLIENT_SECRET),
        )
