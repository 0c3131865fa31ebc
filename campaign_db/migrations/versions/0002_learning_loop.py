"""learning loop

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import campaign_db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "learner_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_name", sa.String(length=128), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("examples_learned", sa.Integer(), nullable=False),
        sa.Column("base_version", sa.String(length=64), nullable=True),
        sa.Column("published_version", sa.String(length=64), nullable=True),
        sa.Column(
            "spec",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("model", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("learner_checkpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_learner_checkpoint_policy_name"), ["policy_name"], unique=False
        )

    op.create_table(
        "health_class_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("previous", sa.String(length=1), nullable=True),
        sa.Column("health_class", sa.String(length=1), nullable=False),
        sa.Column("usage_index", sa.Float(), nullable=False),
        sa.Column("changed_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("trigger_key", sa.String(length=64), nullable=True),
        sa.Column("decision_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("health_class_change", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_class_change_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("channel_key", sa.String(length=64), nullable=False),
        sa.Column("send_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("created_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("leased_until", campaign_db.types.UTCDateTime(), nullable=True),
        sa.Column("acked_at", campaign_db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decision_log.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("decision_id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_channel_key"), ["channel_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_status"), ["status"], unique=False)

    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("usage_observed_at", campaign_db.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("recency_days", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("sessions_30d", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("minutes_30d", sa.Float(), nullable=True))

    with op.batch_alter_table("reward", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("conversion_value", sa.Float(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("late_conversions", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("direct_value", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("sent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("failed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("unsubscribed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("complained", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("reward", schema=None) as batch_op:
        batch_op.drop_column("complained")
        batch_op.drop_column("unsubscribed")
        batch_op.drop_column("failed")
        batch_op.drop_column("sent")
        batch_op.drop_column("direct_value")
        batch_op.drop_column("late_conversions")
        batch_op.drop_column("conversion_value")

    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_column("minutes_30d")
        batch_op.drop_column("sessions_30d")
        batch_op.drop_column("recency_days")
        batch_op.drop_column("usage_observed_at")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_status"))
        batch_op.drop_index(batch_op.f("ix_outbox_channel_key"))

    op.drop_table("outbox")
    with op.batch_alter_table("health_class_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_health_class_change_customer_id"))

    op.drop_table("health_class_change")
    with op.batch_alter_table("learner_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_learner_checkpoint_policy_name"))

    op.drop_table("learner_checkpoint")
