"""deploy/haproxy/haproxy.cfg: valid for HAProxy (``haproxy -c``), and, run in front of a real
gateway process, doing what deploy/README.md says it does: mutual TLS with the agencies' CA and
CRL, the verified certificate forwarded as the gateway expects and a client's own Client-Cert
removed, /metrics closed, header blocks bounded, query strings kept out of its log, and
replicas taken out by their /readyz."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import http.server
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.store import Database
from keys.x509 import DevelopmentCA
from tests.deploy.support import DEPLOY, ENV_EXAMPLE, parse_environment_file
from tests.gateway.oauth.support import CONTEXT, Replica, free_port, replica_env
from tests.gateway.oauth.test_mtls import POLICE_DN, Authority
from tests.support import skip_or_fail_in_ci

CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
CERT_FOLDER = "/etc/haproxy/mappa/"
#: The local stand-in for HAProxy's source address (the one trusted proxy).
PROXY_SOURCE = "127.0.0.2"


def _haproxy() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        skip_or_fail_in_ci("HAProxy is not installed (make test installs it: apt-get haproxy)")
    return found


# -- the agency's PKI (tests/gateway/oauth/test_mtls.py's), certificates dated from now --------


def _issue(authority: Authority, folder: Path, name: str) -> tuple[x509.Certificate, Path, Path]:
    """A client certificate for the police DN, valid from an hour ago, written as NAME.pem and
    NAME.key."""
    now = dt.datetime.now(dt.UTC)
    certificate, key = authority.issue_with_key(days=7, not_before=now - dt.timedelta(hours=1))
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(Encoding.PEM))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return certificate, cert_file, key_file


def _crl(authority: Authority, revoked: x509.Certificate) -> str:
    """The authority's CRL, current for a week, revoking ``revoked``."""
    now = dt.datetime.now(dt.UTC)
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(revoked.serial_number)
        .revocation_date(now - dt.timedelta(minutes=5))
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=7))
        .add_revoked_certificate(entry)
        .sign(authority.key, hashes.SHA256())
    )
    return crl.public_bytes(Encoding.PEM).decode()


@dataclass
class Site:
    """The certificate files the configuration names, made for a test."""

    folder: Path
    agency_ca: Authority
    proxy_ca: Path
    revoked: tuple[x509.Certificate, Path, Path]


def _site(folder: Path) -> Site:
    folder.mkdir(parents=True, exist_ok=True)
    agency_ca = Authority.root("Avon and Somerset Police Issuing CA", path_length=0)
    revoked = _issue(agency_ca, folder, "revoked")
    (folder / "agency-cas.pem").write_text(agency_ca.pem)
    (folder / "agency-crls.pem").write_text(_crl(agency_ca, revoked[0]))
    proxy_authority = DevelopmentCA.generate("test proxy CA", hosts=("127.0.0.1",))
    served = proxy_authority.issue_server(("127.0.0.1",))
    (folder / "gateway.pem").write_text(served.certificate_pem + served.private_key_pem)
    proxy_ca = folder / "proxy-ca.pem"
    proxy_ca.write_text(proxy_authority.certificate_pem)
    return Site(folder, agency_ca, proxy_ca, revoked)


def _with_site_files(text: str, site: Site) -> str:
    return text.replace(CERT_FOLDER, f"{site.folder}/")


# -- the configuration as written ------------------------------------------------------------


def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    """``haproxy -c`` with the configuration as written, only the certificate files (which it
    loads while checking) pointed at test ones: valid, and not one warning."""
    haproxy = _haproxy()
    site = _site(tmp_path / "certs")
    config = tmp_path / "haproxy.cfg"
    config.write_text(_with_site_files(CONFIG.read_text(), site))
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "Configuration file is valid" in output
    assert "[WARNING]" not in output and "[ALERT]" not in output, output


