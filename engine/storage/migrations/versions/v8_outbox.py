"""The outbox (issue 23): every message to a person outside the dashboard (an email, a Slack
message with someone's approval link) is a row written in the same transaction as the commit
that made it due, then sent after the commit by whichever process runs the scheduler.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import LONG_TEXT, TABLE_OPTIONS, WHEN, target_schema

revision = "0008"
down_revision: str | None = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_table(
        "signoff_outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("instance_id", sa.String(100), nullable=False),
        sa.Column("thread", sa.String(200), nullable=True),
        sa.Column("wait_key", sa.String(250), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("person", sa.String(200), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("what", sa.String(20), nullable=False),
        sa.Column("message", LONG_TEXT, nullable=False),
        sa.Column("asked_by", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", WHEN, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("error", LONG_TEXT, nullable=True),
        **TABLE_OPTIONS,
        schema=schema,
        if_not_exists=True,
    )
    op.create_index(
        "ix_signoff_outbox_due",
        "signoff_outbox",
        ["status", "next_at"],
        schema=schema,
        if_not_exists=True,
    )
    op.create_index(
        "ix_signoff_outbox_instance",
        "signoff_outbox",
        ["instance_id", "created_at"],
        schema=schema,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("signoff_outbox", schema=target_schema())
