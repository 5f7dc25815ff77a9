"""The store's tables (SQLAlchemy 2 declarative, typed).

Personal data never sits in a column in clear. Each row that holds case data keeps it in a
``*_sealed`` column: canonical JSON sealed with ``keys.envelope`` under a per-row data key, with
the table, row id and column as associated data, so a copy of the database file alone reveals
nothing and a sealed value cannot be moved to another row. What stays in clear is what the
policies must query: ids, agency ids, category, level, dates that end involvement, statuses.
Identifiers partners search by (PNC, CRN, ViSOR) are kept as keyed blind indexes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from gateway.domain import (
    ActionStatus,
    AgencyStatus,
    AgencyType,
    Category,
    DisclosureStatus,
    Level,
    MeetingType,
    NominalStatus,
    Participation,
    RecordKind,
    ReferralKind,
    Role,
    StatusWithheldReason,
)

__all__ = [
    "Action",
    "ActionUpdate",
    "Agency",
    "AgencyKey",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditEntryNominal",
    "Base",
    "ConsoleLoginAttempt",
    "ConsoleOidcLogin",
    "ConsoleSession",
    "ContributorDecision",
    "HazardFlag",
    "HeldNotification",
    "IGOfficer",
    "IdempotentRequest",
    "InformationRecord",
    "IssuedToken",
    "Meeting",
    "MeetingAgency",
    "Minutes",
    "Nominal",
    "NominalChange",
    "OnwardDisclosureRequest",
    "OriginEvidence",
    "OutboxMessage",
    "Referral",
    "ReferralAgency",
    "UsedJti",
    "WarningMarker",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _enum(cls: type[Any], name: str) -> Enum:
    # Stored by value, checked by the database, portable (no native PostgreSQL enum types).
    return Enum(
        cls,
        name=name,
        native_enum=False,
        validate_strings=True,
        length=40,
        values_callable=lambda e: [str(m.value) for m in e],
        create_constraint=True,
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Agency(Base):
    """An agency system registered with the gateway (its OAuth client)."""

    __tablename__ = "agencies"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agency_type: Mapped[AgencyType] = mapped_column(_enum(AgencyType, "agency_type"))
    role: Mapped[Role] = mapped_column(_enum(Role, "agency_role"))
    area: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[AgencyStatus] = mapped_column(
        _enum(AgencyStatus, "agency_status"), default=AgencyStatus.ACTIVE
    )
    jwks_uri: Mapped[str | None] = mapped_column(String(500))
    #: Push endpoint (webhook) and the CA that alone may vouch for it.
    endpoint_url: Mapped[str | None] = mapped_column(String(500))
    endpoint_ca_pem: Mapped[str | None] = mapped_column(String(20_000))
    #: RFC 8705 ``tls_client_auth``: the subject DN (RFC 4514) of the agency's client
    #: certificate, and the CA that alone may issue it. Both None: the method is not open to it.
    tls_client_auth_subject_dn: Mapped[str | None] = mapped_column(String(1000))
    tls_client_ca_pem: Mapped[str | None] = mapped_column(String(20_000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    keys: Mapped[list[AgencyKey]] = relationship(back_populates="agency", lazy="raise")


class AgencyKey(Base):
    """One public key of an agency (signing or encryption); old keys expire after an overlap."""

    __tablename__ = "agency_keys"
    __table_args__ = (UniqueConstraint("agency_id", "kid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    kid: Mapped[str] = mapped_column(String(128))
    use: Mapped[str] = mapped_column(String(3))
    jwk: Mapped[dict[str, Any]] = mapped_column()
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: None while current; set by a rotation to the end of the overlap.
    not_after: Mapped[dt.datetime | None] = mapped_column()

    agency: Mapped[Agency] = relationship(back_populates="keys", lazy="raise")


class Nominal(Base):
    """A MAPPA subject. Names, aliases, date of birth, address and identifiers are sealed.

    Once the Responsible Authority erases its case data (:mod:`gateway.cases.erasure`) the row
    is a tombstone: status ``erased``, when and by whose decision (the agency, its officer and
    the reason code), the details and blind indexes gone (NULL); ids, area, category, level and
    lead agency stay, for the rows and audit entries that name it."""

    __tablename__ = "nominals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    area: Mapped[str] = mapped_column(String(64), index=True)
    category: Mapped[int] = mapped_column(Integer)
    level: Mapped[int] = mapped_column(Integer)
    lead_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    status: Mapped[NominalStatus] = mapped_column(
        _enum(NominalStatus, "nominal_status"), default=NominalStatus.ACTIVE
    )
    status_informed: Mapped[bool] = mapped_column(Boolean, default=False)
    status_withheld_reason: Mapped[StatusWithheldReason | None] = mapped_column(
        _enum(StatusWithheldReason, "status_withheld_reason")
    )
    #: Keyed blind indexes (HMAC) of the PNC id, nDelius CRN and ViSOR reference.
    pnc_index: Mapped[str | None] = mapped_column(String(64), index=True)
    crn_index: Mapped[str | None] = mapped_column(String(64), index=True)
    visor_index: Mapped[str | None] = mapped_column(String(64), index=True)
    #: When the level last changed: involvement granted under the old level ends here.
    level_changed_at: Mapped[dt.datetime | None] = mapped_column()
    #: NULL once the nominal is erased.
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: The erasure's tombstone: when, by which agency and officer, and why (an ErasureReason).
    erased_at: Mapped[dt.datetime | None] = mapped_column()
    erased_by_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    erased_by_officer: Mapped[str | None] = mapped_column(String(64))
    erasure_reason: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        CheckConstraint("category BETWEEN 1 AND 4", name="ck_nominals_category"),
        CheckConstraint("level BETWEEN 1 AND 3", name="ck_nominals_level"),
        #: The level 1 list: an area's level 1 nominals in page order, not the whole register.
        Index("ix_nominals_level_1_list", "area", "level", "created_at", "id"),
    )

    @validates("category")
    def _valid_category(self, key: str, value: object) -> int:
        return int(Category.parse(value))

    @validates("level")
    def _valid_level(self, key: str, value: object) -> int:
        return int(Level.parse(value))


class Referral(Base):
    """A MAPPA A referral (or a non-MAPPA high-risk information-sharing referral)."""

    __tablename__ = "referrals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[ReferralKind] = mapped_column(_enum(ReferralKind, "referral_kind"))
    area: Mapped[str] = mapped_column(String(64), index=True)
    nominal_id: Mapped[str | None] = mapped_column(ForeignKey("nominals.id"), index=True)
    referring_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    referrer_officer: Mapped[str] = mapped_column(String(64))
    category: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="received")
    #: Subject details, reasons, the risk matrix (group x level) and referrer contact (NULL
    #: once its nominal is erased).
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: When screening closed the referral (its involvement grants end here); None while open.
    closed_at: Mapped[dt.datetime | None] = mapped_column()


class ReferralAgency(Base):
    """An agency involved in a referral (grants need-to-know while the referral is live)."""

    __tablename__ = "referral_agencies"

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), primary_key=True)


class InformationRecord(Base):
    """What an agency shares about a nominal. The supplying agency keeps ownership."""

    __tablename__ = "information_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nominal_id: Mapped[str] = mapped_column(ForeignKey("nominals.id"), index=True)
    #: The meeting a written report was sent for (an agency invited that cannot attend).
    meeting_id: Mapped[str | None] = mapped_column(ForeignKey("meetings.id"), index=True)
    owner_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    officer: Mapped[str] = mapped_column(String(64))
    kind: Mapped[RecordKind] = mapped_column(_enum(RecordKind, "record_kind"))
    marking: Mapped[str] = mapped_column(String(40), default="OFFICIAL-SENSITIVE")
    caveats: Mapped[list[Any]] = mapped_column(default=list)
    #: True when any source is a third party (informant, victim, neighbour): redaction needs it
    #: without unsealing.
    has_third_party_source: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The content and its sources (each with a third-party flag and a release flag); NULL once
    #: its nominal is erased.
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The sending agency's JWS over the body, kept as evidence of origin.
    origin_jws_digest: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Meeting(Base):
    """Screening, level 1 professionals, level 2/3 MAPP meetings and serious case reviews."""

    __tablename__ = "meetings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nominal_id: Mapped[str] = mapped_column(ForeignKey("nominals.id"), index=True)
    meeting_type: Mapped[MeetingType] = mapped_column(_enum(MeetingType, "meeting_type"))
    chair_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    chair_officer: Mapped[str] = mapped_column(String(64))
    held_on: Mapped[dt.date] = mapped_column(Date)
    review_date: Mapped[dt.date | None] = mapped_column(Date)
    #: Level at which the meeting was held: involvement ends when the nominal's level changes.
    level_at_meeting: Mapped[int | None] = mapped_column(Integer)
    confidentiality_statement_signed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When the chair or the area's co-ordinator closed the meeting's need: involvement through
    #: the meeting ends then for every agency. Who closed it, and why (sealed: it may name people).
    need_closed_at: Mapped[dt.datetime | None] = mapped_column()
    need_closed_by_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    need_closed_by_officer: Mapped[str | None] = mapped_column(String(64))
    need_closure_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MeetingAgency(Base):
    __tablename__ = "meeting_agencies"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id"), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), primary_key=True)
    participation: Mapped[Participation] = mapped_column(_enum(Participation, "participation"))


class Minutes(Base):
    """MAPPA B minutes: to participants only; anyone else needs the chair's permission."""

    __tablename__ = "minutes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id"), index=True, unique=True)
    author_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    #: Discussion, conclusions and sources (with third-party flags); NULL once its nominal is
    #: erased.
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Action(Base):
    __tablename__ = "actions"
    __table_args__ = (
        #: Need-to-know's question, an agency's actions at one nominal's meetings, answered from
        #: the nominal's few meetings, not from every action the agency owns.
        Index("ix_actions_meeting_owner", "meeting_id", "owner_agency_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id"), index=True)
    owner_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    due_date: Mapped[dt.date] = mapped_column(Date)
    review_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[ActionStatus] = mapped_column(
        _enum(ActionStatus, "action_status"), default=ActionStatus.OPEN
    )
    #: NULL once its nominal is erased.
    description_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class HazardFlag(Base):
    """The ICS ``HZD`` marker for children's services: that a relative is known to MAPPA.

    Only the allow-listed fields exist here; there is no column an offence could go in.
    """

    __tablename__ = "hazard_flags"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nominal_id: Mapped[str] = mapped_column(ForeignKey("nominals.id"), index=True)
    recipient_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    raised_by_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    review_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="active")
    #: Child or family reference, relationship, contact (NULL once its nominal is erased).
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WarningMarker(Base):
    """A housing property warning marker (``PWM``) the RA raised, until it is revoked.

    Only the allow-listed fields exist: the UPRN, the marker code and the contact are sealed;
    there is no column a name, an offence or a third party could go in.
    """

    __tablename__ = "warning_markers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nominal_id: Mapped[str] = mapped_column(ForeignKey("nominals.id"), index=True)
    recipient_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    raised_by_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    review_date: Mapped[dt.date | None] = mapped_column(Date)
    #: ``sent`` (to the housing provider) or ``revoked``.
    status: Mapped[str] = mapped_column(String(20), default="sent")
    #: UPRN, marker code, contact (NULL once its nominal is erased).
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_by_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    #: A code from the revocation vocabulary (never free text).
    revoked_reason: Mapped[str | None] = mapped_column(String(40))


