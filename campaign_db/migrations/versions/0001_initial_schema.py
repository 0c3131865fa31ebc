"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import campaign_db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=280), nullable=False),
        sa.Column("offer_key", sa.String(length=64), nullable=True),
        sa.Column("text_key", sa.String(length=64), nullable=True),
        sa.Column("channel_key", sa.String(length=64), nullable=True),
        sa.Column("send_time_key", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signature"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    op.create_table(
        "catalog_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loaded_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("loaded_by", sa.String(length=200), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "channel",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("max_length", sa.Integer(), nullable=True),
        sa.Column("supports_subject", sa.Boolean(), nullable=False),
        sa.Column("supports_image", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "conversion",
        sa.Column("conversion_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("occurred_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("received_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("conversion_id"),
    )
    with op.batch_alter_table("conversion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_conversion_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_conversion_decision_id"), ["decision_id"], unique=False
        )

    op.create_table(
        "customer",
        sa.Column("health_class", sa.String(length=1), nullable=False),
        sa.Column("usage_index", sa.Float(), nullable=False),
        sa.Column("customer_since", sa.Date(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "decision_frame",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column(
            "triggers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column(
            "health_classes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "offers_by_health_class",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "channels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "send_times",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("allow_no_contact", sa.Boolean(), nullable=False),
        sa.Column("max_offer_cost", sa.Float(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column(
            "contact_policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "exploration",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "guardrails",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("attribution_window_days", sa.Integer(), nullable=False),
        sa.Column("reward_definition", sa.String(length=24), nullable=False),
        sa.Column(
            "reward_range",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "safe_default",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("approved_at", campaign_db.types.UTCDateTime(), nullable=True),
        sa.Column("retired_at", campaign_db.types.UTCDateTime(), nullable=True),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "version", name="uq_decision_frame_key_version"),
    )
    with op.batch_alter_table("decision_frame", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decision_frame_key"), ["key"], unique=False)
        batch_op.create_index(batch_op.f("ix_decision_frame_status"), ["status"], unique=False)

    op.create_table(
        "decision_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("frame_key", sa.String(length=64), nullable=True),
        sa.Column("frame_version", sa.Integer(), nullable=True),
        sa.Column("catalog_revision", sa.Integer(), nullable=True),
        sa.Column("policy_name", sa.String(length=128), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("candidate_action_ids", campaign_db.types.Int32Array(), nullable=True),
        sa.Column("probabilities", campaign_db.types.Float64Array(), nullable=True),
        sa.Column("chosen_action_id", sa.Integer(), nullable=True),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("send_at", campaign_db.types.UTCDateTime(), nullable=True),
        sa.Column(
            "eligibility_trace",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    with op.batch_alter_table("decision_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decision_log_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_decision_log_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_decision_log_frame_key"), ["frame_key"], unique=False)

    op.create_table(
        "offer",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "send_time",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "weekdays",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("start", sa.String(length=5), nullable=True),
        sa.Column("end", sa.String(length=5), nullable=True),
        sa.Column("occasion_start", sa.String(length=5), nullable=True),
        sa.Column("occasion_end", sa.String(length=5), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "trigger",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("health_from", sa.String(length=1), nullable=True),
        sa.Column("health_to", sa.String(length=1), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "consent",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("channel_key", sa.String(length=64), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("changed_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_key"],
            ["channel.key"],
        ),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", "channel_key"),
    )
    op.create_table(
        "contact_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.Column("frame_key", sa.String(length=64), nullable=False),
        sa.Column("channel_key", sa.String(length=64), nullable=False),
        sa.Column("send_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contact_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_history_customer_send_at", ["customer_id", "send_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_contact_history_decision_id"), ["decision_id"], unique=False
        )

    op.create_table(
        "delivery_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("received_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decision_log.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    with op.batch_alter_table("delivery_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_event_decision_id"), ["decision_id"], unique=False
        )

    op.create_table(
        "reward",
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("window_closes_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("conversions", sa.Integer(), nullable=False),
        sa.Column("finalized_at", campaign_db.types.UTCDateTime(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decision_log.id"],
        ),
        sa.PrimaryKeyConstraint("decision_id"),
        sa.UniqueConstraint("sequence"),
    )
    with op.batch_alter_table("reward", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reward_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_reward_window_closes_at"), ["window_closes_at"], unique=False
        )

    op.create_table(
        "text",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("offer_key", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "channels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("tone", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("image_url", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["offer_key"],
            ["offer.key"],
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("text", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_text_offer_key"), ["offer_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("text", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_text_offer_key"))

    op.drop_table("text")
    with op.batch_alter_table("reward", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reward_window_closes_at"))
        batch_op.drop_index(batch_op.f("ix_reward_status"))

    op.drop_table("reward")
    with op.batch_alter_table("delivery_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_event_decision_id"))

    op.drop_table("delivery_event")
    with op.batch_alter_table("contact_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_history_decision_id"))
        batch_op.drop_index("ix_contact_history_customer_send_at")

    op.drop_table("contact_history")
    op.drop_table("consent")
    op.drop_table("trigger")
    op.drop_table("send_time")
    op.drop_table("offer")
    with op.batch_alter_table("decision_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decision_log_frame_key"))
        batch_op.drop_index(batch_op.f("ix_decision_log_customer_id"))
        batch_op.drop_index(batch_op.f("ix_decision_log_created_at"))

    op.drop_table("decision_log")
    with op.batch_alter_table("decision_frame", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decision_frame_status"))
        batch_op.drop_index(batch_op.f("ix_decision_frame_key"))

    op.drop_table("decision_frame")
    op.drop_table("customer")
    with op.batch_alter_table("conversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_conversion_decision_id"))
        batch_op.drop_index(batch_op.f("ix_conversion_customer_id"))

    op.drop_table("conversion")
    op.drop_table("channel")
    op.drop_table("catalog_revision")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))

    op.drop_table("audit_log")
    op.drop_table("action")
