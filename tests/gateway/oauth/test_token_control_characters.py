"""Hostile text at POST /oauth/token, on SQLite and PostgreSQL.

A client assertion's ``iss`` names the client the endpoint loads before anything is verified.
PostgreSQL cannot compare text holding a NUL: an ``iss`` with one was a 500 there, and the
refusal was never audited (SQLite said ``client_unknown``). An ``iss`` that is no agency id is
now never looked up: it is refused like any unregistered client, audited, on both backends. The
other inputs are checked the same way: the form's ``client_id``, the ``kid`` (a pattern, matched
whole: a trailing newline is not a kid) and the ``jti`` values (only ever stored hashed, so any
text is fine, and spent once).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.settings import Settings
from gateway.store.models import AuditEntry
from tests.gateway.oauth.support import AgencyClient, Ledger, assert_refused


@pytest.fixture
def oauth_settings(oauth_settings: Settings, database_url: str) -> Settings:
    """The agency-authentication settings, once on SQLite and once on PostgreSQL."""
    return oauth_settings.model_copy(update={"database_url": database_url})


@pytest.mark.parametrize(
    "iss",
    [
        "police-avon\x00",  # the registered id, then a NUL
        "\x00",
        "police\x00avon",
        "police-avon\n",  # a newline after the registered id
        "police-avon\x1b",
        "\u00e9" * 64,  # 64 characters, none ASCII
        "Police-Avon",  # upper case: no agency id
    ],
)
async def test_assertion_iss_that_is_no_agency_id_is_an_unknown_client(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, iss: str
) -> None:
    """invalid_client, audited as ``client_unknown`` with no agency; nothing issued or spent."""
    response = await police.token_response(http, assertion=police.assertion(iss=iss, sub=iss))
    entry = await assert_refused(
        response, ledger, code="invalid_client", reason="client_unknown", agency_id=None
    )
    assert entry.detail["stage"] == "token"
    # a good request still works afterwards
    assert (await police.token_response(http)).status_code == 200


@pytest.mark.parametrize("sub", ["police-avon\x00", "police-avon\n"])
async def test_assertion_sub_with_control_characters_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, sub: str
) -> None:
    """``sub`` is only compared with the client id: refused ``assertion_iss_sub``."""
    response = await police.token_response(http, assertion=police.assertion(sub=sub))
    await assert_refused(
        response, ledger, code="invalid_client", reason="assertion_iss_sub", agency_id="police-avon"
    )


@pytest.mark.parametrize("kid", ["\x00", "kid\x00", "{kid}\n", "{kid}\x00"])
async def test_assertion_kid_with_control_characters_is_malformed(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, kid: str
) -> None:
    """A kid is matched whole against its pattern (a newline after a real kid is no kid):
    ``kid_malformed``, refused as the assertion is parsed, before the client is even named."""
    header = {"kid": kid.format(kid=police.kid)}
    response = await police.token_response(http, assertion=police.assertion(header=header))
    await assert_refused(
        response, ledger, code="invalid_client", reason="kid_malformed", agency_id=None
    )


@pytest.mark.parametrize(
    ("form", "reason", "agency"),
    [
        # with an assertion: the form's client_id must be its iss
        ({"client_id": "police-avon\x00"}, "client_id_mismatch", None),
        ({"client_id": "\x00"}, "client_id_mismatch", None),
    ],
)
async def test_form_client_id_with_control_characters_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    form: dict[str, str],
    reason: str,
    agency: str | None,
) -> None:
    response = await police.token_response(http, **form)
    await assert_refused(response, ledger, code="invalid_client", reason=reason, agency_id=agency)


async def test_form_client_id_with_a_nul_and_no_assertion_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """No assertion and no certificate: the client_id names nothing to authenticate with."""
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "police-avon\x00"},
        headers={"DPoP": police.proof()},
    )
    await assert_refused(
        response, ledger, code="invalid_client", reason="assertion_missing", agency_id=None
    )


@pytest.mark.parametrize("jti", ["j\x00", "\x00", "jti\nwith lines", "\x1b[31m"])
async def test_jti_with_control_characters_is_spent_once(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, jti: str
) -> None:
    """A jti is stored only as a hash: any text is a jti, spent once on both backends; its
    replay is refused ``client_assertion_jti_replayed`` (an assertion's) or
    ``dpop_jti_replayed`` (a proof's)."""
    assertion = police.assertion(jti=jti)
    first = await police.token_response(http, assertion=assertion)
    assert first.status_code == 200, first.text
    again = await police.token_response(http, assertion=assertion)
    await assert_refused(
        again,
        ledger,
        code="invalid_client",
        reason="client_assertion_jti_replayed",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )
    proof = police.proof(jti=jti)
    second = await police.token_response(http, proof=proof)
    assert second.status_code == 200, second.text
    replayed = await police.token_response(http, proof=proof)
    await assert_refused(
        replayed,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_jti_replayed",
        agency_id="police-avon",
        status=400,
        issued=2,
        jtis=4,
    )


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in ``value`` (a column's value: text, or JSON nested to any depth), dict
    keys included, each with where it was found."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{where} (a key)")
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
    else:
        assert value is None or isinstance(value, bool | int | float | dt.datetime), (where, value)


async def test_no_refused_token_request_stores_a_control_character(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """After a round of hostile requests (control characters in every input the token endpoint
    reads: the assertion's iss, sub and kid, the form's client_id, the DPoP proof's header and
    claims), each is refused and audited once, and no audit entry holds a control character
    anywhere: not in a text column, not in any string nested in its JSON columns (the detail,
    the recipients, the records, what was withheld), not in a key."""
    kid = police.kid
    hostile: list[dict[str, Any]] = [
        {"assertion": police.assertion(iss="police-avon\x00", sub="police-avon\x00")},
        {"assertion": police.assertion(iss="\x1b[31m", sub="\x1b[31m")},
        {"assertion": police.assertion(sub="police-avon\n")},
        {"assertion": police.assertion(header={"kid": "k\x00"})},
        {"assertion": police.assertion(header={"kid": f"{kid}\n"})},
        {"assertion": police.assertion(header={"typ": "JWT\x00"})},
        {"assertion": police.assertion(aud="https://gateway.test\x00")},
        {"client_id": "police-avon\x00"},
        {"client_id": "\x00"},
        {"proof": police.proof(htm="POST\x00")},
        {"proof": police.proof(htu="https://gateway.test/oauth/token\x00")},
        {"proof": police.proof(header={"typ": "dpop+jwt\x00"})},
    ]
    for extra in hostile:
        response = await police.token_response(http, **extra)
        assert response.status_code in (400, 401), (extra, response.text)
    assert await ledger.issued() == 0
    refusals = await ledger.refusals()
    assert len(refusals) == len(hostile)
    async with ledger.db.read() as session:
        entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    refused_ids = {entry.id for entry in refusals}
    assert refused_ids <= {entry.id for entry in entries}
    columns = [column.key for column in AuditEntry.__table__.columns]
    assert {"detail", "recipients", "record_refs", "withheld", "rule"} <= set(columns)
    for entry in entries:
        found = [
            (where, text)
            for name in columns
            for where, text in _strings(getattr(entry, name), name)
        ]
        # the walk reached the detail: every refusal names its stage there
        assert ("detail.stage", "token") in found or entry.id not in refused_ids, found
        for where, text in found:
            assert text.isprintable(), (entry.id, where, text)
