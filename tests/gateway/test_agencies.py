"""Onboarding grants only the scopes the gateway checks: any other is refused, naming them; and it
refuses, before writing anything, keys the gateway could never use and text that would act on
the operator's terminal or read as another name (bidirectional controls, zero-width characters);
and show and list print no stored credentials, control or invisible characters."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import func, select

from adapters.kit import partner_init
from gateway import agencies
from gateway.cases import context
from gateway.demo import DEMO_SCOPES
from gateway.domain import KNOWN_SCOPES, AgencyStatus, AgencyType, Role
from gateway.labels import hidden_character, nfc
from gateway.oauth.jwks import KeyRefused, parse_jwks
from gateway.routes.audit import AUDIT_READ_SCOPE
from gateway.routes.inbox import INBOX_SCOPE
from gateway.store import Database
from gateway.store.models import Agency, AgencyKey, AuditEntry
from keys import public_key_from_jwk
from tests.gateway.hostile_labels import HOSTILE, LEGITIMATE, hostile_character
from tests.gateway.oauth.support import ONBOARDING

JWKS = ONBOARDING["jwks"]


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(sqlite_url)
    try:
        yield db
    finally:
        await db.dispose()


async def _count(db: Database, model: Any) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _add(db: Database, **overrides: Any) -> Any:
    return agencies.add_agency(db, **{**ONBOARDING, **overrides})


def test_every_scope_an_endpoint_checks_is_known() -> None:
    """The case API's, the inbox's and the audit API's scopes are the known scopes, all of them,
    and what the demo and the partner kit ask for is among them."""
    checked = {context.READ, context.WRITE, INBOX_SCOPE, AUDIT_READ_SCOPE}
    assert checked == set(KNOWN_SCOPES)
    assert set(DEMO_SCOPES) <= set(KNOWN_SCOPES)


def test_the_partner_kit_requests_known_scopes(tmp_path: Path) -> None:
    """The registration request `partner init` writes asks only for scopes the gateway knows."""
    kit = tmp_path / "kit"
    partner_init(
        kit,
        agency_id="barnet-yot",
        name="Barnet YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        issuer="https://gateway.test",
    )
    request = json.loads((kit / "registration-request.json").read_text())
    assert request["scopes"] and set(request["scopes"]) <= set(KNOWN_SCOPES)


@pytest.mark.parametrize(
    "scope",
    [
        "nominals:read",  # the scope docs/authentication.md once showed: no endpoint checks it
        "referrals:write",  # likewise
        "case:admin",  # well formed, but nothing grants it meaning
        "CASE:READ",  # scopes are compared exactly
        "Nominals READ",  # not even of a scope's form
    ],
)
async def test_add_agency_refuses_an_unknown_scope_and_writes_nothing(
    database: Database, scope: str
) -> None:
    """An unknown scope is refused with the known scopes named, and nothing is written."""
    with pytest.raises(agencies.AgencyError, match="unknown scope") as refused:
        await _add(database, scopes=["case:read", scope])
    assert all(known in str(refused.value) for known in KNOWN_SCOPES)
    assert await _count(database, Agency) == 0
    assert await _count(database, AgencyKey) == 0


async def test_add_agency_grants_every_known_scope(database: Database) -> None:
    """Each known scope may be granted; they are kept sorted, once each."""
    view = await _add(database, scopes=[*KNOWN_SCOPES, "case:read"])
    assert view.scopes == tuple(sorted(KNOWN_SCOPES))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "agencies", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _cli_add_police(
    tmp_path: Path,
    env: dict[str, str],
    *,
    name: str = "Avon and Somerset Police",
    area: str = "avon",
) -> subprocess.CompletedProcess[str]:
    """`agencies add` of police-avon, a police responsible authority, with a public JWKS."""
    jwks = tmp_path / "police.jwks.json"
    jwks.write_text(json.dumps(JWKS))
    return _cli(
        "add",
        *("--id", "police-avon", "--name", name, "--type", "police"),
        *("--role", "responsible_authority", "--area", area, "--jwks", str(jwks)),
        env=env,
    )


def test_cli_add_refuses_an_unknown_scope(sqlite_url: str, tmp_path: Path) -> None:
    """`agencies add --scope nominals:read` exits 1 naming the known scopes; a known one works."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    jwks = tmp_path / "police.jwks.json"
    jwks.write_text(json.dumps(JWKS))
    common = [
        "--id",
        "police-avon",
        "--name",
        "Avon and Somerset Police",
        "--type",
        "police",
        "--role",
        "responsible_authority",
        "--area",
        "avon-somerset",
        "--jwks",
        str(jwks),
    ]
    refused = _cli("add", *common, "--scope", "case:read", "--scope", "nominals:read", env=env)
    assert refused.returncode == 1
    assert "unknown scope 'nominals:read'" in refused.stderr
    assert "case:read, case:write, inbox:read, audit:read" in refused.stderr
    assert "police-avon" not in _cli("list", env=env).stdout
    added = _cli("add", *common, "--scope", "case:read", "--scope", "inbox:read", env=env)
    assert added.returncode == 0, added.stderr
    assert "scopes: case:read inbox:read" in added.stdout


