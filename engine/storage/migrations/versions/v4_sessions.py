"""Sign-in sessions in the database, so that signing out ends a session in every process.

Releases before migrations created this table on their own when an Engine was constructed:
it may be there already, so this revision creates only what is missing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import TABLE_OPTIONS, WHEN, index_if_missing, target_schema

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_table(
        "signoff_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        schema=schema,
        **TABLE_OPTIONS,
        if_not_exists=True,
    )
    for name, column in (
        ("ix_signoff_sessions_user", "user"),
        ("ix_signoff_sessions_expires", "expires_at"),
    ):
        op.create_index(
            name, "signoff_sessions", [column], schema=schema, if_not_exists=index_if_missing()
        )


def downgrade() -> None:
    op.drop_table("signoff_sessions", schema=target_schema())
