"""Slack notices through the outbox (issue 23): a reply or an edit names the announcement it
belongs to (`parent`), and a sent post keeps where it went (`result`: its channel and ts), so
later edits and thread replies find it; `maybe_sent` marks a message an attempt may have
posted before it failed (a timeout, a lost answer), which the next attempt looks for first.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import LONG_TEXT, target_schema

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    found = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("signoff_outbox", schema)}
    if "parent" not in found:
        op.add_column("signoff_outbox", sa.Column("parent", sa.String(64)), schema=schema)
    if "result" not in found:
        op.add_column("signoff_outbox", sa.Column("result", LONG_TEXT), schema=schema)
    if "maybe_sent" not in found:
        op.add_column(
            "signoff_outbox",
            sa.Column("maybe_sent", sa.Boolean(), nullable=False, server_default=sa.false()),
            schema=schema,
        )


def downgrade() -> None:
    schema = target_schema()
    with op.batch_alter_table("signoff_outbox", schema=schema) as batch:
        batch.drop_column("maybe_sent")
        batch.drop_column("result")
        batch.drop_column("parent")