def _directives() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in CONFIG.read_text().splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_the_configuration_keeps_the_gateways_proxy_contract() -> None:
    """What docs/authentication.md asks of the proxy, and the settings it depends on."""
    directives = _directives()
    (bind,) = [d for d in directives if d.startswith("bind ")]
    assert "verify optional" in bind and "ca-file " in bind and "crl-file " in bind
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets" in directives
    ciphers = next(d for d in directives if d.startswith("ssl-default-bind-ciphers "))
    assert all("GCM" in c or "CHACHA20" in c for c in ciphers.split()[1].split(":"))
    assert all(c.startswith("ECDHE-") for c in ciphers.split()[1].split(":"))
    removed = [d for d in directives if d.startswith("http-request del-header ")]
    set_cert = [d for d in directives if d.startswith("http-request set-header Client-Cert ")]
    for header in ("Client-Cert", "Client-Cert-Chain", "X-Forwarded-For"):
        assert f"http-request del-header {header}" in removed
    assert set_cert == [
        "http-request set-header Client-Cert :%[ssl_c_der,base64]: "
        "if { ssl_c_used } { ssl_c_verify 0 }"
    ]
    # The headers go before the certificate is set, and forwardfor after the removal.
    assert directives.index(removed[0]) < directives.index(set_cert[0])
    assert "option forwardfor" in directives
    assert (
        "http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host gateway.mappa.example.org"
        in (directives)
    )
    host = parse_environment_file(ENV_EXAMPLE.read_text())["MAPPA_ISSUER"].split("//", 1)[1]
    assert host == "gateway.mappa.example.org"
    (default_server,) = [d for d in directives if d.startswith("default-server ")]
    source = default_server.split(" source ", 1)[1].split()[0]
    trusted = json.loads(parse_environment_file(ENV_EXAMPLE.read_text())["MAPPA_TRUSTED_PROXIES"])
    assert trusted == [source]


# -- the configuration in front of a real gateway --------------------------------------------


