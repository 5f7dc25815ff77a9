"""The keys/ error tree: stable codes, opaque outward message, every joserfc error mapped."""

from __future__ import annotations

import inspect
import json

import pytest
from joserfc import errors as jose_errors

import keys.errors
from keys import JoseRejected, KeysError, seal_for, unseal_from, verify_jws
from keys.errors import JOSERFC_REASONS, jose_rejected_from
from tests.keys.keys_support import Party

ALL_ERRORS = [
    obj for _, obj in inspect.getmembers(keys.errors, inspect.isclass) if issubclass(obj, KeysError)
]


def test_every_error_has_a_distinct_stable_code() -> None:
    """Codes are unique snake_case strings, one per class."""
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(codes) == len(set(codes)) == 9
    assert all(code.replace("_", "").isalpha() and code.islower() for code in codes)


def test_every_error_shows_one_opaque_message_and_keeps_the_reason() -> None:
    """public_message is the same for all; reason and diagnostics() are for the audit."""
    for cls in ALL_ERRORS:
        try:
            raise cls("kid 'abc' retired at 2026-01-05") from ValueError("inner")
        except KeysError as exc:
            assert exc.public_message == "The request could not be processed."
            assert exc.diagnostics() == {
                "code": cls.code,
                "reason": "kid 'abc' retired at 2026-01-05",
                "causes": ["builtins.ValueError"],
            }


def test_reason_is_capped() -> None:
    """A reason carrying attacker-chosen text cannot grow without bound."""
    assert len(KeysError("x" * 10_000).reason) == 300


def test_every_joserfc_error_class_is_mapped() -> None:
    """A joserfc upgrade that adds an error class fails here until it is mapped."""
    upstream = {
        obj
        for _, obj in inspect.getmembers(jose_errors, inspect.isclass)
        if issubclass(obj, jose_errors.JoseError)
    }
    assert upstream == set(JOSERFC_REASONS)


@pytest.mark.parametrize("cls", sorted(JOSERFC_REASONS, key=lambda c: c.__name__))
def test_each_joserfc_error_translates_to_jose_rejected(cls: type[jose_errors.JoseError]) -> None:
    """jose_rejected_from gives JoseRejected whose reason names the joserfc error."""
    if issubclass(cls, jose_errors.ClaimError):
        exc: jose_errors.JoseError = cls("exp")
    elif cls in {jose_errors.MissingHeaderError, jose_errors.MissingCritHeaderError}:
        exc = cls("alg")
    else:
        exc = cls()
    translated = jose_rejected_from(exc, "test")
    assert isinstance(translated, JoseRejected)
    assert translated.reason.startswith(f"test: {JOSERFC_REASONS[cls]}")


def test_foreign_exceptions_translate_by_class_name_only() -> None:
    """A non-joserfc exception's message is not copied (it could hold data)."""
    translated = jose_rejected_from(ValueError("secret payload bytes"), "jwe decrypt")
    assert translated.reason == "jwe decrypt: ValueError"


def test_triggered_joserfc_errors_arrive_as_jose_rejected_from_the_library(
    police: Party, gateway: Party
) -> None:
    """Errors joserfc raises inside our verbs come out as JoseRejected chained to the original."""
    token = seal_for(b"x", police.signing, gateway.ec_public())
    head, key, iv, body, tag = token.split(".")
    flipped_tag = ("B" if tag[0] == "A" else "A") + tag[1:]
    with pytest.raises(JoseRejected, match="decode") as caught:
        unseal_from(
            ".".join([head, key, iv, body, flipped_tag]),
            gateway.decryption,
            police.signing.jwks(),
        )
    assert isinstance(caught.value.__cause__, jose_errors.DecodeError)

    inner = unseal_from(token, gateway.decryption, police.signing.jwks()).jws
    h, p, s = inner.split(".")
    forged = f"{h}.{p[:-2] + ('AA' if p[-2:] != 'AA' else 'BA')}.{s}"
    with pytest.raises(JoseRejected, match="bad_signature") as caught:
        verify_jws(forged, police.signing.jwks(), typ=None)
    assert isinstance(caught.value.__cause__, jose_errors.BadSignatureError)
    assert json.dumps(caught.value.diagnostics())
