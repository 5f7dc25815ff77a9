"""Onboarding agency identities: add, list, show, suspend, reinstate, rotate keys.

These service functions are what ``mappa-gateway agencies ...`` and the demo set-up call. Each
takes the :class:`~gateway.store.Database`, validates its input before writing anything, writes
in one transaction with an ``administration`` audit entry, and returns an :class:`AgencyView`
(public facts only: never a key's private part, which the gateway never holds anyway).

An agency registers either a JWKS (stored as :class:`~gateway.store.models.AgencyKey` rows) or a
``jwks_uri`` (fetched on use, see :mod:`gateway.oauth.jwks`). :func:`rotate_agency_keys` adds the
new keys and gives the current ones an end date ``overlap`` from now, after which they are
refused for good: a retired key is never registered again, under its kid or another (compared by
RFC 7638 thumbprint), and a kid names one key as a key has one kid. :func:`suspend_agency` takes
effect on the agency's next request.

Text the commands and the console print back (a name, a certificate subject) is refused if it
holds a character that is not shown as itself (:func:`gateway.labels.hidden_character`): a
control character (C0, DEL, C1), which a terminal would obey and PostgreSQL cannot store as NUL,
a bidirectional control or zero-width character, which could make one agency's name read as
another's, a line or paragraph separator, a private-use, unassigned or surrogate code point. A
name is stored NFC-normalised; a subject DN as it parses (it is compared with certificates as a
name, attribute by attribute).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.contract.types import AGENCY_ID
from gateway.domain import KNOWN_SCOPES, AgencyStatus, AgencyType, Role
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.labels import hidden_character, nfc
from gateway.oauth import mtls
from gateway.oauth.jwks import KeyRefused, ParsedJwk, parse_jwk, parse_jwks
from gateway.partner_urls import PartnerUrlRefused, check_partner_url
from gateway.store import Database
from gateway.store.models import Agency, AgencyKey

__all__ = [
    "AREA_CODE",
    "NATIONAL_WORD",
    "AgencyError",
    "AgencyKeyView",
    "AgencyView",
    "add_agency",
    "get_agency",
    "list_agencies",
    "reinstate_agency",
    "rotate_agency_keys",
    "set_tls_client_auth",
    "suspend_agency",
]

_ID = re.compile(AGENCY_ID)
#: A MAPPA area code, taken whole (``fullmatch``): the area an agency is registered with, and
#: what an IG officer's review scope names (:mod:`gateway.console.scope`).
AREA_CODE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")

#: How the national scope is written (``--national``), in any case: never an area code, so no
#: agency is registered with it (an area of that name could never be granted to an officer).
NATIONAL_WORD: Final = "national"


class AgencyError(ValueError):
    """The onboarding request is invalid or names no such agency; nothing was written."""


@dataclass(frozen=True, slots=True)
class AgencyKeyView:
    kid: str
    use: str
    alg: str | None
    added_at: dt.datetime
    not_after: dt.datetime | None


@dataclass(frozen=True, slots=True)
class AgencyView:
    id: str
    name: str
    agency_type: str
    role: str
    area: str
    scopes: tuple[str, ...]
    status: str
    jwks_uri: str | None
    keys: tuple[AgencyKeyView, ...] = ()
    #: RFC 8705 ``tls_client_auth``: the registered certificate subject (None: not open).
    tls_subject_dn: str | None = None


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _view(agency: Agency, keys: Iterable[AgencyKey] = ()) -> AgencyView:
    return AgencyView(
        id=agency.id,
        name=agency.name,
        agency_type=str(agency.agency_type.value),
        role=str(agency.role.value),
        area=agency.area,
        scopes=tuple(agency.scopes),
        status=str(agency.status.value),
        jwks_uri=agency.jwks_uri,
        tls_subject_dn=agency.tls_client_auth_subject_dn,
        keys=tuple(
            AgencyKeyView(
                kid=k.kid,
                use=k.use,
                alg=k.jwk.get("alg"),
                added_at=k.added_at,
                not_after=k.not_after,
            )
            for k in keys
        ),
    )


def _one_kid_per_key(parsed: Sequence[ParsedJwk]) -> None:
    """Refuse a JWKS that holds one key under two kids (its RFC 7638 thumbprint twice): a key has
    one kid, so that retiring the kid retires the key."""
    seen: dict[str, str] = {}
    for key in parsed:
        if (first := seen.setdefault(key.thumbprint, key.kid)) != key.kid:
            raise AgencyError(f"keys {first!r} and {key.kid!r} are one key: give it one kid")


def _thumbprint(row: AgencyKey) -> str | None:
    """A stored key's RFC 7638 thumbprint (None for a row that no longer parses)."""
    try:
        return parse_jwk(row.jwk).thumbprint
    except KeyRefused:
        return None


