"""Mutual TLS end to end: a real HAProxy terminates TLS in front of a real gateway process.

HAProxy runs with the configuration ``docs/authentication.md`` gives operators (client
certificates optional, verified against the agencies' CA; any ``Client-Cert`` from the client
removed; the verified certificate forwarded as RFC 9440 ``Client-Cert``), and connects to the
gateway from ``127.0.0.2``, the one address in ``MAPPA_TRUSTED_PROXIES``. The agency's system
is an ``httpx`` client holding its certificate and key. The gateway runs as ``mappa-gateway
serve`` does, with proxy headers off. A client on ``127.0.0.1`` that reaches the gateway
directly is not the proxy, whatever headers it sends.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapters.client import ContextHeaders, GatewayClient
from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.store import Database
from keys.x509 import DevelopmentCA
from tests.gateway.oauth.support import CONTEXT, Replica, free_port, replica_env
from tests.gateway.oauth.test_mtls import POLICE_DN, Authority, claims_of, client_cert, thumbprint
from tests.support import skip_or_fail_in_ci

pytestmark = pytest.mark.slow

PROXY_SOURCE = "127.0.0.2"
#: The police case system's keys (its JWKS is registered; its certificate is made per test).
IDENTITY = AgencyIdentity.generate("police-avon")
HAPROXY_CONFIG = """
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend gateway
    bind 127.0.0.1:{port} ssl crt {proxy_pem} ca-file {client_ca} verify optional
    http-request del-header Client-Cert
    http-request del-header Client-Cert-Chain
    acl client_cert_ok ssl_c_verify 0
    http-request set-header Client-Cert :%[ssl_c_der,base64]: if {{ ssl_c_used }} client_cert_ok
    http-request del-header X-Forwarded-For
    option forwardfor
    default_backend mappa
backend mappa
    server gateway 127.0.0.1:{gateway_port} source {source}
