"""rankings for pull channels

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import campaign_db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ranking_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=False),
        sa.Column("channel_key", sa.String(length=64), nullable=False),
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
        sa.Column(
            "slots",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
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
        sa.Column(
            "request_digest",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
    )
    with op.batch_alter_table("ranking_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ranking_log_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ranking_log_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ranking_log_frame_key"), ["frame_key"], unique=False)

    op.create_table(
        "ranking_event",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("ranking_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("channel_key", sa.String(length=64), nullable=False),
        sa.Column("offer_key", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("received_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ranking_id"],
            ["ranking_log.id"],
        ),
        sa.PrimaryKeyConstraint("event_id"),
        sa.UniqueConstraint("ranking_id", "slot", "kind"),
    )
    with op.batch_alter_table("ranking_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ranking_event_impressions",
            ["customer_id", "channel_key", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_ranking_event_ranking_id"), ["ranking_id"], unique=False
        )

    op.create_table(
        "slot_reward",
        sa.Column("ranking_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("window_closes_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("finalized_at", campaign_db.types.UTCDateTime(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ranking_id"],
            ["ranking_log.id"],
        ),
        sa.PrimaryKeyConstraint("ranking_id", "slot"),
        sa.UniqueConstraint("sequence"),
    )
    with op.batch_alter_table("slot_reward", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slot_reward_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_slot_reward_window_closes_at"), ["window_closes_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("slot_reward", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slot_reward_window_closes_at"))
        batch_op.drop_index(batch_op.f("ix_slot_reward_status"))

    op.drop_table("slot_reward")
    with op.batch_alter_table("ranking_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ranking_event_ranking_id"))
        batch_op.drop_index("ix_ranking_event_impressions")

    op.drop_table("ranking_event")
    with op.batch_alter_table("ranking_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ranking_log_frame_key"))
        batch_op.drop_index(batch_op.f("ix_ranking_log_customer_id"))
        batch_op.drop_index(batch_op.f("ix_ranking_log_created_at"))

    op.drop_table("ranking_log")