@pytest.mark.parametrize(
    ("field", "value"),
    [("agency_id", "police-avon\n"), ("area", "avon-somerset\n")],
)
async def test_add_agency_refuses_a_trailing_newline_and_writes_nothing(
    database: Database, field: str, value: str
) -> None:
    """The id and area checks take the whole value: a pattern's ``$`` also matches before a
    final newline, so "police-avon\\n" passed ``match`` and was stored as another agency."""
    with pytest.raises(agencies.AgencyError):
        await agencies.add_agency(database, **{**ONBOARDING, field: value})
    assert await _count(database, Agency) == 0


def test_cli_add_refuses_the_area_national(sqlite_url: str, tmp_path: Path) -> None:
    """`agencies add --area national` (any case) exits 1 saying the word is reserved, and writes
    nothing: "national" is how an IG officer's national scope is written, so the console refuses
    it as an area and an area officer could never have been granted such an agency's area."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    refused = _cli_add_police(tmp_path, env, area="National")
    assert refused.returncode == 1
    assert "area 'national' is reserved" in refused.stderr
    assert "police-avon" not in _cli("list", env=env).stdout


@pytest.mark.parametrize("area", ["national", "NATIONAL", "National"])
async def test_add_agency_refuses_the_area_national_and_writes_nothing(
    database: Database, area: str
) -> None:
    """The reserved word is refused as an area in any case; an area merely holding it is not."""
    with pytest.raises(agencies.AgencyError, match="area 'national' is reserved"):
        await _add(database, area=area)
    assert await _count(database, Agency) == 0
    assert (await _add(database, area="national-crime-unit")).area == "national-crime-unit"


# -- keys the gateway could never use -------------------------------------------------------------
SIG = JWKS["keys"][0]
RSA_PUBLIC = RSAKey.generate_key(2048).as_dict(private=False)
EC_PUBLIC = ECKey.generate_key("P-256").as_dict(private=False)

#: Encryption keys the seal stage (keys.public_key_from_jwk) refuses: each was registered, and
#: every record sealed for the agency then failed with recipient_key_unavailable.
UNSEALABLE_ENC_KEYS = [
    # RSA PKCS#1 v1.5 key transport (Bleichenbacher): not on the allow-list
    pytest.param({**RSA_PUBLIC, "alg": "RSA1_5"}, "RSA1_5", id="rsa1_5"),
    # RSA-OAEP with SHA-1: the allow-list has RSA-OAEP-256 only
    pytest.param({**RSA_PUBLIC, "alg": "RSA-OAEP"}, "RSA-OAEP", id="rsa-oaep-sha1"),
    # a curve off the allow-list (the Bitcoin curve)
    pytest.param(ECKey.generate_key("secp256k1").as_dict(private=False), "secp256k1", id="k1"),
    # P-384: well formed, but the gateway seals to P-256 only
    pytest.param(ECKey.generate_key("P-384").as_dict(private=False), "P-384", id="p384"),
    # direct key agreement, which the gateway never uses
    pytest.param({**EC_PUBLIC, "alg": "ECDH-ES"}, "ECDH-ES", id="ecdh-es-direct"),
]


@pytest.mark.parametrize(("enc", "why"), UNSEALABLE_ENC_KEYS)
async def test_add_agency_refuses_an_enc_key_the_gateway_cannot_seal_to(
    db: Database, enc: dict[str, Any], why: str
) -> None:
    """An encryption key keys/ would refuse at seal time is refused at onboarding, naming its
    kid and the reason, and nothing is written."""
    jwks = {"keys": [SIG, {**enc, "kid": "e-1", "use": "enc"}]}
    with pytest.raises(agencies.AgencyError, match="key 'e-1'") as refused:
        await _add(db, jwks=jwks)
    assert why in str(refused.value)
    assert await _count(db, Agency) == 0
    assert await _count(db, AgencyKey) == 0


@pytest.mark.parametrize(("enc", "why"), UNSEALABLE_ENC_KEYS)
async def test_rotation_refuses_an_enc_key_the_gateway_cannot_seal_to(
    db: Database, enc: dict[str, Any], why: str
) -> None:
    """Rotation runs the same check: the agency keeps its keys, none is added or retired."""
    await _add(db)
    new = {"keys": [SIG, {**enc, "kid": "e-2", "use": "enc"}]}
    with pytest.raises(agencies.AgencyError, match="key 'e-2'") as refused:
        await agencies.rotate_agency_keys(db, "police-avon", new, dt.timedelta(hours=1))
    assert why in str(refused.value)
    shown = await agencies.get_agency(db, "police-avon")
    assert [(k.kid, k.not_after) for k in shown.keys] == [("p-1", None)]


def test_a_refused_key_without_a_printable_kid_is_named_by_its_place() -> None:
    """A kid that is not of the allowed form is not echoed; the key's place in the JWKS is."""
    bad = {**RSA_PUBLIC, "alg": "RSA1_5", "use": "enc", "kid": "\x1b[2J"}
    with pytest.raises(KeyRefused, match="key #2: ") as refused:
        parse_jwks({"keys": [SIG, bad]})
    assert "\x1b" not in str(refused.value)


