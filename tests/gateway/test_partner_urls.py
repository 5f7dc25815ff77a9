"""The one check of a URL a partner registers (a jwks_uri, a push endpoint), and where it runs:
agencies add, partner endpoint, the JWKS fetcher; on both backends where a row would be written."""

from __future__ import annotations

import httpx
import pytest

from gateway import agencies
from gateway.delivery.endpoints import EndpointError, set_endpoint
from gateway.oauth.jwks import JwksFetcher, JwksUnavailable
from gateway.partner_urls import PartnerUrlRefused, check_partner_url
from gateway.store import Database
from gateway.store.models import Agency
from tests.gateway.oauth.support import ONBOARDING

#: Refused in every profile. Each row is an attack on the gateway's own network position.
ALWAYS_REFUSED = [
    pytest.param("https://user:pw@police.example/jwks", id="credentials"),
    pytest.param("https://@police.example/jwks", id="empty-userinfo"),
    pytest.param("https://police.example/jwks#kid", id="fragment"),
    pytest.param("https://police.example/jwks#", id="empty-fragment"),
    pytest.param("https://police.example/ x", id="space"),
    pytest.param("https://police.example/jwks\n", id="trailing-newline"),  # urlsplit drops it
    pytest.param("https://police.exa\tmple/jwks", id="tab"),  # urlsplit drops it
    pytest.param("https://police.example/\x1b[2J", id="ansi-escape"),
    pytest.param("https://police.example/\x85", id="c1"),
    pytest.param("https://p\u043ebice.example/jwks", id="non-ascii-host"),  # a Cyrillic o
    pytest.param("https://police.example:99999/jwks", id="bad-port"),
    pytest.param("https:///jwks", id="no-host"),
    pytest.param("/jwks.json", id="relative"),
    pytest.param("http://police.example/jwks", id="plain-http"),
    pytest.param("ftp://police.example/jwks", id="ftp"),
    pytest.param("https://169.254.169.254/latest/meta-data/", id="metadata"),
    pytest.param("https://169.254.1.1/", id="link-local"),
    pytest.param("https://2852039166/", id="metadata-as-integer"),  # getaddrinfo takes it
    pytest.param("https://0xa9.0xfe.0xa9.0xfe/", id="metadata-in-hex"),
    pytest.param("https://[::ffff:169.254.169.254]/", id="metadata-ipv4-mapped"),
    pytest.param("https://[fe80::1]/", id="ipv6-link-local"),
    pytest.param("https://[fe80::1%25eth0]/", id="ipv6-link-local-zone"),
    pytest.param("https://[fd00:ec2::254]/", id="aws-metadata-ipv6"),
    pytest.param("https://police.example/" + "a" * 500, id="longer-than-the-column"),
]

