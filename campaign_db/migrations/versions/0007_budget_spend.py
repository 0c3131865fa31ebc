"""budget spend: one counter per frame budget and period, each decision's charges, and the
prices a decision paid

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import campaign_db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budget_spend",
        sa.Column("frame_key", sa.String(length=64), nullable=False),
        sa.Column("budget_key", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("updated_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("frame_key", "budget_key", "period_start"),
    )
    op.create_table(
        "budget_charge",
        sa.Column("decision_id", sa.Uuid(), nullable=False),
        sa.Column("budget_key", sa.String(length=64), nullable=False),
        sa.Column("frame_key", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("decision_id", "budget_key"),
    )
    with op.batch_alter_table("decision_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "budget_prices",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("decision_log", schema=None) as batch_op:
        batch_op.drop_column("budget_prices")
    op.drop_table("budget_charge")
    op.drop_table("budget_spend")
