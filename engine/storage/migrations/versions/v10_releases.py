"""Releases (issue 28): which code of each workflow engines ran on this database, so that
during a rolling deploy or after a rollback an old release leaves what a newer one moved to it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import LONG_TEXT, TABLE_OPTIONS, WHEN, target_schema

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signoff_releases",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.Column("retired_at", WHEN, nullable=True),
        sa.Column("statements", LONG_TEXT, nullable=False),
        sa.Column("renames", LONG_TEXT, nullable=False),
        sa.UniqueConstraint(
            "workflow", "fingerprint", name="uq_signoff_releases_workflow_fingerprint"
        ),
        **TABLE_OPTIONS,
        schema=target_schema(),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("signoff_releases", schema=target_schema())