def _retired(row: AgencyKey, at: dt.datetime) -> bool:
    return row.not_after is not None and row.not_after <= at


def _check_against_stored(
    parsed: Sequence[ParsedJwk], stored: Sequence[AgencyKey], at: dt.datetime
) -> None:
    """Refuse a new JWKS member that is a retired key of the agency (by kid or by RFC 7638
    thumbprint), a registered key under another kid, or a kid registered for another key."""
    by_kid = {row.kid: row for row in stored}
    by_thumbprint: dict[str, list[AgencyKey]] = {}
    for row in stored:
        if (thumbprint := _thumbprint(row)) is not None:
            by_thumbprint.setdefault(thumbprint, []).append(row)
    for key in parsed:
        same_kid = by_kid.get(key.kid)
        same_key = by_thumbprint.get(key.thumbprint, [])
        for row in same_key:
            if _retired(row, at):
                named = "" if row.kid == key.kid else f" (registered as {row.kid!r})"
                raise AgencyError(
                    f"key {key.kid!r}{named} was retired at {_ended(row)} and cannot be "
                    "registered again, under any kid: generate a new key"
                )
        if same_kid is not None and _retired(same_kid, at):
            raise AgencyError(
                f"kid {key.kid!r} names a key retired at {_ended(same_kid)}: a retired key's "
                "kid is not registered again; give the new key a new kid"
            )
        for row in same_key:
            if row.kid != key.kid:
                raise AgencyError(f"key {key.kid!r} is already registered as {row.kid!r}")
        if same_kid is not None and dict(same_kid.jwk) != dict(key.jwk):
            raise AgencyError(f"kid {key.kid!r} is already registered for another key")


def _ended(row: AgencyKey) -> str:
    assert row.not_after is not None
    return row.not_after.isoformat(timespec="seconds")


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    """The scopes, sorted and once each; one no endpoint checks would grant nothing: refused."""
    cleaned = sorted(set(scopes))
    for scope in cleaned:
        if scope not in KNOWN_SCOPES:
            raise AgencyError(
                f"unknown scope {scope[:70]!r}: the gateway knows {', '.join(KNOWN_SCOPES)}"
            )
    return cleaned


def _audit(
    session: AsyncSession, agency_id: str, action: str, now: dt.datetime, **detail: Any
) -> None:
    record(
        session,
        AuditEvent(
            occurred_at=now,
            operation=Operation.ADMINISTRATION,
            outcome=Outcome.ALLOWED,
            agency_id=agency_id,
            reason_code=action,
            detail={"action": action, **detail},
        ),
    )


