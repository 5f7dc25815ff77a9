"""The verified-token memory: a token checked once is not trusted beyond what can change.

A remembered token skips the JSON and the signature on its next presentation, never the checks
whose answer moves: its signing key retired since (a compromise) refuses it at once, and its
expiry is judged against the clock of each call. The memory is bounded and keyed by the exact
token text, issuer and audience.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from gateway.oauth.jose import JoseRefused
from gateway.oauth.signing import TokenSigner, VerifiedTokens
from gateway.oauth.tokens import AccessToken, issue_access_token, verify_access_token
from keys import FileKeyRepository, LocalKek, Purpose, generate_development_keys

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
ISSUER = "https://gateway.example"
AUDIENCE = "https://gateway.example/v1"


@pytest.fixture
def repository(tmp_path: Path) -> FileKeyRepository:
    return generate_development_keys(
        tmp_path / "keys", LocalKek(os.urandom(32)), "development", now=T0
    )


@pytest.fixture
def signer(repository: FileKeyRepository) -> TokenSigner:
    return TokenSigner.from_repository(repository)


def _issue(signer: TokenSigner, *, client_id: str = "police-a", lifetime: int = 300) -> str:
    token, _ = issue_access_token(
        signer,
        issuer=ISSUER,
        audience=AUDIENCE,
        client_id=client_id,
        agency_type="police",
        role="responsible_authority",
        area="barnet",
        scopes=["case:read"],
        jkt="x" * 43,
        now=T0,
        lifetime=lifetime,
    )
    return token


def _verify(
    signer: TokenSigner, token: str, now: dt.datetime, *, audience: str = AUDIENCE
) -> AccessToken:
    return verify_access_token(token, signer, issuer=ISSUER, audience=audience, now=now, leeway=30)


def test_a_verified_token_is_remembered_and_answers_the_same(signer: TokenSigner) -> None:
    token = _issue(signer)
    first = _verify(signer, token, T0)
    assert len(signer.verified) == 1
    again = _verify(signer, token, T0 + dt.timedelta(seconds=10))
    assert again == first
    assert len(signer.verified) == 1


def test_retiring_the_signing_key_refuses_a_remembered_token_at_once(
    signer: TokenSigner, repository: FileKeyRepository
) -> None:
    token = _issue(signer)
    _verify(signer, token, T0)
    kid = repository.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    repository.retire(Purpose.TOKEN_SIGNING, kid, now=T0)
    with pytest.raises(JoseRefused) as refused:
        _verify(signer, token, T0 + dt.timedelta(seconds=1))
    assert refused.value.reason == "key_retired"
    assert len(signer.verified) == 0  # forgotten, not kept for a later look-up


def test_a_remembered_token_still_expires(signer: TokenSigner) -> None:
    token = _issue(signer, lifetime=60)
    _verify(signer, token, T0)
    _verify(signer, token, T0 + dt.timedelta(seconds=60 + 29))  # within the leeway
    with pytest.raises(JoseRefused) as refused:
        _verify(signer, token, T0 + dt.timedelta(seconds=60 + 30))
    assert refused.value.reason == "token_expired"
    assert len(signer.verified) == 0


def test_a_token_differing_by_one_character_is_verified_afresh_and_refused(
    signer: TokenSigner,
) -> None:
    token = _issue(signer)
    _verify(signer, token, T0)
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(JoseRefused) as refused:
        _verify(signer, f"{header}.{payload}.{flipped}", T0)
    assert refused.value.reason == "bad_signature"
    assert len(signer.verified) == 1


def test_the_audience_is_part_of_what_is_remembered(signer: TokenSigner) -> None:
    token = _issue(signer)
    _verify(signer, token, T0)
    with pytest.raises(JoseRefused) as refused:
        _verify(signer, token, T0, audience="https://elsewhere.example/v1")
    assert refused.value.reason == "token_aud"


def test_a_refused_token_is_not_remembered(signer: TokenSigner) -> None:
    token = _issue(signer, lifetime=60)
    with pytest.raises(JoseRefused):
        _verify(signer, token, T0 + dt.timedelta(hours=1))
    assert len(signer.verified) == 0


def test_the_memory_is_bounded_least_recently_used_first_out(signer: TokenSigner) -> None:
    signer.verified = VerifiedTokens(size=2)
    a, b, c = (_issue(signer, client_id=f"agency-{n}") for n in "abc")
    _verify(signer, a, T0)
    _verify(signer, b, T0)
    _verify(signer, a, T0)  # a is now the most recently used
    _verify(signer, c, T0)  # b goes
    assert len(signer.verified) == 2
    assert signer.verified.get((a, ISSUER, AUDIENCE)) is not None
    assert signer.verified.get((b, ISSUER, AUDIENCE)) is None


def test_a_parsed_jwk_is_shared_read_only_and_a_refused_one_is_refused_each_time() -> None:
    from joserfc.jwk import ECKey

    from gateway.oauth.jwks import KeyRefused, parse_jwk

    public = ECKey.generate_key("P-256", private=True).as_dict(private=False)
    first, second = parse_jwk(public), parse_jwk(dict(reversed(list(public.items()))))
    assert first is second  # the same key, whatever the member order: parsed once
    assert first.thumbprint == first.key.thumbprint()
    with pytest.raises(TypeError):
        first.jwk["kid"] = "someone-else"  # type: ignore[index]
    private = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    for _ in range(2):
        with pytest.raises(KeyRefused):
            parse_jwk(private)
