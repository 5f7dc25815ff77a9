"""Agencies as OAuth clients: a snapshot of what authentication needs, loaded before it runs.

The token endpoint loads the claimed client's :class:`ClientRecord` (its status, its grant
attributes and its usable signing keys) asynchronously, from the store or from the agency's
registered ``jwks_uri``, then hands the snapshot to the synchronous Authlib core. The snapshot
implements Authlib's ``ClientMixin`` methods the client-credentials grant calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain import AgencyStatus
from gateway.oauth import mtls
from gateway.oauth.jwks import JwksFetcher, KeyRefused, ParsedJwk, parse_jwk
from gateway.store.models import Agency, AgencyKey

__all__ = ["ClientRecord", "SigningKey", "load_client", "with_fetched_keys"]

AUTH_METHOD = "private_key_jwt"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An agency signing key and the end of its rotation overlap (None while current)."""

    parsed: ParsedJwk
    not_after: dt.datetime | None

    def usable_at(self, now: dt.datetime) -> bool:
        return self.not_after is None or now < self.not_after


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """What the token endpoint knows of one agency client at the time of the request."""

    client_id: str
    agency_type: str
    role: str
    area: str
    scopes: tuple[str, ...]
    active: bool
    keys: tuple[SigningKey, ...]
    #: RFC 8705 ``tls_client_auth`` registration: the certificate's subject DN and the CA that
    #: issues it (both, or the method is not open to this client).
    tls_subject_dn: str | None = None
    tls_ca_pem: str | None = None
    #: Where the agency publishes its JWKS, when it registered one (keys fetched from there).
    jwks_uri: str | None = None

    @property
    def tls_client_auth(self) -> bool:
        return bool(self.tls_subject_dn and self.tls_ca_pem)

    # -- Authlib ClientMixin --------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token":
            return False
        return method == AUTH_METHOD or (method == mtls.AUTH_METHOD and self.tls_client_auth)

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials" and self.active

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(self.scopes)
        return " ".join(s for s in scope.split() if s in self.scopes)

    # -- key selection ---------------------------------------------------------------------
    def usable_keys(self, now: dt.datetime) -> list[ParsedJwk]:
        return [k.parsed for k in self.keys if k.parsed.use == "sig" and k.usable_at(now)]

    def knows_kid(self, kid: str) -> bool:
        return any(k.parsed.kid == kid for k in self.keys)


async def load_client(
    session: AsyncSession, client_id: str, *, with_keys: bool = True
) -> ClientRecord | None:
    """The snapshot for ``client_id``, or None if no such agency is registered; without its
    signing keys when ``with_keys`` is false (a ``tls_client_auth`` request needs none).

    An agency that registered a ``jwks_uri`` comes back with no keys and its ``jwks_uri``:
    :func:`with_fetched_keys` fetches them after the session is closed, so a slow or failing
    partner host never holds a database connection (before anything is authenticated)."""
    agency = await session.get(Agency, client_id)
    if agency is None:
        return None
    keys = await _registered_keys(session, agency) if with_keys and not agency.jwks_uri else []
    return ClientRecord(
        client_id=agency.id,
        agency_type=str(agency.agency_type.value),
        role=str(agency.role.value),
        area=agency.area,
        scopes=tuple(str(s) for s in agency.scopes),
        active=agency.status == AgencyStatus.ACTIVE,
        keys=tuple(keys),
        tls_subject_dn=agency.tls_client_auth_subject_dn,
        tls_ca_pem=agency.tls_client_ca_pem,
        jwks_uri=agency.jwks_uri if with_keys else None,
    )


async def with_fetched_keys(
    client: ClientRecord | None, fetcher: JwksFetcher, *, refresh: bool = False
) -> ClientRecord | None:
    """``client`` with the signing keys at its ``jwks_uri`` (unchanged if it registered its
    JWKS). Raises :class:`gateway.oauth.jwks.JwksUnavailable` when they cannot be fetched."""
    if client is None or client.jwks_uri is None:
        return client
    fetched = await fetcher.keys(client.jwks_uri, refresh=refresh)
    keys = tuple(SigningKey(parsed=p, not_after=None) for p in fetched if p.use == "sig")
    return dataclasses.replace(client, keys=keys)


async def _registered_keys(session: AsyncSession, agency: Agency) -> list[SigningKey]:
    """The agency's registered signing keys (with their ends)."""
    keys: list[SigningKey] = []
    rows = await session.scalars(
        select(AgencyKey).where(AgencyKey.agency_id == agency.id, AgencyKey.use == "sig")
    )
    for row in rows:
        try:
            keys.append(SigningKey(parsed=parse_jwk(row.jwk), not_after=row.not_after))
        except KeyRefused:
            continue
    return keys