class OnwardDisclosureRequest(Base):
    """A request to share minutes or a record beyond the meeting, and the chair's decision."""

    __tablename__ = "onward_disclosure_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    requesting_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    requesting_officer: Mapped[str] = mapped_column(String(64))
    meeting_id: Mapped[str | None] = mapped_column(ForeignKey("meetings.id"), index=True)
    record_id: Mapped[str | None] = mapped_column(ForeignKey("information_records.id"))
    recipient_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    purpose: Mapped[str] = mapped_column(String(64))
    status: Mapped[DisclosureStatus] = mapped_column(
        _enum(DisclosureStatus, "disclosure_status"), default=DisclosureStatus.PENDING
    )
    #: What was approved, e.g. ["conclusions", "actions"]; never more than asked for.
    approved_parts: Mapped[list[Any]] = mapped_column(default=list)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime | None] = mapped_column()
    #: The recipient's description and the reasons (sealed: may name people; NULL once its
    #: nominal is erased).
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


Index("ix_meeting_agencies_agency", MeetingAgency.agency_id)
Index("ix_referral_agencies_agency", ReferralAgency.agency_id)


class AuditEntry(Base):
    """One entry of the audit log (DPA 2018 s.62 operations, refusals, authentication failures).

    Rows are inserted in the transaction of the act they record, with ``seq`` and ``leaf_hash``
    empty; the sequencer gives them contiguous positions in the Merkle tree afterwards, so
    transactions that commit out of order can never fork or skip the log. Only references and
    codes are stored here, never personal data.
    """

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    seq: Mapped[int | None] = mapped_column(Integer, unique=True)
    leaf_hash: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    operation: Mapped[str] = mapped_column(String(40), index=True)
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    agency_id: Mapped[str | None] = mapped_column(String(200), index=True)
    officer_id: Mapped[str | None] = mapped_column(String(200), index=True)
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    nominal_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    record_refs: Mapped[list[Any]] = mapped_column(default=list)
    legal_basis: Mapped[str | None] = mapped_column(String(64), index=True)
    purpose: Mapped[str | None] = mapped_column(String(64), index=True)
    policy_version: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(String(128))
    withheld: Mapped[list[Any]] = mapped_column(default=list)
    payload_digest: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(64))
    reason_code: Mapped[str | None] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditEntryNominal(Base):
    """The nominals an entry about several of them disclosed (a page of the level 1 list, whose
    ``nominal_ref`` is empty and whose ``record_refs`` are the nominals' ids): an index over the
    log, written in the entry's transaction, by which an erasure finds every agency that
    received the nominal that way (`gateway.cases.erasure`). Ids only, as the entry itself."""

    __tablename__ = "audit_entry_nominals"

    nominal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class AuditCheckpoint(Base):
    """A signed tree head (C2SP signed note) over the first ``tree_size`` sequenced entries."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(4000))
    #: The right edge of the tree (compact range), so the sequencer resumes in O(log n).
    frontier: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IGOfficer(Base):
    """An information governance officer account for the console: an argon2 password hash
    (``"!"`` when the officer signs in through OIDC only), the OIDC identity (issuer and
    subject, the provider's stable, never reassigned identifier) registered for the officer,
    and the officer's review scope (`gateway.console.scope`): the MAPPA areas whose audit
    entries the officer reads, or ``national`` for every area. Neither, the default (also of a
    row written without them), reads nothing."""

    __tablename__ = "ig_officers"
    __table_args__ = (
        UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_ig_officers_oidc_issuer"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    oidc_issuer: Mapped[str | None] = mapped_column(String(500))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    #: Every area's entries: a deliberate grant, never a default (and never with ``areas``).
    national: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The MAPPA area codes (as agencies are registered with) whose entries the officer reads.
    areas: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))


class ConsoleOidcLogin(Base):
    """An OIDC sign-in under way: its ``state`` (hashed, the key), ``nonce`` and PKCE verifier,
    and the hash of the token in the browser's binding cookie. Taken (deleted) by the callback,
    so a state or code is good once; expired rows may be purged."""

    __tablename__ = "console_oidc_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    binding_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class ConsoleLoginAttempt(Base):
    """A console password sign-in under way for an officer id (as typed; only its SHA-256 is
    kept). It is reserved, under a per-id lock, before the password is checked, and taken away
    in the transaction that records the outcome: a failure's audit entry then counts instead,
    a success counts nothing. So concurrent attempts cannot all pass the per-officer lock.
    One left by an attempt that never finished counts as a failure until the window passes, and
    is purged after that."""

    __tablename__ = "console_login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    officer_key: Mapped[str] = mapped_column(String(64), index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(index=True)


class ConsoleSession(Base):
    """A signed-in IG officer's console session. Only a hash of the cookie's token is kept, so
    a copy of the table cannot be replayed; the CSRF token is the session's own."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    officer_id: Mapped[str] = mapped_column(ForeignKey("ig_officers.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class UsedJti(Base):
    """A spent ``jti`` (client assertion or DPoP proof): the replay store all replicas share.

    ``key`` is SHA-256 over the kind, the issuer (client id or DPoP key thumbprint) and the
    ``jti``, so the caller's free text is never stored and the primary key's uniqueness is what
    makes two replicas unable to both accept the same ``jti``. Rows may be purged once
    ``expires_at`` has passed: by then the assertion or proof is refused as expired anyway.
    """

    __tablename__ = "used_jtis"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    agency_id: Mapped[str | None] = mapped_column(String(64))
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class IssuedToken(Base):
    """One access token issued (never the token itself): for the IG officer and for counting."""

    __tablename__ = "issued_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    #: What the token is bound to: the RFC 7638 thumbprint of its DPoP key, or (RFC 8705) the
    #: SHA-256 thumbprint of the client certificate. Exactly one is set.
    jkt: Mapped[str | None] = mapped_column(String(64))
    x5t_s256: Mapped[str | None] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()


class OutboxMessage(Base):
    """A message owed to another agency (transactional outbox, ``gateway.delivery``).

    Written in the transaction of the act it delivers and of its audit entry; ``body`` is the
    compact JWE already sealed for the recipient, so neither the relay nor the inbox ever holds
    case data in clear. A relay leases due rows (``lease_owner`` until ``lease_expires_at``),
    pushes outside the transaction and marks the row delivered on the partner's 2xx; the
    recipient may also pull it from ``/v1/inbox`` and acknowledge it. ``last_error_code`` is a
    code, never a partner's answer.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'leased', 'delivered', 'dead')", name="ck_outbox_status"
        ),
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_inbox", "recipient_agency_id", "status", "created_at"),
        #: The relay's per-nominal order: an earlier message about the nominal still open.
        Index("ix_outbox_nominal", "recipient_agency_id", "nominal_ref", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    recipient_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    kind: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    nominal_ref: Mapped[str | None] = mapped_column(String(64))
    #: The meeting a message of minutes or of an onward disclosure is about (what it is decided
    #: on again at push and pull); null for other kinds and for rows queued before it was kept.
    subject_ref: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()


class HeldNotification(Base):
    """An owner notification that could not be sealed (the owner had no usable encryption key).

    The notification (references and codes only) is kept sealed at rest until the owner
    registers a key; it is then sealed to that key and enqueued under this row's id, which is
    also its outbox message id, so it goes out exactly once. ``released_at`` says when.
    """

    __tablename__ = "held_notifications"
    __table_args__ = (
        Index("ix_held_notifications_owner", "owner_agency_id", "released_at"),
        #: The periodic release: the owners with a notification still held, not every one sent.
        Index("ix_held_notifications_unreleased", "released_at", "owner_agency_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    kind: Mapped[str] = mapped_column(String(40))
    nominal_ref: Mapped[str | None] = mapped_column(String(64))
    #: Why it was held (a code, e.g. ``recipient_key_unavailable``).
    reason: Mapped[str] = mapped_column(String(64))
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    held_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    released_at: Mapped[dt.datetime | None] = mapped_column()


class NominalChange(Base):
    """The history of a nominal: category and level changes, screening outcomes, deregistration.

    Who changed what, from which value to which, when; the reasons are sealed (they may name
    people). Only a Responsible Authority agency makes these changes.
    """

    __tablename__ = "nominal_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nominal_id: Mapped[str] = mapped_column(ForeignKey("nominals.id"), index=True)
    #: ``category``, ``level``, ``screening``, ``deregistration`` or ``erasure``.
    kind: Mapped[str] = mapped_column(String(20))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    officer: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(String(20))
    new_value: Mapped[str | None] = mapped_column(String(20))
    meeting_id: Mapped[str | None] = mapped_column(ForeignKey("meetings.id"))
    #: The reason; NULL once the nominal is erased (the erasure's own row keeps its note).
    details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ContributorDecision(Base):
    """A Responsible Authority's s.325(4A)(c) decision: ``agency_id`` could contribute on this
    nominal, for these purposes, until the end of ``ends_on`` or until it is revoked.

    ``ends_at`` is when the decision stops standing: the end of ``ends_on`` in the policy's time
    zone, brought forward to the moment of revocation. The reasons are sealed (they may name
    people); who decided, when, and for what purposes stay clear for the policies.
    """

    __tablename__ = "contributor_decisions"
    __table_args__ = (Index("ix_contributor_decisions_nominal_agency", "nominal_id", "agency_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nominal_id: Mapped[str] = mapped_column(ForeignKey("nominals.id"))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    recorded_by_agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    officer: Mapped[str] = mapped_column(String(64))
    #: Purpose codes of the legal-basis register the contributor may rely on the basis for.
    purposes: Mapped[list[Any]] = mapped_column(default=list)
    ends_on: Mapped[dt.date] = mapped_column(Date)
    review_date: Mapped[dt.date | None] = mapped_column(Date)
    ends_at: Mapped[dt.datetime] = mapped_column()
    #: NULL once its nominal is erased.
    reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_by_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    revoked_officer: Mapped[str | None] = mapped_column(String(64))
    revocation_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)


class ActionUpdate(Base):
    """One change of an action point's status: who, from what, to what, when; the note is
    sealed (it may name people)."""

    __tablename__ = "action_updates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    action_id: Mapped[str] = mapped_column(ForeignKey("actions.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    officer: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OriginEvidence(Base):
    """The agency's own signed JWS of a write, kept sealed as evidence of origin.

    Keyed by the write's audit entry, whose ``payload_digest`` is the digest of this JWS: the
    tamper-evident log vouches for the bytes, the agency's registered key for the signature.
    """

    __tablename__ = "origin_evidence"

    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    sender_kid: Mapped[str] = mapped_column(String(128))
    jws_digest: Mapped[str] = mapped_column(String(80))
    nominal_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    received_at: Mapped[dt.datetime] = mapped_column()
    jws_sealed: Mapped[bytes] = mapped_column(LargeBinary)


class IdempotentRequest(Base):
    """A write's ``Idempotency-Key`` and the answer it got, shared by every replica.

    The primary key (agency, key) makes two replicas unable to both perform the same write; the
    digest of the request (method, path, opened body) tells a retry from a reuse with another
    body. The answer is kept sealed and sealed to the caller afresh when replayed.
    """

    __tablename__ = "idempotency_keys"

    agency_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    answer_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: The audit entry of the original write: a replay's own entry names it ("replay of").
    audit_entry_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