class _NotReady(http.server.BaseHTTPRequestHandler):
    """A replica that is up but not ready: 503 to everything; remembers what it was asked."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _local(text: str, *, port: int, ready: int, not_ready: int) -> str:
    """The configuration on this machine: listening on the loopback, logging to stdout,
    without the privileged global settings (user, chroot, admin socket), HAProxy's source
    address the loopback stand-in, the two replicas a real gateway and one never ready, checks
    every 300 ms. Everything else as written."""
    dropped = ("user ", "group ", "chroot ", "stats socket ")
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith(dropped)]
    text = "\n".join(lines) + "\n"
    replacements = [
        ("log /dev/log local0 info", "log stdout format raw local0 info"),
        ("bind :443 ", f"bind 127.0.0.1:{port} "),
        ("source 10.0.1.5", f"source {PROXY_SOURCE}"),
        ("check inter 5s", "check inter 300ms"),
        ("server gateway-1 10.0.1.11:8000", f"server gateway-1 127.0.0.1:{ready}"),
        ("server gateway-2 10.0.1.12:8000", f"server gateway-2 127.0.0.1:{not_ready}"),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@dataclass
class Running:
    url: str
    direct: str
    site: Site
    log: Path

    def context(self, certificate: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.site.proxy_ca))
        if certificate is not None:
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
        return context

    def client(self, certificate: tuple[Path, Path] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.context(certificate), timeout=10)


def _wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


@pytest.fixture
def running(tmp_path: Path, sqlite_url: str, gateway_keys: tuple[Path, Path]) -> Iterator[Running]:
    haproxy = _haproxy()
    site = _site(tmp_path / "certs")

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
                jwks=AgencyIdentity.generate("police-avon").public_jwks(),
            )
            await agencies.set_tls_client_auth(
                db, "police-avon", subject_dn=POLICE_DN, ca_pem=site.agency_ca.pem
            )
        finally:
            await db.dispose()

    asyncio.run(register())
    trusted = parse_environment_file(ENV_EXAMPLE.read_text())["MAPPA_TRUSTED_PROXIES"]
    env = {
        **replica_env(sqlite_url, *gateway_keys),
        "MAPPA_TRUSTED_PROXIES": trusted.replace("10.0.1.5", PROXY_SOURCE),
    }
    gateway = Replica(env, tmp_path / "gateway.log", "--no-proxy-headers")
    _NotReady.seen = []
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotReady)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        _with_site_files(
            _local(
                CONFIG.read_text(),
                port=port,
                ready=gateway.port,
                not_ready=stub.server_address[1],
            ),
            site,
        )
    )
    log = tmp_path / "haproxy.log"
    proxy: subprocess.Popen[bytes] | None = None
    with log.open("wb") as out:
        try:
            gateway.wait_ready()
            proxy = subprocess.Popen(
                [haproxy, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
            _wait_for(
                lambda: "gateway-2 is DOWN" in log.read_text(errors="replace"),
                "HAProxy did not take the replica that is not ready out",
            )
            yield Running(f"https://127.0.0.1:{port}", gateway.url, site, log)
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(timeout=10)
            stub.shutdown()
            stub.server_close()
            gateway.stop()


def _thumbprint(certificate: x509.Certificate) -> str:
    digest = hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _client_cert_header(certificate: x509.Certificate) -> str:
    return ":" + base64.b64encode(certificate.public_bytes(Encoding.DER)).decode() + ":"


TOKEN_FORM = {"grant_type": "client_credentials", "client_id": "police-avon"}


@pytest.mark.slow
def test_in_front_of_a_real_gateway(running: Running, tmp_path: Path) -> None:
    site = running.site
    certificate, cert_file, key_file = _issue(site.agency_ca, tmp_path, "police")

    # The verified certificate reaches the gateway as it expects: a token bound to it.
    with running.client((cert_file, key_file)) as http:
        issued = http.post("/oauth/token", data=TOKEN_FORM)
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        assert issued.json()["token_type"] == "Bearer"
        assert _claims(token)["cnf"] == {"x5t#S256": _thumbprint(certificate)}
        bearer = {"Authorization": f"Bearer {token}", **CONTEXT}
        whoami = http.get("/v1/whoami", headers=bearer)
        assert whoami.status_code == 200, whoami.text
        assert whoami.json()["agency_id"] == "police-avon"

    # A client's own Client-Cert (and chain) is removed: without a certificate, no token.
    forged = {"Client-Cert": _client_cert_header(certificate), "Client-Cert-Chain": ":AAAA:"}
    with running.client() as anonymous:
        assert anonymous.post("/oauth/token", data=TOKEN_FORM, headers=forged).status_code == 401
        assert anonymous.get("/v1/whoami", headers={**bearer, **forged}).status_code == 401
        # /metrics is not served through the proxy (the gateway's 404 would look the same, so
        # check it is HAProxy's: the gateway's problem documents carry a request_id).
        metrics = anonymous.get("/metrics")
        assert metrics.status_code == 404 and "request_id" not in metrics.json()
        # A header block beyond the proxy's buffer is refused before any replica.
        assert anonymous.get("/healthz", headers={"X-Filler": "a" * 20_000}).status_code == 400
        # A declared body over the gateway's 1 MiB limit is refused here too.
        assert _declared_body(running, 2_000_000) == 413
        # The query string stays out of the proxy's log.
        assert anonymous.get("/healthz", params={"officer": "query-marker-4521"}).is_success

    # A revoked certificate (in agency-crls.pem) fails the handshake; so does another CA's.
    _, revoked_cert, revoked_key = site.revoked
    stranger = _issue(Authority.root("Stranger CA"), tmp_path, "stranger")
    for files in ((revoked_cert, revoked_key), stranger[1:]):
        with running.client(files) as refused, pytest.raises(httpx.HTTPError):
            refused.post("/oauth/token", data=TOKEN_FORM)

    # The forged header sent straight to the replica is ignored there (not the trusted proxy).
    direct = httpx.post(running.direct + "/oauth/token", data=TOKEN_FORM, headers=forged)
    assert direct.status_code == 401

    # Health checks asked the replicas' /readyz with the issuer's host; the ready one stayed in.
    assert ("/readyz", "gateway.mappa.example.org") in _NotReady.seen
    log = running.log.read_text(errors="replace")
    assert "gateway-1 is DOWN" not in log
    assert "/healthz" in log and "query-marker-4521" not in log
    assert re.search(r"POST /oauth/token TLSv1\.[23] 1 0", log), log


def _declared_body(running: Running, length: int) -> int:
    """The status HAProxy answers a POST that declares ``length`` bytes and sends none."""
    raw = socket.create_connection(("127.0.0.1", int(running.url.rsplit(":", 1)[1])), timeout=10)
    with running.context().wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(
            b"POST /v1/referrals HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/jose\r\n"
            b"Content-Length: %d\r\n\r\n" % length
        )
        answer = conn.recv(4096).decode(errors="replace")
    return int(answer.split(" ", 2)[1])
