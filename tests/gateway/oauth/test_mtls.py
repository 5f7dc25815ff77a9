"""RFC 8705 ``tls_client_auth`` and certificate-bound tokens, behind a TLS-terminating proxy.

The app is called through ``httpx.ASGITransport``, whose peer address stands for the TCP peer:
``127.0.0.1`` is the trusted proxy (``MAPPA_TRUSTED_PROXIES``) forwarding the client
certificate in RFC 9440 ``Client-Cert``; ``203.0.113.7`` is a client that reached the app
directly. Certificates are made here with ``cryptography`` (a CA per agency, intermediates, an
expired one, a stranger's CA), and the thumbprint a token must carry is computed here from the
DER, independently of the gateway.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import FastAPI
from joserfc.jwk import ECKey
from sqlalchemy import select

from gateway import agencies
from gateway.http.ratelimit import RateLimiter
from gateway.oauth import mtls
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store.models import Agency, IssuedToken
from tests.gateway.oauth.conftest import register
from tests.gateway.oauth.support import (
    CONTEXT,
    ISSUER,
    T0,
    AgencyClient,
    Clock,
    Ledger,
    agencies_cli,
    assert_refused,
    b64,
    running_app,
)

PROXY = "127.0.0.1"
STRANGER = "203.0.113.7"
POLICE_DN = "CN=police-avon case system,O=Avon and Somerset Police,C=GB"


# -- a small PKI ---------------------------------------------------------------------------


def _name(dn: str) -> x509.Name:
    return x509.Name.from_rfc4514_string(dn)


@dataclasses.dataclass
class Authority:
    """A CA (root or intermediate) that issues client certificates."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()

    @classmethod
    def root(cls, name: str, *, path_length: int | None = 1) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(f"CN={name},O=Test PKI")
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(T0 - dt.timedelta(days=30))
            .not_valid_after(T0 + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_usage(sign_certificates=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def intermediate(self, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            self._builder(_name(f"CN={name},O=Test PKI"), key.public_key(), days=300)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(sign_certificates=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return Authority(key, certificate)

    def issue(
        self,
        dn: str = POLICE_DN,
        *,
        days: int = 30,
        not_before: dt.datetime | None = None,
        usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    ) -> x509.Certificate:
        return self.issue_with_key(dn, days=days, not_before=not_before, usage=usage)[0]

    def issue_with_key(
        self,
        dn: str = POLICE_DN,
        *,
        days: int = 30,
        not_before: dt.datetime | None = None,
        usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A client certificate and its private key."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            self._builder(_name(dn), key.public_key(), days=days, not_before=not_before)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(sign_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), False)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("case.police-avon.example")]), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return certificate, key

    def _builder(
        self,
        subject: x509.Name,
        public: Any,
        *,
        days: int,
        not_before: dt.datetime | None = None,
    ) -> x509.CertificateBuilder:
        start = not_before or T0 - dt.timedelta(days=1)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )


def _usage(*, sign_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def client_cert(certificate: x509.Certificate) -> str:
    """The RFC 9440 header value: an RFC 8941 byte sequence of the DER."""
    return ":" + base64.b64encode(der(certificate)).decode() + ":"


def thumbprint(certificate: x509.Certificate) -> str:
    return b64(hashlib.sha256(der(certificate)).digest())


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ca() -> Authority:
    """The police force's own CA."""
    return Authority.root("Avon and Somerset Police Issuing CA")


@pytest.fixture
def cert(ca: Authority) -> x509.Certificate:
    return ca.issue()


@pytest.fixture
def mtls_settings(oauth_settings: Settings, database_url: str) -> Settings:
    """Behind the proxy, on each backend (SQLite, PostgreSQL)."""
    return oauth_settings.model_copy(
        update={"trusted_proxies": (PROXY,), "database_url": database_url}
    )


@pytest.fixture
async def mtls_app(mtls_settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    async with running_app(mtls_settings, clock) as application:
        yield application


@pytest.fixture
def state(mtls_app: FastAPI) -> GatewayState:
    gateway: GatewayState = mtls_app.state.gateway
    return gateway


@pytest.fixture
def ledger(state: GatewayState) -> Ledger:
    return Ledger(state.db)


def _client(app: FastAPI, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 44321))
    return httpx.AsyncClient(transport=transport, base_url=ISSUER)


@pytest.fixture
async def proxied(mtls_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Requests through the trusted proxy."""
    async with _client(mtls_app, PROXY) as client:
        yield client


@pytest.fixture
async def direct(mtls_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Requests straight to the app, from an address that is no proxy of ours."""
    async with _client(mtls_app, STRANGER) as client:
        yield client


@pytest.fixture
async def police(state: GatewayState, clock: Clock, ca: Authority) -> AgencyClient:
    """A police case system registered for private_key_jwt and tls_client_auth."""
    client = AgencyClient("police-avon", ECKey.generate_key("P-256"), clock)
    await register(
        state.db,
        client,
        agency_type="police",
        role="responsible_authority",
        scopes=["case:read", "case:write"],
    )
    await agencies.set_tls_client_auth(
        state.db, client.client_id, subject_dn=POLICE_DN, ca_pem=ca.pem, now=clock.now
    )
    return client


@pytest.fixture
async def housing(state: GatewayState, clock: Clock) -> AgencyClient:
    """An agency that registered no certificate: private_key_jwt only."""
    client = AgencyClient("housing-bristol", ECKey.generate_key("P-256"), clock)
    return await register(
        state.db, client, agency_type="housing", role="duty_to_cooperate", scopes=["case:read"]
    )


def _form(client_id: str = "police-avon", **extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, **extra}


async def _mtls_token(
    http: httpx.AsyncClient, certificate: x509.Certificate, client_id: str = "police-avon"
) -> httpx.Response:
    return await http.post(
        "/oauth/token", data=_form(client_id), headers={"Client-Cert": client_cert(certificate)}
    )


def _bearer(token: str, certificate: x509.Certificate | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", **CONTEXT}
    if certificate is not None:
        headers["Client-Cert"] = client_cert(certificate)
    return headers


# -- the token endpoint ------------------------------------------------------------------------


async def test_certificate_gets_a_certificate_bound_token_that_works_through_the_proxy(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    ledger: Ledger,
    state: GatewayState,
) -> None:
    """tls_client_auth with no DPoP proof: a Bearer at+jwt bound to the certificate
    (cnf.x5t#S256 = its DER's SHA-256), recorded and audited; no replay-store row, since there
    was no proof or assertion to spend; the token works with the same certificate."""
    response = await _mtls_token(proxied, cert)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    claims = claims_of(body["access_token"])
    assert claims["cnf"] == {"x5t#S256": thumbprint(cert)}
    assert claims["client_id"] == "police-avon"
    assert await ledger.jtis() == 0
    async with state.db.read() as session:
        issued = (await session.scalars(select(IssuedToken))).one()
    assert (issued.jkt, issued.x5t_s256) == (None, thumbprint(cert))
    (entry,) = await ledger.audit("token_issue", "allowed")
    assert entry.detail["auth_method"] == "tls_client_auth"
    assert entry.detail["x5t#S256"] == thumbprint(cert)
    assert "jkt" not in entry.detail and "kid" not in entry.detail

    whoami = await proxied.get("/v1/whoami", headers=_bearer(body["access_token"], cert))
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["agency_id"] == "police-avon"


async def test_certificate_and_dpop_proof_get_a_dpop_bound_token(
    proxied: httpx.AsyncClient, police: AgencyClient, cert: x509.Certificate, ledger: Ledger
) -> None:
    """tls_client_auth with a DPoP proof: the client authenticated by certificate, and the
    token is bound to the DPoP key as with private_key_jwt (the proof's jti is spent)."""
    response = await proxied.post(
        "/oauth/token",
        data=_form(),
        headers={"Client-Cert": client_cert(cert), "DPoP": police.proof()},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert set(claims_of(body["access_token"])["cnf"]) == {"jkt"}
    assert await ledger.jtis() == 1
    whoami = await proxied.get("/v1/whoami", headers=police.resource_headers(body["access_token"]))
    assert whoami.status_code == 200, whoami.text


async def test_private_key_jwt_still_works_for_an_agency_with_a_certificate(
    proxied: httpx.AsyncClient, police: AgencyClient, cert: x509.Certificate
) -> None:
    """An assertion wins over a forwarded certificate: the token is DPoP-bound as ever."""
    response = await proxied.post(
        "/oauth/token",
        data=police.form(),
        headers={"Client-Cert": client_cert(cert), "DPoP": police.proof()},
    )
    assert response.status_code == 200, response.text
    assert set(claims_of(response.json()["access_token"])["cnf"]) == {"jkt"}


async def test_forged_client_cert_sent_straight_to_the_app_is_ignored(
    direct: httpx.AsyncClient,
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    ledger: Ledger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """THREATS.md: a forged forwarded-client-certificate header sent straight to the app is
    ignored: the request is as if it had none (no assertion: refused), nothing is issued,
    the log says the header was dropped without echoing it, and the metrics count it."""
    capsys.readouterr()
    response = await _mtls_token(direct, cert)
    await assert_refused(response, ledger, code="invalid_client", reason="assertion_missing")
    logs = capsys.readouterr().err
    assert "client_cert_ignored" in logs
    assert base64.b64encode(der(cert)).decode()[:40] not in logs
    assert STRANGER not in logs
    metrics = (await proxied.get("/metrics")).text
    assert "mappa_gateway_client_cert_ignored_total 1.0" in metrics
    assert STRANGER not in metrics


def _malformed(cert: x509.Certificate) -> dict[str, list[tuple[str, str]]]:
    good = client_cert(cert)
    return {
        "not a byte sequence": [("Client-Cert", base64.b64encode(der(cert)).decode())],
        "not base64": [("Client-Cert", ":***:")],
        "empty": [("Client-Cert", "::")],
        "not DER": [("Client-Cert", ":" + base64.b64encode(b"\x30\x03abc").decode() + ":")],
        "too large": [("Client-Cert", ":" + base64.b64encode(b"\x30" * 9000).decode() + ":")],
        "repeated": [("Client-Cert", good), ("Client-Cert", good)],
        "chain without a certificate": [("Client-Cert-Chain", good)],
        "chain too long": [("Client-Cert", good), ("Client-Cert-Chain", ",".join([good] * 5))],
    }


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("not a byte sequence", "client_cert_malformed"),
        ("not base64", "client_cert_malformed"),
        ("empty", "client_cert_malformed"),
        ("not DER", "client_cert_malformed"),
        ("too large", "client_cert_too_large"),
        ("repeated", "client_cert_repeated"),
        ("chain without a certificate", "client_cert_missing"),
        ("chain too long", "client_cert_chain_too_long"),
    ],
)
async def test_malformed_header_from_the_proxy_is_refused(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    ledger: Ledger,
    case: str,
    reason: str,
) -> None:
    """A Client-Cert header from the trusted proxy that does not parse is refused (401
    invalid_client, audited), never taken for no certificate: the proxy is broken."""
    response = await proxied.post(
        "/oauth/token", data=_form(), headers=httpx.Headers(_malformed(cert)[case])
    )
    await assert_refused(response, ledger, code="invalid_client", reason=reason)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        # another CA (a stranger's, or another agency's) issued a certificate with our DN
        ("stranger's CA", "client_cert_untrusted"),
        # our CA, but the certificate names another system
        ("other subject", "client_cert_subject_mismatch"),
        # our CA, our DN, but the certificate ran out yesterday
        ("expired", "client_cert_untrusted"),
        # not valid for another day
        ("not yet valid", "client_cert_untrusted"),
        # the CA itself presented as the client certificate
        ("the CA itself", "client_cert_untrusted"),
        # our CA, our DN, but issued for TLS servers only (extended key usage serverAuth)
        ("server certificate", "client_cert_untrusted"),
    ],
)
async def test_certificate_that_does_not_verify_is_refused(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    ca: Authority,
    ledger: Ledger,
    case: str,
    reason: str,
) -> None:
    """The chain is checked against the agency's own CA at the request's time, and the
    subject against its registered DN: any miss is 401 invalid_client, nothing issued."""
    certificate = {
        "stranger's CA": lambda: Authority.root("Stranger CA").issue(),
        "other subject": lambda: ca.issue("CN=someone else,O=Avon and Somerset Police,C=GB"),
        "expired": lambda: ca.issue(days=2, not_before=T0 - dt.timedelta(days=3)),
        "not yet valid": lambda: ca.issue(not_before=T0 + dt.timedelta(days=1)),
        "the CA itself": lambda: ca.certificate,
        "server certificate": lambda: ca.issue(usage=ExtendedKeyUsageOID.SERVER_AUTH),
    }[case]()
    response = await _mtls_token(proxied, certificate)
    await assert_refused(
        response, ledger, code="invalid_client", reason=reason, agency_id="police-avon"
    )


async def test_a_certificate_through_an_intermediate_is_accepted(
    proxied: httpx.AsyncClient, police: AgencyClient, ca: Authority
) -> None:
    """Client-Cert-Chain carries the intermediates the verifier needs to reach the CA."""
    issuing = ca.intermediate("Avon and Somerset Police Sub CA")
    certificate = issuing.issue()
    response = await proxied.post(
        "/oauth/token",
        data=_form(),
        headers={
            "Client-Cert": client_cert(certificate),
            "Client-Cert-Chain": client_cert(issuing.certificate),
        },
    )
    assert response.status_code == 200, response.text
    without_chain = await _mtls_token(proxied, certificate)
    assert without_chain.status_code == 401


async def test_an_issuing_ca_may_be_registered_as_the_anchor(
    proxied: httpx.AsyncClient, police: AgencyClient, ca: Authority, state: GatewayState
) -> None:
    """An agency may register its issuing (intermediate) CA: then no chain need be sent, and
    a certificate from a sibling issuing CA under the same root is not accepted."""
    issuing = ca.intermediate("Avon and Somerset Police Sub CA")
    sibling = ca.intermediate("Avon and Somerset Police Other Sub CA")
    await agencies.set_tls_client_auth(
        state.db, "police-avon", subject_dn=POLICE_DN, ca_pem=issuing.pem
    )
    assert (await _mtls_token(proxied, issuing.issue())).status_code == 200
    refused = await proxied.post(
        "/oauth/token",
        data=_form(),
        headers={
            "Client-Cert": client_cert(sibling.issue()),
            "Client-Cert-Chain": client_cert(sibling.certificate),
        },
    )
    assert refused.status_code == 401


async def test_another_agencys_ca_cannot_vouch_for_this_agency(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    state: GatewayState,
    clock: Clock,
    ledger: Ledger,
) -> None:
    """Each agency's certificate must chain to the CA it registered: a second agency's CA
    (trusted by the proxy too) issuing a certificate with the police DN gets nothing."""
    other = Authority.root("Bristol Housing CA")
    housing = AgencyClient("housing-bristol", ECKey.generate_key("P-256"), clock)
    await register(
        state.db, housing, agency_type="housing", role="duty_to_cooperate", scopes=["case:read"]
    )
    await agencies.set_tls_client_auth(
        state.db, "housing-bristol", subject_dn="CN=housing,O=Bristol", ca_pem=other.pem
    )
    response = await _mtls_token(proxied, other.issue(POLICE_DN))
    await assert_refused(
        response,
        ledger,
        code="invalid_client",
        reason="client_cert_untrusted",
        agency_id="police-avon",
    )


@pytest.mark.parametrize(
    ("client_id", "reason", "attributed"),
    [
        ("housing-bristol", "tls_client_auth_not_registered", "housing-bristol"),
        ("nobody-here", "client_unknown", None),
        # not an agency id at all, so never looked up: a NUL (PostgreSQL cannot compare text
        # holding one: this was a 500 there, unaudited), a newline, upper case
        ("police-avon\x00", "client_unknown", None),
        ("police\x00avon", "client_unknown", None),
        ("police-avon\n", "client_unknown", None),
        ("Police-Avon", "client_unknown", None),
    ],
)
async def test_certificate_for_an_agency_not_registered_for_it_is_refused(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    housing: AgencyClient,
    cert: x509.Certificate,
    ledger: Ledger,
    client_id: str,
    reason: str,
    attributed: str | None,
) -> None:
    """A valid police certificate naming housing (not registered for the method), or an
    unknown client (or a client id no agency could have): refused, on both backends."""
    response = await _mtls_token(proxied, cert, client_id)
    await assert_refused(
        response, ledger, code="invalid_client", reason=reason, agency_id=attributed
    )


async def test_suspended_agency_gets_no_token_by_certificate(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    state: GatewayState,
    ledger: Ledger,
) -> None:
    await agencies.suspend_agency(state.db, police.client_id)
    response = await _mtls_token(proxied, cert)
    await assert_refused(
        response, ledger, code="invalid_client", reason="agency_suspended", agency_id="police-avon"
    )


# -- certificate-bound tokens on the API -----------------------------------------------------


async def _refused_bound_call(response: httpx.Response, ledger: Ledger, reason: str) -> None:
    """A police call with its certificate-bound token refused: 401 with the Bearer challenge,
    audited with ``reason``, the one token issued and no proof spent."""
    await assert_refused(
        response,
        ledger,
        code="invalid_token",
        reason=reason,
        agency_id="police-avon",
        issued=1,
        challenge='Bearer error="invalid_token"',
    )


@pytest.fixture
async def bound_token(
    proxied: httpx.AsyncClient, police: AgencyClient, cert: x509.Certificate
) -> str:
    response = await _mtls_token(proxied, cert)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_certificate_bound_token_needs_that_certificate_through_the_proxy(
    proxied: httpx.AsyncClient,
    direct: httpx.AsyncClient,
    police: AgencyClient,
    ca: Authority,
    cert: x509.Certificate,
    bound_token: str,
    ledger: Ledger,
) -> None:
    """RFC 8705 section 3: a stolen certificate-bound token is useless without the
    certificate's private key, which only a TLS handshake at the proxy proves. Sent straight
    to the app (a copied Client-Cert is ignored), without a certificate, or with another
    certificate of the same CA and subject: 401 with the RFC 6750 Bearer challenge, nothing
    answered."""
    cases = [
        (direct, _bearer(bound_token, cert), "client_cert_missing"),
        (proxied, _bearer(bound_token, None), "client_cert_missing"),
        (proxied, _bearer(bound_token, ca.issue()), "client_cert_mismatch"),
    ]
    for http, headers, reason in cases:
        response = await http.get("/v1/whoami", headers=headers)
        assert "agency_id" not in response.text
        await _refused_bound_call(response, ledger, reason)


async def test_certificate_bound_token_under_the_dpop_scheme_is_refused(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    bound_token: str,
    ledger: Ledger,
) -> None:
    """The scheme must match the binding: a certificate-bound token sent as DPoP (with a
    proof from a key of the client's choosing) is refused, as a DPoP token sent as Bearer is."""
    headers = police.resource_headers(bound_token)
    headers["Client-Cert"] = client_cert(cert)
    response = await proxied.get("/v1/whoami", headers=headers)
    await _refused_bound_call(response, ledger, "certificate_token_as_dpop")


async def test_dpop_token_as_bearer_with_a_certificate_is_still_refused(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    ledger: Ledger,
) -> None:
    """A DPoP-bound token does not become usable as Bearer because a certificate came too."""
    token = await police.token(proxied)
    response = await proxied.get("/v1/whoami", headers=_bearer(token, cert))
    await assert_refused(
        response,
        ledger,
        code="invalid_token",
        reason="dpop_token_as_bearer",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


async def test_suspension_bites_on_the_next_certificate_bound_call(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    bound_token: str,
    state: GatewayState,
    ledger: Ledger,
) -> None:
    """With no proof to spend, the call's group-commit statement still checks the agency is
    active: the token outstanding is refused once the agency is suspended."""
    ok = await proxied.get("/v1/whoami", headers=_bearer(bound_token, cert))
    assert ok.status_code == 200, ok.text
    await agencies.suspend_agency(state.db, police.client_id)
    response = await proxied.get("/v1/whoami", headers=_bearer(bound_token, cert))
    await _refused_bound_call(response, ledger, "agency_suspended")


async def test_expired_certificate_bound_token_is_refused(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    bound_token: str,
    clock: Clock,
    ledger: Ledger,
) -> None:
    clock.advance(301 + 60)
    response = await proxied.get("/v1/whoami", headers=_bearer(bound_token, cert))
    await assert_refused(response, ledger, code="invalid_token", reason="token_expired", issued=1)


# -- discovery, settings, registration ---------------------------------------------------------


async def test_metadata_offers_the_method_only_behind_a_trusted_proxy(
    proxied: httpx.AsyncClient, oauth_app: FastAPI
) -> None:
    with_proxy = (await proxied.get("/.well-known/oauth-authorization-server")).json()
    assert with_proxy["token_endpoint_auth_methods_supported"] == [
        "private_key_jwt",
        "tls_client_auth",
    ]
    assert with_proxy["tls_client_certificate_bound_access_tokens"] is True
    async with _client(oauth_app, PROXY) as plain:
        without = (await plain.get("/.well-known/oauth-authorization-server")).json()
    assert without["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert without["tls_client_certificate_bound_access_tokens"] is False


async def test_without_trusted_proxies_a_client_cert_is_ignored(
    oauth_app: FastAPI, police_plain: AgencyClient, cert: x509.Certificate
) -> None:
    """The default: no proxy is trusted, so no Client-Cert is ever believed, even from
    the loopback."""
    async with _client(oauth_app, PROXY) as http:
        response = await _mtls_token(http, cert)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_client"


@pytest.fixture
async def police_plain(oauth_app: FastAPI, clock: Clock, ca: Authority) -> AgencyClient:
    gateway: GatewayState = oauth_app.state.gateway
    client = AgencyClient("police-avon", ECKey.generate_key("P-256"), clock)
    await register(
        gateway.db, client, agency_type="police", role="responsible_authority", scopes=["case:read"]
    )
    await agencies.set_tls_client_auth(
        gateway.db, client.client_id, subject_dn=POLICE_DN, ca_pem=ca.pem, now=clock.now
    )
    return client


def test_trusted_proxies_take_addresses_and_networks(oauth_settings: Settings) -> None:
    proxies = mtls.TrustedProxies(["10.0.0.0/24", "::1", "192.0.2.7"])
    assert "10.0.0.9" in proxies and "::1" in proxies and "192.0.2.7" in proxies
    assert "10.0.1.9" not in proxies and "192.0.2.8" not in proxies
    assert "not-an-address" not in proxies and None not in proxies
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(**{**oauth_settings.model_dump(), "trusted_proxies": ("proxy.example",)})


async def test_registration_checks_the_subject_and_the_ca(
    state: GatewayState, police: AgencyClient, ca: Authority, cert: x509.Certificate, clock: Clock
) -> None:
    """set-tls refuses what could never verify, and writes nothing then; it is audited."""
    bad = [
        ({"subject_dn": "not a DN", "ca_pem": ca.pem}, "subject DN"),
        ({"subject_dn": POLICE_DN, "ca_pem": "not PEM"}, "CA refused"),
        ({"subject_dn": POLICE_DN, "ca_pem": cert.public_bytes(Encoding.PEM).decode()}, "not a CA"),
        ({"subject_dn": POLICE_DN, "ca_pem": None}, "both"),
    ]
    for arguments, message in bad:
        with pytest.raises(agencies.AgencyError, match=message):
            await agencies.set_tls_client_auth(state.db, "police-avon", **arguments)
    with pytest.raises(agencies.AgencyError, match="no agency"):
        await agencies.set_tls_client_auth(state.db, "nobody", subject_dn=POLICE_DN, ca_pem=ca.pem)
    async with state.db.read() as session:
        agency = await session.get(Agency, "police-avon")
        assert agency is not None
        assert agency.tls_client_ca_pem == ca.pem
    set_entries = await Ledger(state.db).audit("administration", "allowed")
    assert [e.reason_code for e in set_entries].count("agency_tls_client_auth_set") == 1

    view = await agencies.set_tls_client_auth(
        state.db, "police-avon", subject_dn=None, ca_pem=None, now=clock.now
    )
    assert view.tls_subject_dn is None
    entries = await Ledger(state.db).audit("administration", "allowed")
    assert entries[-1].reason_code == "agency_tls_client_auth_closed"


async def test_closing_the_method_refuses_the_next_certificate(
    proxied: httpx.AsyncClient,
    police: AgencyClient,
    cert: x509.Certificate,
    state: GatewayState,
    ledger: Ledger,
) -> None:
    await agencies.set_tls_client_auth(state.db, "police-avon", subject_dn=None, ca_pem=None)
    response = await _mtls_token(proxied, cert)
    await assert_refused(
        response,
        ledger,
        code="invalid_client",
        reason="tls_client_auth_not_registered",
        agency_id="police-avon",
    )


def test_cli_sets_shows_and_clears_tls_client_auth(
    sqlite_url: str, tmp_path: Path, ca: Authority, cert: x509.Certificate
) -> None:
    """`mappa-gateway agencies set-tls` end to end: set, shown by `show`, refused without the
    CA or with a leaf for a CA, cleared."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    jwks = tmp_path / "police.jwks.json"
    jwks.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        **ECKey.generate_key("P-256").as_dict(private=False),
                        "kid": "p-1",
                        "use": "sig",
                    }
                ]
            }
        )
    )
    added = agencies_cli(
        "add",
        "--id",
        "police-avon",
        "--name",
        "Police",
        "--type",
        "police",
        "--role",
        "responsible_authority",
        "--area",
        "avon-somerset",
        "--jwks",
        str(jwks),
        env=env,
    )
    assert added.returncode == 0, added.stderr
    ca_file, leaf_file = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    ca_file.write_text(ca.pem)
    leaf_file.write_text(cert.public_bytes(Encoding.PEM).decode())

    done = agencies_cli(
        "set-tls", "police-avon", "--subject-dn", POLICE_DN, "--ca", str(ca_file), env=env
    )
    assert done.returncode == 0, done.stderr
    assert f"tls_client_auth: {POLICE_DN}" in agencies_cli("show", "police-avon", env=env).stdout
    no_ca = agencies_cli("set-tls", "police-avon", "--subject-dn", POLICE_DN, env=env)
    assert no_ca.returncode == 1 and "--ca" in no_ca.stderr
    leaf = agencies_cli(
        "set-tls", "police-avon", "--subject-dn", POLICE_DN, "--ca", str(leaf_file), env=env
    )
    assert leaf.returncode == 1 and "not a CA" in leaf.stderr
    cleared = agencies_cli("set-tls", "police-avon", "--clear", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert "tls_client_auth" not in agencies_cli("show", "police-avon", env=env).stdout


async def test_token_quota_behind_the_proxy_is_per_forwarded_address(
    mtls_app: FastAPI, police: AgencyClient, state: GatewayState
) -> None:
    """Behind the proxy every peer is the proxy: the token endpoint's per-address quota keys
    on the address the proxy appended to X-Forwarded-For, so one client's burst does not
    throttle the others; from anyone else X-Forwarded-For is not believed."""
    state.token_limiter = RateLimiter(rate=0.01, burst=1)

    async def status(peer: str, forwarded: str | None) -> int:
        headers = {"DPoP": police.proof()}
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        async with _client(mtls_app, peer) as http:
            response = await http.post("/oauth/token", data=police.form(), headers=headers)
        return response.status_code

    assert await status(PROXY, "198.51.100.1") == 200
    assert await status(PROXY, "198.51.100.1") == 429
    # a client's own claim before the proxy's entry is not what counts
    assert await status(PROXY, "198.51.100.2, 198.51.100.1") == 429
    assert await status(PROXY, "198.51.100.9, 198.51.100.2") == 200
    # straight to the app: X-Forwarded-For is the stranger's word, the peer is what counts
    assert await status(STRANGER, "198.51.100.3") == 200
    assert await status(STRANGER, "198.51.100.4") == 429


async def test_token_quota_counts_an_ipv6_client_by_its_64_network(
    mtls_app: FastAPI, police: AgencyClient, state: GatewayState
) -> None:
    """One host is routinely given a whole /64: a bucket per IPv6 address let it open billions
    of fresh ones, so the quota counts the /64; another /64 has its own, and an IPv4-mapped
    address is the IPv4 address's bucket."""
    state.token_limiter = RateLimiter(rate=0.01, burst=1)

    async def status(forwarded: str) -> int:
        headers = {"DPoP": police.proof(), "X-Forwarded-For": forwarded}
        async with _client(mtls_app, PROXY) as http:
            response = await http.post("/oauth/token", data=police.form(), headers=headers)
        return response.status_code

    assert await status("2001:db8:1:2::1") == 200
    assert await status("2001:db8:1:2:ffff:ffff:ffff:fffe") == 429  # same /64
    assert await status("2001:db8:1:3::1") == 200  # the next /64
    assert await status("198.51.100.7") == 200
    assert await status("::ffff:198.51.100.7") == 429  # the same IPv4 address
