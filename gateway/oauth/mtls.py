"""Mutual TLS through a TLS-terminating proxy: RFC 9440 ``Client-Cert``, checked for RFC 8705.

The gateway does not terminate TLS itself in production: a proxy in front does, asks the
client for its certificate, and forwards it in ``Client-Cert`` (an RFC 8941 byte sequence of
the DER, ``:base64:``), with any intermediate certificates in ``Client-Cert-Chain`` (a list of
them). Those headers are believed only when the TCP peer is one of ``MAPPA_TRUSTED_PROXIES``
(the gateway is served with ``proxy_headers`` off, so the peer is the socket's, not an
``X-Forwarded-For`` claim); from anyone else they are ignored, so a client that reaches the app
directly cannot claim a certificate it does not hold. A header from a trusted proxy that does
not parse is refused, not ignored: the proxy is broken or being abused.

Two uses (RFC 8705):

- ``tls_client_auth`` at the token endpoint (section 2.1): the certificate must chain, under
  RFC 5280 rules (``cryptography``'s client verifier, at the request's time), to the CA the
  agency registered, and its subject must be the distinguished name the agency registered.
  Trusting only the agency's own CA means one agency's CA cannot vouch for another agency.
- certificate-bound access tokens (section 3): the token carries ``cnf.x5t#S256``, the
  SHA-256 thumbprint of the certificate's DER, and every call with it must come through the
  proxy with that same certificate.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from starlette.requests import Request

from gateway.logs import get_logger
from gateway.oauth.jose import b64url
from keys.x509 import certificate_der

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = [
    "AUTH_METHOD",
    "MAX_CERTIFICATE_BYTES",
    "MAX_CHAIN",
    "CertificateRefused",
    "ClientCertificate",
    "TrustedProxies",
    "certificate_fingerprint",
    "client_address",
    "forwarded_certificate",
    "parse_ca_pem",
    "parse_subject_dn",
    "presented_certificate",
    "trusted_proxies",
    "verify_client_certificate",
]

log = get_logger("gateway.oauth.mtls")

AUTH_METHOD = "tls_client_auth"
#: A certificate's DER, and the whole Client-Cert-Chain header, are at most this long.
MAX_CERTIFICATE_BYTES = 8_192
#: At most this many intermediates in Client-Cert-Chain (and chain depth under the CA).
MAX_CHAIN = 4
_SF_BINARY = re.compile(r"^:([A-Za-z0-9+/]*={0,2}):$")


class CertificateRefused(Exception):
    """A forwarded certificate that cannot be used; ``reason`` is for the audit only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """The client certificate a trusted proxy forwarded, parsed (not yet verified)."""

    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    #: RFC 8705 ``x5t#S256``: base64url (unpadded) SHA-256 of the certificate's DER.
    thumbprint: str


class TrustedProxies:
    """The addresses (or networks) whose ``Client-Cert`` header is believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


@lru_cache(maxsize=4)
def trusted_proxies(entries: tuple[str, ...]) -> TrustedProxies:
    """:class:`TrustedProxies` for the setting's entries, parsed once."""
    return TrustedProxies(entries)


def client_address(request: Request, proxies: TrustedProxies) -> str:
    """The address a request came from, for per-address quotas: the socket's peer, or, when
    the peer is a trusted proxy, the address that proxy appended to ``X-Forwarded-For`` (the
    last entry; what the client itself put before it is not believed). Behind a proxy every
    request's peer is the proxy, and one quota would otherwise be shared by every agency.

    An IPv6 address counts as its /64 network (one host is routinely given a whole /64, and a
    bucket per address would let it open billions of fresh ones); an IPv4-mapped one as the
    IPv4 address."""
    peer = request.client.host if request.client else "unknown"
    if peer not in proxies:
        return _quota_key(peer)
    forwarded = request.headers.getlist("x-forwarded-for")
    last = forwarded[-1].rsplit(",", 1)[-1].strip() if forwarded else ""
    try:
        return _quota_key(str(ipaddress.ip_address(last)))
    except ValueError:
        return _quota_key(peer)


