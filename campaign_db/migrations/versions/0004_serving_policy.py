"""serving policy: the versions the service approved, with their training cut-off

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import campaign_db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "serving_policy",
        sa.Column("policy_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("alias_synced", sa.Boolean(), nullable=False),
        sa.Column("tampered_alias", sa.String(length=64), nullable=True),
        sa.Column("updated_at", campaign_db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("policy_name"),
    )
    # what served before this table existed: the version each policy's newest checkpoint was
    # published as (or followed)
    op.execute(
        """
        INSERT INTO serving_policy
            (policy_name, version, cursor, source, alias_synced, updated_at, updated_by)
        SELECT c.policy_name, c.published_version, c.cursor, 'online', true, c.created_at,
               'migration'
        FROM learner_checkpoint c
        WHERE c.published_version IS NOT NULL
          AND c.published_version NOT LIKE 'online-%'
          AND c.id = (SELECT max(n.id) FROM learner_checkpoint n
                      WHERE n.policy_name = c.policy_name AND n.published_version IS NOT NULL)
        """
    )


def downgrade() -> None:
    op.drop_table("serving_policy")