async def test_every_enc_key_onboarding_stores_is_one_the_seal_stage_accepts(
    db: Database,
) -> None:
    """RSA-OAEP-256 and ECDH-ES+A256KW keys (declared or not) are registered, and what is
    stored parses for sealing."""
    enc = [
        {**RSA_PUBLIC, "kid": "e-rsa", "use": "enc", "alg": "RSA-OAEP-256"},
        {**EC_PUBLIC, "kid": "e-ec", "use": "enc"},
    ]
    await _add(db, jwks={"keys": [SIG, *enc]})
    async with db.read() as session:
        stored = (await session.scalars(select(AgencyKey).where(AgencyKey.use == "enc"))).all()
    assert sorted(row.kid for row in stored) == ["e-ec", "e-rsa"]
    for row in stored:
        assert public_key_from_jwk(row.jwk, use="enc").kid == row.kid


# -- text the commands print back -----------------------------------------------------------------
#: Names an operator's terminal would act on when `agencies show` prints them.
TERMINAL_ATTACKS = [
    pytest.param("Police\x1b[2J\x1b[31mFAKE", id="ansi-escape"),  # clears the screen, recolours
    pytest.param("Police\x00", id="nul"),  # PostgreSQL cannot store it: a 500, not a refusal
    pytest.param("Police\nagency: fake-admin", id="newline"),  # a forged line of output
    pytest.param("Police\x7f", id="del"),
    pytest.param("Police\x9b2J", id="c1-csi"),  # U+009B: a one-character ESC [
    pytest.param("Police\x85", id="c1-next-line"),
]