def _quota_key(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test client's name): itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def presented_certificate(request: Request, state: GatewayState) -> ClientCertificate | None:
    """:func:`forwarded_certificate` under the gateway's settings, a dropped header counted in
    ``mappa_gateway_client_cert_ignored``."""
    metrics = state.metrics
    return forwarded_certificate(
        request,
        trusted_proxies(state.settings.trusted_proxies),
        metrics.client_cert_ignored.inc if metrics is not None else None,
    )


def _sf_binary(value: str) -> bytes:
    """An RFC 8941 byte sequence (``:base64:``) strictly decoded; empty is refused."""
    match = _SF_BINARY.fullmatch(value.strip())
    if match is None or not match.group(1):
        raise CertificateRefused("client_cert_malformed")
    try:
        return base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateRefused("client_cert_malformed") from exc


def _certificate(der: bytes) -> x509.Certificate:
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise CertificateRefused("client_cert_too_large")
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateRefused("client_cert_malformed") from exc
    return certificate


def forwarded_certificate(
    request: Request, proxies: TrustedProxies, ignored: Callable[[], None] | None = None
) -> ClientCertificate | None:
    """The certificate a trusted proxy forwarded with ``request``, or None when there is none
    or the peer is not a trusted proxy (then the headers are ignored: logged, and ``ignored``
    is called to count it). Raises :class:`CertificateRefused` for a header from a trusted
    proxy that does not parse."""
    headers = request.headers
    sent = headers.getlist("client-cert")
    chain_sent = headers.getlist("client-cert-chain")
    if not sent and not chain_sent:
        return None
    peer = request.client.host if request.client else None
    if peer not in proxies:
        # No address, no certificate detail: only that the header was dropped.
        log.warning("client_cert_ignored", code="untrusted_peer")
        if ignored is not None:
            ignored()
        return None
    if len(sent) != 1:
        raise CertificateRefused("client_cert_missing" if not sent else "client_cert_repeated")
    der = _sf_binary(sent[0])
    certificate = _certificate(der)
    chain_value = ",".join(chain_sent)
    if len(chain_value) > MAX_CERTIFICATE_BYTES * (MAX_CHAIN + 1):
        raise CertificateRefused("client_cert_chain_too_large")
    members = [member for member in chain_value.split(",") if member.strip()]
    if len(members) > MAX_CHAIN:
        raise CertificateRefused("client_cert_chain_too_long")
    intermediates = tuple(_certificate(_sf_binary(member)) for member in members)
    return ClientCertificate(certificate, intermediates, _thumbprint(der))


@lru_cache(maxsize=256)
def parse_ca_pem(pem: str) -> tuple[x509.Certificate, ...]:
    """The CA certificates in a registered PEM bundle; ValueError when there are none or one
    is not a CA certificate."""
    certificates = tuple(x509.load_pem_x509_certificates(pem.encode("ascii")))
    for certificate in certificates:
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound as exc:
            raise ValueError("a client CA certificate has no basicConstraints") from exc
        if not constraints.value.ca:
            raise ValueError("a client CA certificate is not a CA (basicConstraints cA false)")
    return certificates


def _thumbprint(der: bytes) -> str:
    return b64url(hashlib.sha256(der).digest())


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """The certificate's SHA-256 thumbprint as RFC 8705 writes it (base64url, unpadded)."""
    return _thumbprint(certificate_der(certificate))


def parse_subject_dn(value: str) -> x509.Name:
    """An RFC 4514 distinguished name, as an agency registers ``tls_client_auth_subject_dn``;
    ValueError if it does not parse or is empty."""
    name = x509.Name.from_rfc4514_string(value)
    if not list(name):
        raise ValueError("an empty distinguished name")
    return name


def verify_client_certificate(
    presented: ClientCertificate, *, ca_pem: str, subject_dn: str, now: dt.datetime
) -> None:
    """Raise :class:`CertificateRefused` unless ``presented`` chains to ``ca_pem`` at ``now``
    (RFC 5280 path validation, client-certificate profile) and its subject is ``subject_dn``
    (compared as names, attribute by attribute, not as strings)."""
    try:
        anchors = parse_ca_pem(ca_pem)
        expected = parse_subject_dn(subject_dn)
    except ValueError as exc:
        raise CertificateRefused("client_registration_invalid") from exc
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(now)
        .max_chain_depth(MAX_CHAIN)
        .build_client_verifier()
    )
    try:
        verifier.verify(presented.certificate, list(presented.intermediates))
    except VerificationError as exc:
        raise CertificateRefused("client_cert_untrusted") from exc
    if presented.certificate.subject != expected:
        raise CertificateRefused("client_cert_subject_mismatch")