async def add_agency(
    db: Database,
    *,
    agency_id: str,
    name: str,
    agency_type: AgencyType | str,
    role: Role | str,
    area: str,
    scopes: Sequence[str],
    jwks: Mapping[str, Any] | None = None,
    jwks_uri: str | None = None,
    development: bool = False,
    now: dt.datetime | None = None,
) -> AgencyView:
    """Register an agency system with either a public JWKS or a ``jwks_uri`` (exactly one).

    The ``jwks_uri`` passes :func:`gateway.partner_urls.check_partner_url`; ``development``
    (the profile) lets it be on the loopback."""
    at = _now(now)
    if not _ID.fullmatch(agency_id):
        raise AgencyError("agency id must be 2-64 characters of a-z 0-9 . _ -")
    name = nfc(name)
    if hidden := hidden_character(name):  # never echoed: it would act where it is printed
        raise AgencyError(f"name must be one line of visible text: it holds {hidden}")
    name = name.strip()
    if not name or len(name) > 200:
        raise AgencyError("name must be 1-200 characters")
    if not AREA_CODE.fullmatch(area):
        raise AgencyError("area must be 1-64 characters of letters, digits, space . _ -")
    if area.casefold() == NATIONAL_WORD:
        raise AgencyError(
            "area 'national' is reserved: it is how the national review scope is written, "
            "never an area code"
        )
    try:
        kind, position = AgencyType(agency_type), Role(role)
    except ValueError as exc:
        raise AgencyError(str(exc)) from exc
    if (jwks is None) == (jwks_uri is None):
        raise AgencyError("give exactly one of a JWKS or a jwks_uri")
    if jwks_uri is not None:
        try:
            check_partner_url(jwks_uri, development=development)
        except PartnerUrlRefused as exc:
            raise AgencyError(f"jwks_uri refused: {exc}") from exc
    try:
        parsed = parse_jwks(jwks) if jwks is not None else []
    except KeyRefused as exc:
        raise AgencyError(f"JWKS refused: {exc}") from exc
    _one_kid_per_key(parsed)
    granted = _check_scopes(scopes)
    async with db.write() as session:
        if await session.get(Agency, agency_id) is not None:
            raise AgencyError(f"agency {agency_id!r} already exists")
        agency = Agency(
            id=agency_id,
            name=name,
            agency_type=kind,
            role=position,
            area=area,
            scopes=granted,
            status=AgencyStatus.ACTIVE,
            jwks_uri=jwks_uri,
            created_at=at,
            updated_at=at,
        )
        session.add(agency)
        await session.flush()
        rows = [
            AgencyKey(agency_id=agency_id, kid=p.kid, use=p.use, jwk=dict(p.jwk), added_at=at)
            for p in parsed
        ]
        session.add_all(rows)
        _audit(session, agency_id, "agency_added", at, kids=[p.kid for p in parsed])
    return _view(agency, rows)


async def list_agencies(db: Database) -> list[AgencyView]:
    async with db.read() as session:
        agencies = (await session.scalars(select(Agency).order_by(Agency.id))).all()
        return [_view(a) for a in agencies]


async def get_agency(db: Database, agency_id: str) -> AgencyView:
    async with db.read() as session:
        agency = await session.get(Agency, agency_id)
        if agency is None:
            raise AgencyError(f"no agency {agency_id!r}")
        keys = await session.scalars(
            select(AgencyKey).where(AgencyKey.agency_id == agency_id).order_by(AgencyKey.id)
        )
        return _view(agency, keys.all())


async def _set_status(
    db: Database, agency_id: str, status: AgencyStatus, action: str, now: dt.datetime | None
) -> AgencyView:
    at = _now(now)
    async with db.write() as session:
        agency = await session.get(Agency, agency_id)
        if agency is None:
            raise AgencyError(f"no agency {agency_id!r}")
        agency.status = status
        agency.updated_at = at
        _audit(session, agency_id, action, at)
    return _view(agency)


async def suspend_agency(
    db: Database, agency_id: str, *, now: dt.datetime | None = None
) -> AgencyView:
    """Suspend an agency: its next request is refused, whatever tokens it holds."""
    return await _set_status(db, agency_id, AgencyStatus.SUSPENDED, "agency_suspended", now)


async def reinstate_agency(
    db: Database, agency_id: str, *, now: dt.datetime | None = None
) -> AgencyView:
    """Lift a suspension."""
    return await _set_status(db, agency_id, AgencyStatus.ACTIVE, "agency_reinstated", now)


