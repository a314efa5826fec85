"""What the dashboard of issue 12 reads: an index for per-status counts of one workflow (the
instances list filtered by workflow counts from the index alone), and the table that makes an
approval link single-use (the ids of links already used, until they expire).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import target_schema

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_index(
        "ix_signoff_instances_workflow_status",
        "signoff_instances",
        ["workflow", "status"],
        schema=schema,
        if_not_exists=True,
    )
    op.create_table(
        "signoff_spent_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("spent_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        schema=schema,
        if_not_exists=True,
    )
    op.create_index(
        "ix_signoff_spent_keys_expires",
        "signoff_spent_keys",
        ["expires_at"],
        schema=schema,
        if_not_exists=True,
    )


def downgrade() -> None:
    schema = target_schema()
    op.drop_table("signoff_spent_keys", schema=schema)
    op.drop_index(
        "ix_signoff_instances_workflow_status", table_name="signoff_instances", schema=schema
    )