@pytest.mark.parametrize("name", TERMINAL_ATTACKS)
async def test_add_agency_refuses_a_name_with_control_characters(db: Database, name: str) -> None:
    """A name holding a C0, DEL or C1 control is refused, on both backends, writing nothing."""
    with pytest.raises(agencies.AgencyError, match="holds a control character"):
        await _add(db, name=name)
    assert await _count(db, Agency) == 0


@pytest.mark.parametrize(
    "subject_dn",
    [
        pytest.param("CN=police\x1b[2J,O=Avon", id="raw"),
        pytest.param("CN=police\\1b[2J,O=Avon", id="rfc4514-escape"),  # parses to an ESC
    ],
)
async def test_tls_subject_with_control_characters_is_refused(
    db: Database, subject_dn: str
) -> None:
    """`agencies set-tls` prints the subject back: one holding a control character, written or
    escaped, is refused and the agency is left without tls_client_auth."""
    await _add(db)
    with pytest.raises(agencies.AgencyError, match="holds a control character"):
        await agencies.set_tls_client_auth(
            db, "police-avon", subject_dn=subject_dn, ca_pem="not read"
        )
    assert (await agencies.get_agency(db, "police-avon")).tls_subject_dn is None


async def test_show_and_list_never_print_stored_credentials_or_controls(
    database_url: str, tmp_path: Path
) -> None:
    """A row stored before onboarding refused them (a jwks_uri with user:pw@, a name with an
    ANSI escape, a right-to-left override, a zero-width joiner and a paragraph separator, an id
    with a newline, an area with an isolate, a subject with an override): `agencies show` and
    `list` print neither the credentials nor a raw control, format or separator character, on
    both backends, but each as an escape."""
    db = Database(database_url)
    try:
        now = dt.datetime.now(dt.UTC)
        async with db.write() as session:
            session.add(
                Agency(
                    id="em-provider\n",
                    name="EM\x1b[2J\x9b31mFAKE\u202eecnagA\u200dX\u2029Y",
                    agency_type=AgencyType.ELECTRONIC_MONITORING,
                    role=Role.DUTY_TO_COOPERATE,
                    area="avon\x07\u2066",
                    scopes=["case:read"],
                    status=AgencyStatus.ACTIVE,
                    jwks_uri="https://user:s3cret@em.example/jwks.json",
                    created_at=now,
                    updated_at=now,
                    tls_client_auth_subject_dn="CN=EM\u202eAgency,O=Avon",
                )
            )
    finally:
        await db.dispose()
    env = {**os.environ, "MAPPA_DATABASE_URL": database_url, "MAPPA_PROFILE": "development"}
    shown = _cli("show", "em-provider\n", env=env)
    listed = _cli("list", env=env)
    assert shown.returncode == 0 and listed.returncode == 0, shown.stderr + listed.stderr
    assert "jwks_uri: https://[credentials removed]@em.example/jwks.json" in shown.stdout
    assert "name: EM\\x1b[2J\\x9b31mFAKE\\u202eecnagA\\u200dX\\u2029Y" in shown.stdout
    assert "tls_client_auth: CN=EM\\u202eAgency,O=Avon" in shown.stdout
    assert "em-provider\\x0a\tactive" in listed.stdout and "avon\\x07\\u2066" in listed.stdout
    for output in (shown.stdout, listed.stdout):
        assert "s3cret" not in output and "user:" not in output
        assert hidden_character(output.replace("\n", "").replace("\t", "")) is None


# -- names that would read as another: bidirectional controls, zero-width characters ------------


