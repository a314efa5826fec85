"""Delegations (issue 23): "away until ..., send my requests to ...", set by a user on the
dashboard; the waits that begin meanwhile hand that user's part to the delegate.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import TABLE_OPTIONS, WHEN, target_schema

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signoff_delegations",
        sa.Column("user", sa.String(200), primary_key=True),
        sa.Column("delegate", sa.String(200), nullable=False),
        sa.Column("until", WHEN, nullable=False),
        sa.Column("set_at", WHEN, nullable=False),
        **TABLE_OPTIONS,
        schema=target_schema(),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("signoff_delegations", schema=target_schema())