"""


def _haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        skip_or_fail_in_ci("HAProxy is not installed (make test installs it: apt-get haproxy)")
    return found


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("haproxy did not listen")


def _pem_key(certificate_key: Any) -> str:
    return str(
        certificate_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    )


class Deployment:
    """The gateway behind HAProxy, and what a client needs to reach it."""

    def __init__(self, tmp: Path, url: str, direct: str, proxy_ca: Path) -> None:
        self.tmp, self.url, self.direct, self.proxy_ca = tmp, url, direct, proxy_ca

    def context(self, certificate: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.proxy_ca))
        if certificate is not None:
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
        return context

    def client(self, certificate: tuple[Path, Path] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.context(certificate), timeout=10)


@pytest.fixture
def agency_ca() -> Authority:
    return Authority.root("Avon and Somerset Police Issuing CA")


@pytest.fixture
def deployment(
    tmp_path: Path, sqlite_url: str, gateway_keys: tuple[Path, Path], agency_ca: Authority
) -> Iterator[Deployment]:
    haproxy = _haproxy()

    async def register() -> None:
        db = Database(sqlite_url)
        try:
            await agencies.add_agency(
                db,
                agency_id="police-avon",
                name="Avon and Somerset Police",
                agency_type="police",
                role="responsible_authority",
                area="avon-somerset",
                scopes=["case:read"],
                jwks=IDENTITY.public_jwks(),
            )
            await agencies.set_tls_client_auth(
                db, "police-avon", subject_dn=POLICE_DN, ca_pem=agency_ca.pem
            )
        finally:
            await db.dispose()

    asyncio.run(register())
    proxy_authority = DevelopmentCA.generate("test proxy CA", hosts=("127.0.0.1",))
    served = proxy_authority.issue_server(("127.0.0.1",))
    proxy_pem = tmp_path / "proxy.pem"
    proxy_pem.write_text(served.certificate_pem + served.private_key_pem)
    proxy_ca = tmp_path / "proxy-ca.pem"
    proxy_ca.write_text(proxy_authority.certificate_pem)
    client_ca = tmp_path / "agency-cas.pem"
    client_ca.write_text(agency_ca.pem)

    env = {
        **replica_env(sqlite_url, *gateway_keys),
        "MAPPA_TRUSTED_PROXIES": json.dumps([PROXY_SOURCE]),
    }
    gateway = Replica(env, tmp_path / "gateway.log", "--no-proxy-headers")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            port=port,
            proxy_pem=proxy_pem,
            client_ca=client_ca,
            gateway_port=gateway.port,
            source=PROXY_SOURCE,
        )
    )
    with (tmp_path / "haproxy.log").open("wb") as log:
        proxy = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            gateway.wait_ready()
            _wait_port(port, proxy)
            yield Deployment(tmp_path, f"https://127.0.0.1:{port}", gateway.url, proxy_ca)
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)
            gateway.stop()


def _holder(tmp: Path, authority: Authority, name: str) -> tuple[x509.Certificate, Path, Path]:
    """A client certificate for the police DN and its files (certificate, key)."""
    certificate, key = authority.issue_with_key()
    cert_file, key_file = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_file.write_text(certificate.public_bytes(Encoding.PEM).decode())
    key_file.write_text(_pem_key(key))
    return certificate, cert_file, key_file


TOKEN_FORM = {"grant_type": "client_credentials", "client_id": "police-avon"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **CONTEXT}


def test_a_certificate_gets_a_bound_token_through_haproxy_and_nothing_works_without_it(
    deployment: Deployment, agency_ca: Authority, tmp_path: Path
) -> None:
    """Through the proxy with the certificate: a Bearer token bound to that certificate (its
    thumbprint computed here from the DER the client holds), and /v1/whoami answers. The same
    token through the proxy with no certificate, or with another certificate of the same CA and
    subject, is refused; so is a client's own Client-Cert header (the proxy removes it) and
    the forged header sent straight to the gateway (it ignores it)."""
    certificate, cert_file, key_file = _holder(tmp_path, agency_ca, "police")
    with deployment.client((cert_file, key_file)) as http:
        issued = http.post("/oauth/token", data=TOKEN_FORM)
        assert issued.status_code == 200, issued.text
        body = issued.json()
        assert body["token_type"] == "Bearer"
        token = body["access_token"]
        assert claims_of(token)["cnf"] == {"x5t#S256": thumbprint(certificate)}
        whoami = http.get("/v1/whoami", headers=_bearer(token))
        assert whoami.status_code == 200, whoami.text
        assert whoami.json()["agency_id"] == "police-avon"

    forged = {**_bearer(token), "Client-Cert": client_cert(certificate)}
    with deployment.client() as anonymous:
        assert anonymous.get("/v1/whoami", headers=_bearer(token)).status_code == 401
        assert anonymous.get("/v1/whoami", headers=forged).status_code == 401
        no_cert = anonymous.post(
            "/oauth/token", data=TOKEN_FORM, headers={"Client-Cert": client_cert(certificate)}
        )
        assert no_cert.status_code == 401
    _, other_cert, other_key = _holder(tmp_path, agency_ca, "police-other")
    with deployment.client((other_cert, other_key)) as other:
        assert other.get("/v1/whoami", headers=_bearer(token)).status_code == 401
    direct = httpx.get(deployment.direct + "/v1/whoami", headers=forged, timeout=10)
    assert direct.status_code == 401


def test_a_certificate_from_another_ca_does_not_get_through_the_handshake(
    deployment: Deployment, tmp_path: Path
) -> None:
    """HAProxy verifies the certificate it asks for: one from a CA it does not trust fails the
    TLS handshake (while a client with no certificate gets through the same proxy to an
    answer: the path itself works)."""
    with deployment.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 200
    _, cert_file, key_file = _holder(tmp_path, Authority.root("Stranger CA"), "stranger")
    with deployment.client((cert_file, key_file)) as http, pytest.raises(httpx.HTTPError):
        http.post("/oauth/token", data=TOKEN_FORM)


def test_the_doc_gives_operators_the_configuration_tested_here() -> None:
    """docs/authentication.md's HAProxy example is the frontend this test runs."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "authentication.md").read_text()
    for line in HAPROXY_CONFIG.splitlines():
        stripped = line.strip()
        if stripped.startswith(("acl", "http-request", "option forwardfor")):
            assert stripped.replace("{{", "{").replace("}}", "}") in doc, stripped
    assert "verify optional" in doc


def test_the_adapter_client_speaks_mutual_tls(
    deployment: Deployment, agency_ca: Authority, tmp_path: Path
) -> None:
    """adapters.client.GatewayClient with ``mutual_tls``: its httpx client presents the
    certificate; it gets a Bearer token bound to it and calls with it, no DPoP proof."""
    _, cert_file, key_file = _holder(tmp_path, agency_ca, "adapter")

    async def whoami() -> dict[str, Any]:
        context = deployment.context((cert_file, key_file))
        async with httpx.AsyncClient(verify=context, timeout=10) as http:
            client = GatewayClient(IDENTITY, deployment.url, http, mutual_tls=True)
            answer = await client.call("GET", "/v1/whoami", ContextHeaders(**CONTEXT_ARGS))
            assert isinstance(answer, httpx.Response)
            assert "dpop" not in {name.lower() for name in answer.request.headers}
            assert answer.request.headers["authorization"].startswith("Bearer ")
            return dict(answer.json())

    assert asyncio.run(whoami())["agency_id"] == "police-avon"


CONTEXT_ARGS = {
    "legal_basis": CONTEXT["MAPPA-Legal-Basis"],
    "purpose": CONTEXT["MAPPA-Purpose"],
    "officer": CONTEXT["MAPPA-Officer"],
}