async def _nothing_written(db: Database) -> None:
    assert await _count(db, Agency) == 0
    assert await _count(db, AgencyKey) == 0
    assert await _count(db, AuditEntry) == 0


@pytest.mark.parametrize("name", HOSTILE)
async def test_add_agency_refuses_a_hostile_name_and_writes_nothing(
    database: Database, name: str
) -> None:
    """A name with a character not shown as itself (a bidirectional control, a zero-width or
    other format character, a line or paragraph separator, a control, a private-use,
    unassigned or surrogate code point) is refused naming the rule and the code point, not the
    name, and nothing is written: no agency, no key, no audit entry."""
    char = hostile_character(name)
    with pytest.raises(agencies.AgencyError, match="name must be one line of visible text") as e:
        await _add(database, name=name)
    assert str(e.value).endswith(f"U+{ord(char):04X}")
    assert char not in str(e.value) and "Police" not in str(e.value)
    await _nothing_written(database)


@pytest.mark.parametrize("name", LEGITIMATE)
async def test_add_agency_takes_a_name_in_any_script(database: Database, name: str) -> None:
    view = await _add(database, name=name)
    assert view.name == name
    assert (await agencies.get_agency(database, "police-avon")).name == name


async def test_add_agency_stores_a_name_composed(database: Database) -> None:
    """ "O" with a combining acute accent is stored as "Ó" (NFC): one name, whatever was typed."""
    await _add(database, name="Seán O\u0301 Briain")
    assert (await agencies.get_agency(database, "police-avon")).name == "Seán Ó Briain"
    assert nfc("Seán O\u0301 Briain") == "Seán Ó Briain"


#: A subject with a hostile character as written, and as RFC 4514 hex escapes (UTF-8 bytes).
HOSTILE_SUBJECTS = [
    *(pytest.param(f"CN={p.values[0]},O=Avon", id=f"raw-{p.id}") for p in HOSTILE),
    *(
        pytest.param(f"CN=Police{escaped}Agency,O=Avon", id=f"escaped-{name}")
        for name, escaped in {
            "rlo": "\\e2\\80\\ae",
            "lri": "\\e2\\81\\a6",
            "zero-width-joiner": "\\e2\\80\\8d",
            "bom": "\\ef\\bb\\bf",
            "line-separator": "\\e2\\80\\a8",
            "private-use": "\\ee\\80\\80",
        }.items()
    ),
]


@pytest.mark.parametrize("subject_dn", HOSTILE_SUBJECTS)
async def test_tls_subject_with_a_hostile_character_is_refused(
    database: Database, subject_dn: str
) -> None:
    """A subject holding such a character, as written (refused before it is parsed) or as the
    escapes it parses to, is refused and the agency is left without tls_client_auth."""
    await _add(database)
    with pytest.raises(agencies.AgencyError, match="subject DN refused: it holds"):
        await agencies.set_tls_client_auth(
            database, "police-avon", subject_dn=subject_dn, ca_pem="not read"
        )
    assert (await agencies.get_agency(database, "police-avon")).tls_subject_dn is None


@pytest.mark.parametrize(
    "name",
    [
        p
        for p in HOSTILE
        if p.id in {"rlo", "zero-width-joiner", "line-separator", "lone-surrogate"}
    ],
)
def test_cli_add_refuses_a_hostile_name(sqlite_url: str, tmp_path: Path, name: str) -> None:
    """`agencies add --name` exits 1 naming the rule and the code point, echoes nothing of the
    name, and registers nothing. A byte of an argument that is not UTF-8 reaches the check as a
    lone surrogate and is refused the same way."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    refused = _cli_add_police(tmp_path, env, name=name)
    assert refused.returncode == 1
    assert f"U+{ord(hostile_character(name)):04X}" in refused.stderr
    assert "Police" not in refused.stderr and hostile_character(name) not in refused.stderr
    assert "police-avon" not in _cli("list", env=env).stdout