async def set_tls_client_auth(
    db: Database,
    agency_id: str,
    *,
    subject_dn: str | None,
    ca_pem: str | None,
    now: dt.datetime | None = None,
) -> AgencyView:
    """Open RFC 8705 ``tls_client_auth`` to an agency: its client certificate's subject
    distinguished name (RFC 4514) and the CA certificate(s) that alone may issue it; both None
    closes it again (tokens already bound to a certificate run out within minutes).

    The agency's other method, ``private_key_jwt``, is unaffected. The proxy in front of the
    gateway must ask for client certificates and trust the same CA."""
    at = _now(now)
    if (subject_dn is None) != (ca_pem is None):
        raise AgencyError("give both the subject DN and the CA, or neither (to close the method)")
    fingerprints: list[str] = []
    if subject_dn is not None and ca_pem is not None:
        if hidden := hidden_character(subject_dn):  # before parsing: never echoed
            raise AgencyError(f"subject DN refused: it holds {hidden}")
        try:
            subject_dn = mtls.parse_subject_dn(subject_dn).rfc4514_string()
        except ValueError as exc:
            raise AgencyError(f"subject DN refused: {exc}") from exc
        if len(subject_dn) > 1000:
            raise AgencyError("subject DN longer than 1000 characters")
        if hidden := hidden_character(subject_dn):  # written as an escape: \1b, \e2\80\ae
            raise AgencyError(f"subject DN refused: it holds {hidden}")
        try:
            anchors = mtls.parse_ca_pem(ca_pem)
        except (ValueError, UnicodeEncodeError) as exc:
            raise AgencyError(f"CA refused: {exc}") from exc
        if len(ca_pem) > 20_000:
            raise AgencyError("CA bundle larger than 20,000 characters")
        if any(anchor.not_valid_after_utc <= at for anchor in anchors):
            raise AgencyError("a CA certificate in the bundle has expired")
        fingerprints = [mtls.certificate_fingerprint(anchor) for anchor in anchors]
    async with db.write() as session:
        agency = await session.get(Agency, agency_id)
        if agency is None:
            raise AgencyError(f"no agency {agency_id!r}")
        agency.tls_client_auth_subject_dn = subject_dn
        agency.tls_client_ca_pem = ca_pem
        agency.updated_at = at
        if subject_dn is None:
            _audit(session, agency_id, "agency_tls_client_auth_closed", at)
        else:
            _audit(
                session,
                agency_id,
                "agency_tls_client_auth_set",
                at,
                subject_dn=subject_dn,
                ca_sha256=fingerprints,
            )
    return _view(agency)


async def rotate_agency_keys(
    db: Database,
    agency_id: str,
    new_jwks: Mapping[str, Any],
    overlap: dt.timedelta,
    *,
    now: dt.datetime | None = None,
) -> AgencyView:
    """Register ``new_jwks``; the keys current until now keep working for ``overlap``.

    A key already registered under the same kid stays current (one still in its overlap is
    current again: audited as ``reinstated``). Refused, writing nothing: a key already retired
    (its overlap over), under its kid or any other (compared by RFC 7638 thumbprint), a kid
    registered for another key, and a registered key under another kid. Agencies registered
    with a ``jwks_uri`` rotate at the source: the gateway picks the new keys up from there.
    """
    at = _now(now)
    if overlap < dt.timedelta(0) or overlap > dt.timedelta(days=30):
        raise AgencyError("overlap must be between 0 and 30 days")
    try:
        parsed = parse_jwks(new_jwks)
    except KeyRefused as exc:
        raise AgencyError(f"JWKS refused: {exc}") from exc
    _one_kid_per_key(parsed)
    async with db.write() as session:
        agency = await session.get(Agency, agency_id)
        if agency is None:
            raise AgencyError(f"no agency {agency_id!r}")
        if agency.jwks_uri:
            raise AgencyError("this agency's keys come from its jwks_uri; rotate them there")
        stored = list(
            await session.scalars(select(AgencyKey).where(AgencyKey.agency_id == agency_id))
        )
        _check_against_stored(parsed, stored, at)
        existing = {k.kid: k for k in stored}
        new_kids = {p.kid for p in parsed}
        kept = sorted(new_kids & set(existing))
        reinstated = sorted(kid for kid in kept if existing[kid].not_after is not None)
        retired = []
        for kid, key in existing.items():
            if kid not in new_kids and (key.not_after is None or key.not_after > at + overlap):
                key.not_after = at + overlap
                retired.append(kid)
        for p in parsed:
            old = existing.get(p.kid)
            if old is None:
                session.add(
                    AgencyKey(
                        agency_id=agency_id, kid=p.kid, use=p.use, jwk=dict(p.jwk), added_at=at
                    )
                )
            else:
                old.not_after = None
        agency.updated_at = at
        _audit(
            session,
            agency_id,
            "agency_keys_rotated",
            at,
            added=sorted(new_kids - set(existing)),
            kept=kept,
            reinstated=reinstated,
            retiring=sorted(retired),
            overlap_seconds=int(overlap.total_seconds()),
        )
    return await get_agency(db, agency_id)
