"""Development X.509 (keys/x509.py): what the CA may sign, what a server certificate says, when
each expires, and that the relay's per-partner TLS context trusts one partner's CA alone."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.delivery.push import partner_ssl_context
from keys import (
    LOOPBACK_HOSTS,
    DevelopmentCA,
    KeyInvalid,
    ServerCertificate,
    certificate_expires,
)
from keys._hazmat import x509_private_key_pem, x509_server_certificate

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


@pytest.fixture(scope="module")
def ca() -> DevelopmentCA:
    return DevelopmentCA.generate("Barnet Homes demo CA", now=NOW)


def test_ca_signs_end_entities_only_and_only_for_the_loopback(ca: DevelopmentCA) -> None:
    """Basic constraints CA with path length 0, keyCertSign/cRLSign, name constraints to the
    loopback hosts, all critical; self-signed."""
    cert = _cert(ca.certificate_pem)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.key_encipherment
    names = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert names.critical and names.value.excluded_subtrees is None
    assert set(names.value.permitted_subtrees or []) == {
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }
    cert.verify_directly_issued_by(cert)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"


def test_server_certificate_names_the_loopback_for_server_auth_only(ca: DevelopmentCA) -> None:
    """SAN holds 127.0.0.1 and ::1 as IP addresses and localhost as a DNS name; not a CA;
    digital signature only; serverAuth only; issued by the CA."""
    server = ca.issue_server(now=NOW)
    cert = _cert(server.certificate_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(_cert(ca.certificate_pem))
    assert "PRIVATE KEY" in server.private_key_pem
    assert "PRIVATE KEY" not in repr(server) and "PRIVATE KEY" not in repr(ca)


def test_expiry_follows_the_injected_clock_and_never_outlives_the_ca() -> None:
    """CA 90 days, server 30 days from now, backdated 5 minutes; a long server validity is cut
    at the CA's expiry; certificate_expires reads it back."""
    ca = DevelopmentCA.generate("short CA", now=NOW, valid_for=dt.timedelta(days=10))
    assert certificate_expires(ca.certificate_pem) == NOW + dt.timedelta(days=10)
    assert _cert(ca.certificate_pem).not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    server = ca.issue_server(now=NOW + dt.timedelta(days=1))
    assert certificate_expires(server.certificate_pem) == NOW + dt.timedelta(days=10)
    default = DevelopmentCA.generate("default CA", now=NOW)
    assert certificate_expires(default.certificate_pem) == NOW + dt.timedelta(days=90)
    issued = default.issue_server(now=NOW)
    assert certificate_expires(issued.certificate_pem) == NOW + dt.timedelta(days=30)


@pytest.mark.parametrize(
    "hosts",
    [
        ("example.org",),  # a name the CA may not vouch for
        ("127.0.0.1", "10.0.0.7"),  # one loopback address, one that is not
        (),  # no host at all
    ],
)
def test_ca_refuses_hosts_outside_its_own(ca: DevelopmentCA, hosts: tuple[str, ...]) -> None:
    """issue_server names only hosts the CA was made for."""
    with pytest.raises(KeyInvalid):
        ca.issue_server(hosts, now=NOW)


def test_bad_inputs_are_refused() -> None:
    """No name, no hosts, a naive clock, a PEM that is not a certificate."""
    with pytest.raises(KeyInvalid):
        DevelopmentCA.generate("")
    with pytest.raises(KeyInvalid):
        DevelopmentCA.generate("CA", hosts=())
    with pytest.raises(ValueError, match="timezone"):
        DevelopmentCA.generate("CA", now=dt.datetime(2026, 1, 1))
    with pytest.raises(KeyInvalid):
        certificate_expires("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_saved_files_and_their_modes(ca: DevelopmentCA, tmp_path: Path) -> None:
    """ca.pem holds the certificate only; server.key is 0600 and replaced, never appended to."""
    ca_path = ca.save(tmp_path / "tls")
    assert ca_path.read_text() == ca.certificate_pem
    assert "PRIVATE" not in ca_path.read_text()
    server = ca.issue_server(now=NOW)
    cert_file, key_file = server.save(tmp_path / "tls")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    again = ca.issue_server(now=NOW)
    again.save(tmp_path / "tls")
    assert key_file.read_text() == again.private_key_pem
    assert cert_file.read_text() == again.certificate_pem
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


# -- the partner's TLS context (the relay's) over a real handshake on 127.0.0.1 -------------


async def _serve(server: ServerCertificate, directory: Path) -> AsyncIterator[int]:
    cert_file, key_file = server.save(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    listening = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield int(listening.sockets[0].getsockname()[1])
    finally:
        listening.close()
        await listening.wait_closed()


async def _handshake(port: int, ca_pem: str, host: str = "127.0.0.1") -> bytes:
    context = partner_ssl_context(ca_pem)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=host
    )
    try:
        return await reader.read(2)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


@pytest.fixture(scope="module")
def live_ca() -> DevelopmentCA:
    """A CA on the real clock, for handshakes (OpenSSL checks validity against now)."""
    return DevelopmentCA.generate("Barnet Homes live CA")


@pytest.fixture
async def endpoint(live_ca: DevelopmentCA, tmp_path: Path) -> AsyncIterator[int]:
    async for port in _serve(live_ca.issue_server(), tmp_path):
        yield port


async def test_partner_context_accepts_its_own_ca(endpoint: int, live_ca: DevelopmentCA) -> None:
    """The endpoint's certificate from the partner's registered CA completes the handshake,
    by IP address and by the name localhost."""
    assert await _handshake(endpoint, live_ca.certificate_pem) == b"ok"
    assert await _handshake(endpoint, live_ca.certificate_pem, host="localhost") == b"ok"


async def test_partner_context_refuses_a_certificate_from_another_ca(endpoint: int) -> None:
    """Another partner's CA (or any other) cannot vouch for this endpoint."""
    other = DevelopmentCA.generate("another partner's CA")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(endpoint, other.certificate_pem)


async def test_partner_context_refuses_a_name_the_certificate_does_not_hold(
    endpoint: int, live_ca: DevelopmentCA
) -> None:
    """The host name is checked: the right CA, the wrong name."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(endpoint, live_ca.certificate_pem, host="gateway.example.org")


async def test_name_constraints_hold_even_for_a_certificate_the_ca_key_signed(
    live_ca: DevelopmentCA, tmp_path: Path
) -> None:
    """A certificate for a host outside the CA's constraints, signed with the CA's key behind
    issue_server's back, is refused by the TLS library itself."""
    now = dt.datetime.now(dt.UTC)
    key, pem = x509_server_certificate(
        live_ca._key,
        live_ca.certificate_pem,
        "rogue",
        ("gateway.example.org",),
        now - dt.timedelta(minutes=5),
        now + dt.timedelta(days=1),
    )
    rogue = ServerCertificate(pem, x509_private_key_pem(key))
    async for port in _serve(rogue, tmp_path):
        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(port, live_ca.certificate_pem, host="gateway.example.org")


async def test_partner_context_refuses_an_expired_certificate(
    live_ca: DevelopmentCA, tmp_path: Path
) -> None:
    """A certificate past its notAfter is refused, though its CA is the registered one."""
    now = dt.datetime.now(dt.UTC)
    stale = live_ca.issue_server(now=now - dt.timedelta(days=3), valid_for=dt.timedelta(days=1))
    async for port in _serve(stale, tmp_path):
        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(port, live_ca.certificate_pem)


def test_loopback_hosts_are_the_default() -> None:
    """The demo's endpoints are on this machine only."""
    assert LOOPBACK_HOSTS == ("localhost", "127.0.0.1", "::1")
