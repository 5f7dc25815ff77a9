"""Development X.509: a CA that vouches only for named hosts, and the TLS server certificates it
issues, as PEM.

For the demo and the tests, where a partner's push endpoint runs on the loopback: each partner
gets its own CA, the gateway registers that CA with the partner's endpoint, and the relay's
per-partner SSL context trusts it alone. A real partner brings its own CA instead.

The CA is narrow on purpose: it may sign end-entity certificates only (``pathLenConstraint``
0), only for the hosts it was made for (name constraints, checked by the TLS library), and its
private key never leaves the process (:meth:`DevelopmentCA.save` writes the certificate only).
A lost CA is replaced, not restored: make a new one and register it again.

Server certificates carry the hosts as subject alternative names (IP addresses as such),
``serverAuth`` only, a digital-signature key usage, and expire no later than their CA.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._hazmat import (
    x509_ca_certificate,
    x509_der,
    x509_not_after,
    x509_private_key_pem,
    x509_server_certificate,
)
from .errors import KeyInvalid

__all__ = [
    "CA_FILE",
    "CERTIFICATE_FILE",
    "LOOPBACK_HOSTS",
    "PRIVATE_KEY_FILE",
    "DevelopmentCA",
    "ServerCertificate",
    "certificate_der",
    "certificate_expires",
]

#: What a demo endpoint on this machine may be called.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_FILE = "ca.pem"
CERTIFICATE_FILE = "server.pem"
PRIVATE_KEY_FILE = "server.key"
_CA_VALIDITY = dt.timedelta(days=90)
_SERVER_VALIDITY = dt.timedelta(days=30)
#: Backdating, for clocks a little apart.
_SKEW = dt.timedelta(minutes=5)


def _now(now: dt.datetime | None) -> dt.datetime:
    at = now or dt.datetime.now(dt.UTC)
    if at.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return at


def _write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to a fresh file of ``mode`` (any old one is replaced, never reopened)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def certificate_der(certificate: object) -> bytes:
    """The DER encoding of a parsed ``cryptography`` X.509 certificate."""
    return x509_der(certificate)  # type: ignore[arg-type]


def certificate_expires(pem: str) -> dt.datetime:
    """When the first certificate of ``pem`` expires (UTC); :class:`KeyInvalid` if none."""
    return x509_not_after(pem)


@dataclass(frozen=True)
class ServerCertificate:
    """A TLS server certificate and its private key (PEM), for one server's use only."""

    certificate_pem: str
    private_key_pem: str = field(repr=False)

    def save(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``server.pem`` (0644) and ``server.key`` (0600) into ``directory`` (0700)."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        certificate, key = folder / CERTIFICATE_FILE, folder / PRIVATE_KEY_FILE
        _write(key, self.private_key_pem, 0o600)
        _write(certificate, self.certificate_pem, 0o644)
        return certificate, key


class DevelopmentCA:
    """A CA for ``hosts`` only, its key held in memory: issue, save the certificate, drop it."""

    __slots__ = ("_key", "certificate_pem", "hosts", "not_after")

    def __init__(
        self, key: object, certificate_pem: str, hosts: Sequence[str], not_after: dt.datetime
    ) -> None:
        self._key = key
        self.certificate_pem = certificate_pem
        self.hosts = tuple(hosts)
        self.not_after = not_after

    def __repr__(self) -> str:
        return f"DevelopmentCA(hosts={self.hosts!r}, not_after={self.not_after.isoformat()})"

    @classmethod
    def generate(
        cls,
        name: str,
        *,
        hosts: Sequence[str] = LOOPBACK_HOSTS,
        now: dt.datetime | None = None,
        valid_for: dt.timedelta = _CA_VALIDITY,
    ) -> DevelopmentCA:
        """A fresh CA named ``name`` that may vouch for ``hosts`` only."""
        if not name or not hosts:
            raise KeyInvalid("a development CA needs a name and at least one host")
        at = _now(now)
        key, pem = x509_ca_certificate(name, hosts, at - _SKEW, at + valid_for)
        return cls(key, pem, hosts, at + valid_for)

    def issue_server(
        self,
        hosts: Sequence[str] = LOOPBACK_HOSTS,
        *,
        name: str = "development TLS server",
        now: dt.datetime | None = None,
        valid_for: dt.timedelta = _SERVER_VALIDITY,
    ) -> ServerCertificate:
        """A server certificate for ``hosts`` (all of them among the CA's), expiring no later
        than the CA."""
        outside = [host for host in hosts if host not in self.hosts]
        if not hosts or outside:
            raise KeyInvalid(f"this CA vouches for {', '.join(self.hosts)} only")
        at = _now(now)
        until = min(at + valid_for, self.not_after)
        key, pem = x509_server_certificate(
            self._key, self.certificate_pem, name, hosts, at - _SKEW, until
        )
        return ServerCertificate(pem, x509_private_key_pem(key))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the CA certificate (never its key) as ``ca.pem`` into ``directory``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / CA_FILE
        _write(path, self.certificate_pem, 0o644)
        return path
