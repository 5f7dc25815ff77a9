"""domain model

Revision ID: 0001
Revises:
Create Date: 2026-11-23 08:28:59.071090
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "agencies",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "agency_type",
            sa.Enum(
                "police",
                "probation",
                "prison",
                "childrens_services",
                "adult_social_care",
                "health",
                "mental_health",
                "housing",
                "youth_offending",
                "education",
                "jobcentre_plus",
                "electronic_monitoring",
                "uk_visas_immigration",
                "mappa_coordination",
                "other",
                name="agency_type",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column(
            "role",
            sa.Enum(
                "responsible_authority",
                "duty_to_cooperate",
                "other_contributor",
                "associate",
                name="agency_role",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("area", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "suspended",
                name="agency_status",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("jwks_uri", sa.String(length=500), nullable=True),
        sa.Column("endpoint_url", sa.String(length=500), nullable=True),
        sa.Column("endpoint_ca_pem", sa.String(length=20000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agencies_area"), ["area"], unique=False)

    op.create_table(
        "agency_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("use", sa.String(length=3), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "kid"),
    )
    with op.batch_alter_table("agency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agency_keys_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "nominals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("area", sa.String(length=64), nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("lead_agency_id", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "deregistered",
                name="nominal_status",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("status_informed", sa.Boolean(), nullable=False),
        sa.Column(
            "status_withheld_reason",
            sa.Enum(
                "would_destabilise",
                "would_endanger_others",
                name="status_withheld_reason",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=True,
        ),
        sa.Column("pnc_index", sa.String(length=64), nullable=True),
        sa.Column("crn_index", sa.String(length=64), nullable=True),
        sa.Column("visor_index", sa.String(length=64), nullable=True),
        sa.Column("level_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("other_contributors_allowed", sa.Boolean(), nullable=False),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("category BETWEEN 1 AND 4", name="ck_nominals_category"),
        sa.CheckConstraint("level BETWEEN 1 AND 3", name="ck_nominals_level"),
        sa.ForeignKeyConstraint(
            ["lead_agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nominals_area"), ["area"], unique=False)
        batch_op.create_index(batch_op.f("ix_nominals_crn_index"), ["crn_index"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_nominals_lead_agency_id"), ["lead_agency_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_nominals_pnc_index"), ["pnc_index"], unique=False)
        batch_op.create_index(batch_op.f("ix_nominals_visor_index"), ["visor_index"], unique=False)

    op.create_table(
        "hazard_flags",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_agency_id", sa.String(length=64), nullable=False),
        sa.Column("raised_by_agency_id", sa.String(length=64), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["nominal_id"],
            ["nominals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["raised_by_agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recipient_agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hazard_flags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hazard_flags_nominal_id"), ["nominal_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_hazard_flags_recipient_agency_id"), ["recipient_agency_id"], unique=False
        )

    op.create_table(
        "information_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=False),
        sa.Column("owner_agency_id", sa.String(length=64), nullable=False),
        sa.Column("officer", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "risk_assessment",
                "intelligence",
                "conviction",
                "address",
                "case_note",
                "tenancy",
                "written_report",
                name="record_kind",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("marking", sa.String(length=40), nullable=False),
        sa.Column("caveats", sa.JSON(), nullable=False),
        sa.Column("has_third_party_source", sa.Boolean(), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("origin_jws_digest", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["nominal_id"],
            ["nominals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("information_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_information_records_nominal_id"), ["nominal_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_information_records_owner_agency_id"), ["owner_agency_id"], unique=False
        )

    op.create_table(
        "meetings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=False),
        sa.Column(
            "meeting_type",
            sa.Enum(
                "screening",
                "level_1_professionals",
                "level_2",
                "level_3",
                "serious_case_review",
                name="meeting_type",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("chair_agency_id", sa.String(length=64), nullable=False),
        sa.Column("chair_officer", sa.String(length=64), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=True),
        sa.Column("level_at_meeting", sa.Integer(), nullable=True),
        sa.Column("confidentiality_statement_signed", sa.Boolean(), nullable=False),
        sa.Column("need_closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chair_agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["nominal_id"],
            ["nominals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meetings_nominal_id"), ["nominal_id"], unique=False)

    op.create_table(
        "referrals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "mappa",
                "high_risk_information_sharing",
                name="referral_kind",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("area", sa.String(length=64), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=True),
        sa.Column("referring_agency_id", sa.String(length=64), nullable=False),
        sa.Column("referrer_officer", sa.String(length=64), nullable=False),
        sa.Column("category", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["nominal_id"],
            ["nominals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["referring_agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_area"), ["area"], unique=False)
        batch_op.create_index(batch_op.f("ix_referrals_nominal_id"), ["nominal_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_referrals_referring_agency_id"), ["referring_agency_id"], unique=False
        )

    op.create_table(
        "actions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("meeting_id", sa.String(length=36), nullable=False),
        sa.Column("owner_agency_id", sa.String(length=64), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "done",
                "cancelled",
                name="action_status",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("description_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actions_meeting_id"), ["meeting_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_actions_owner_agency_id"), ["owner_agency_id"], unique=False
        )

    op.create_table(
        "meeting_agencies",
        sa.Column("meeting_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column(
            "participation",
            sa.Enum(
                "invited",
                "attended",
                "minutes_only",
                name="participation",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.PrimaryKeyConstraint("meeting_id", "agency_id"),
    )
    with op.batch_alter_table("meeting_agencies", schema=None) as batch_op:
        batch_op.create_index("ix_meeting_agencies_agency", ["agency_id"], unique=False)

    op.create_table(
        "minutes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("meeting_id", sa.String(length=36), nullable=False),
        sa.Column("author_agency_id", sa.String(length=64), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("minutes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_minutes_meeting_id"), ["meeting_id"], unique=True)

    op.create_table(
        "onward_disclosure_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("requesting_agency_id", sa.String(length=64), nullable=False),
        sa.Column("requesting_officer", sa.String(length=64), nullable=False),
        sa.Column("meeting_id", sa.String(length=36), nullable=True),
        sa.Column("record_id", sa.String(length=36), nullable=True),
        sa.Column("recipient_agency_id", sa.String(length=64), nullable=True),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "refused",
                name="disclosure_status",
                native_enum=False,
                create_constraint=True,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("approved_parts", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recipient_agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["information_records.id"],
        ),
        sa.ForeignKeyConstraint(
            ["requesting_agency_id"],
            ["agencies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("onward_disclosure_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_onward_disclosure_requests_meeting_id"), ["meeting_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_onward_disclosure_requests_requesting_agency_id"),
            ["requesting_agency_id"],
            unique=False,
        )

    op.create_table(
        "referral_agencies",
        sa.Column("referral_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"],
            ["referrals.id"],
        ),
        sa.PrimaryKeyConstraint("referral_id", "agency_id"),
    )
    with op.batch_alter_table("referral_agencies", schema=None) as batch_op:
        batch_op.create_index("ix_referral_agencies_agency", ["agency_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("referral_agencies", schema=None) as batch_op:
        batch_op.drop_index("ix_referral_agencies_agency")

    op.drop_table("referral_agencies")
    with op.batch_alter_table("onward_disclosure_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_onward_disclosure_requests_requesting_agency_id"))
        batch_op.drop_index(batch_op.f("ix_onward_disclosure_requests_meeting_id"))

    op.drop_table("onward_disclosure_requests")
    with op.batch_alter_table("minutes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_minutes_meeting_id"))

    op.drop_table("minutes")
    with op.batch_alter_table("meeting_agencies", schema=None) as batch_op:
        batch_op.drop_index("ix_meeting_agencies_agency")

    op.drop_table("meeting_agencies")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_owner_agency_id"))
        batch_op.drop_index(batch_op.f("ix_actions_meeting_id"))

    op.drop_table("actions")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_referring_agency_id"))
        batch_op.drop_index(batch_op.f("ix_referrals_nominal_id"))
        batch_op.drop_index(batch_op.f("ix_referrals_area"))

    op.drop_table("referrals")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meetings_nominal_id"))

    op.drop_table("meetings")
    with op.batch_alter_table("information_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_information_records_owner_agency_id"))
        batch_op.drop_index(batch_op.f("ix_information_records_nominal_id"))

    op.drop_table("information_records")
    with op.batch_alter_table("hazard_flags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hazard_flags_recipient_agency_id"))
        batch_op.drop_index(batch_op.f("ix_hazard_flags_nominal_id"))

    op.drop_table("hazard_flags")
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nominals_visor_index"))
        batch_op.drop_index(batch_op.f("ix_nominals_pnc_index"))
        batch_op.drop_index(batch_op.f("ix_nominals_lead_agency_id"))
        batch_op.drop_index(batch_op.f("ix_nominals_crn_index"))
        batch_op.drop_index(batch_op.f("ix_nominals_area"))

    op.drop_table("nominals")
    with op.batch_alter_table("agency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agency_keys_agency_id"))

    op.drop_table("agency_keys")
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agencies_area"))

    op.drop_table("agencies")
