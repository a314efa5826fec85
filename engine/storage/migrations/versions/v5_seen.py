"""Deliveries seen recently (Slack interactions), so that a replay is refused in every process.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import TABLE_OPTIONS, WHEN, index_if_missing, target_schema

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_table(
        "signoff_seen",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expires_at", WHEN, nullable=False),
        schema=schema,
        **TABLE_OPTIONS,
        if_not_exists=True,
    )
    op.create_index(
        "ix_signoff_seen_expires",
        "signoff_seen",
        ["expires_at"],
        schema=schema,
        if_not_exists=index_if_missing(),
    )


def downgrade() -> None:
    op.drop_table("signoff_seen", schema=target_schema())
