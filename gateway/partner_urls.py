"""The one check of a URL a partner registers and the gateway then calls: a ``jwks_uri`` it
fetches keys from, a push endpoint it delivers to.

A URL is at most 500 printable ASCII characters (no whitespace, no control character: a
host is written in punycode, a path percent-encoded), https, with a host, without credentials
(``user:pw@``) or a fragment. When the host is an IP literal, in any of the forms the resolver
takes (``169.254.169.254``, ``[fe80::1]``, ``2852039166``, ``0xa9.0xfe.0xa9.0xfe``,
``[::ffff:127.0.0.1]``), link-local addresses (169.254.0.0/16, fe80::/10, where the cloud metadata
service answers) and the metadata service's other address (fd00:ec2::254) are refused in every
profile, and the loopback (127.0.0.0/8, ::1, the unspecified address, ``localhost``) outside the
development profile. Names other than ``localhost`` are not resolved here: the gateway does not
vouch for what a partner's DNS says, only for what the operator typed.

``http://`` is accepted only where the caller allows it (the relay's development stand-ins) and
then only to the loopback.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import SplitResult, urlsplit

__all__ = ["PartnerUrlRefused", "check_partner_url"]

#: The width of the store's jwks_uri and endpoint_url columns.
MAX_URL_CHARS = 500
_PRINTABLE_ASCII = re.compile(r"[!-~]+")
_METADATA = {ipaddress.ip_address("fd00:ec2::254")}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PartnerUrlRefused(ValueError):
    """The URL is malformed or points where the gateway must never connect."""


def _ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` is a literal of, in any form the resolver takes, else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # 127.1, 2130706433, 0x7f.0.0.1: inet_aton's forms, which getaddrinfo also takes
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback(host: str, address: IPAddress | None) -> bool:
    if address is None:
        return host == "localhost" or host.endswith(".localhost")
    return address.is_loopback or address.is_unspecified


def check_partner_url(url: str, *, development: bool, http_loopback: bool = False) -> SplitResult:
    """``url`` parsed, or :class:`PartnerUrlRefused` saying why not. ``development`` lets the
    host be the loopback; ``http_loopback`` lets a loopback URL be plain http."""
    if not _PRINTABLE_ASCII.fullmatch(url) or len(url) > MAX_URL_CHARS:
        raise PartnerUrlRefused(
            f"a URL is 1-{MAX_URL_CHARS} printable ASCII characters, without spaces or control "
            "characters"
        )
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise PartnerUrlRefused("a URL must not carry credentials (user:password@)")
    if "#" in url:
        raise PartnerUrlRefused("a URL must not have a fragment")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise PartnerUrlRefused("the URL's port is not a port number") from exc
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise PartnerUrlRefused("a URL must be absolute, with a host")
    address = _ip_literal(host)
    if address is not None and (address.is_link_local or address in _METADATA):
        raise PartnerUrlRefused("the host is a link-local or cloud metadata address")
    loopback = _is_loopback(host, address)
    if loopback and not development:
        raise PartnerUrlRefused("the host is the loopback (development profile only)")
    if parts.scheme != "https" and not (parts.scheme == "http" and http_loopback and loopback):
        raise PartnerUrlRefused("a URL must be https")
    return parts