#: Refused outside the development profile, accepted in it (the demo, the tests' stubs).
LOOPBACK = [
    pytest.param("https://127.0.0.1:8443/jwks", id="ipv4"),
    pytest.param("https://127.1/jwks", id="ipv4-short"),
    pytest.param("https://2130706433/jwks", id="ipv4-integer"),
    pytest.param("https://[::1]/jwks", id="ipv6"),
    pytest.param("https://[::ffff:127.0.0.1]/jwks", id="ipv4-mapped"),
    pytest.param("https://0.0.0.0/jwks", id="unspecified"),
    pytest.param("https://localhost/jwks", id="localhost"),
    pytest.param("https://LOCALHOST./jwks", id="localhost-dot"),
    pytest.param("https://api.localhost/jwks", id="dot-localhost"),
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
@pytest.mark.parametrize("development", [False, True])
def test_a_url_the_gateway_must_never_call_is_refused(url: str, development: bool) -> None:
    """Credentials, fragments, whitespace, controls, non-https, link-local and metadata
    addresses (in any literal form) are refused in every profile, without echoing the URL."""
    with pytest.raises(PartnerUrlRefused) as refused:
        check_partner_url(url, development=development)
    assert "pw" not in str(refused.value) and "169.254" not in str(refused.value)


@pytest.mark.parametrize("url", LOOPBACK)
def test_the_loopback_is_for_the_development_profile_only(url: str) -> None:
    """A loopback host is refused outside development and accepted in it."""
    with pytest.raises(PartnerUrlRefused, match="loopback"):
        check_partner_url(url, development=False)
    assert check_partner_url(url, development=True).scheme == "https"


@pytest.mark.parametrize(
    "url",
    [
        "https://police.example/.well-known/jwks.json",
        "HTTPS://Police.Example:8443/jwks?v=2",
        "https://10.20.30.40/jwks",  # a partner on a private network (HSCN, PSN) is fine
        "https://[2001:db8::1]/jwks",
        "https://xn--polic-gra.example/jwks",  # an IDN host, in punycode
    ],
)
def test_an_ordinary_partner_url_is_accepted(url: str) -> None:
    """Public and private hosts, ports, queries, upper case and punycode pass."""
    assert check_partner_url(url, development=False).hostname


def test_plain_http_only_to_the_loopback_and_only_when_allowed() -> None:
    """http://127.0.0.1 passes with http_loopback in development; no other http does."""
    assert check_partner_url("http://127.0.0.1:9/d", development=True, http_loopback=True)
    for url, development in [
        ("http://127.0.0.1:9/d", False),
        ("http://partner.example/d", True),
    ]:
        with pytest.raises(PartnerUrlRefused):
            check_partner_url(url, development=development, http_loopback=True)
    with pytest.raises(PartnerUrlRefused, match="https"):
        check_partner_url("http://127.0.0.1:9/d", development=True)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://user:pw@169.254.169.254/ x\n", id="the-review-s-probe"),
        pytest.param("https://169.254.169.254/jwks", id="metadata"),
        pytest.param("https://127.0.0.1/jwks", id="loopback"),
        pytest.param("https://police.example/jwks\x00", id="nul"),
    ],
)
async def test_add_agency_refuses_a_jwks_uri_the_gateway_must_not_fetch(
    db: Database, url: str
) -> None:
    """`agencies add --jwks-uri` outside development: refused, nothing written, on both backends."""
    request = {**ONBOARDING, "jwks": None, "jwks_uri": url}
    with pytest.raises(agencies.AgencyError, match="jwks_uri refused"):
        await agencies.add_agency(db, **request)
    assert await agencies.list_agencies(db) == []


async def test_add_agency_takes_a_loopback_jwks_uri_in_development(db: Database) -> None:
    """The development profile may register a jwks_uri on the loopback (a local stand-in)."""
    request = {**ONBOARDING, "jwks": None, "jwks_uri": "https://127.0.0.1:8443/jwks"}
    view = await agencies.add_agency(db, **request, development=True)
    assert view.jwks_uri == "https://127.0.0.1:8443/jwks"


@pytest.mark.parametrize(
    ("url", "development"),
    [
        pytest.param("https://user:pw@partner.example/d", True, id="credentials"),
        pytest.param("https://169.254.169.254/d", True, id="metadata"),
        pytest.param("https://partner.example/d x", True, id="space"),
        pytest.param("https://127.0.0.1:8443/d", False, id="loopback-outside-development"),
        pytest.param("http://127.0.0.1:8443/d", False, id="http-loopback-outside-development"),
    ],
)
async def test_set_endpoint_refuses_a_url_the_relay_must_not_push_to(
    db: Database, url: str, development: bool
) -> None:
    """`partner endpoint` runs the same check; the agency keeps no endpoint, on both backends."""
    await agencies.add_agency(db, **ONBOARDING)
    with pytest.raises(EndpointError, match="endpoint refused"):
        await set_endpoint(db, "police-avon", url=url, development=development)
    async with db.read() as session:
        agency = await session.get(Agency, "police-avon")
        assert agency is not None and agency.endpoint_url is None


async def test_the_fetcher_refuses_a_stored_jwks_uri_the_check_refuses() -> None:
    """A row stored before the check (here, the metadata address) is not fetched."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"keys": []})

    fetcher = JwksFetcher(
        max_bytes=4096, cache_seconds=60, timeout=2.0, transport=httpx.MockTransport(handler)
    )
    with pytest.raises(JwksUnavailable, match="jwks_uri_refused"):
        await fetcher.keys("https://user:pw@169.254.169.254/latest/meta-data/")
    assert calls == []
