"""The first release's schema: instances, their open waits, and the history.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import LONG_TEXT, TABLE_OPTIONS, WHEN, target_schema

# Datetimes are naive UTC, as `tables.UTCDateTime` keeps them; a revision never imports the
# current tables, which keep changing after it. LONG_TEXT, WHEN and TABLE_OPTIONS differ from
# plain Text and DateTime on MariaDB/MySQL only (see `migrations`).

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_table(
        "signoff_instances",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("workflow", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("data", LONG_TEXT, nullable=False),
        sa.Column("state", LONG_TEXT, nullable=False),
        sa.Column("result", LONG_TEXT),
        sa.Column("error", LONG_TEXT),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("due_at", WHEN),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", WHEN),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        schema=schema,
        **TABLE_OPTIONS,
    )
    op.create_index("ix_signoff_instances_due_at", "signoff_instances", ["due_at"], schema=schema)
    op.create_index(
        "ix_signoff_instances_recent", "signoff_instances", ["updated_at", "id"], schema=schema
    )
    op.create_index(
        "ix_signoff_instances_status_recent",
        "signoff_instances",
        ["status", "updated_at", "id"],
        schema=schema,
    )
    op.create_index(
        "ix_signoff_instances_workflow_recent",
        "signoff_instances",
        ["workflow", "updated_at", "id"],
        schema=schema,
    )

    op.create_table(
        "signoff_waits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance_id", sa.String(100), nullable=False),
        sa.Column("thread", sa.String(200), nullable=False),
        sa.Column("wait", sa.String(200), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("began_at", WHEN, nullable=False),
        sa.Column("due_at", WHEN),
        sa.Column("approvers", LONG_TEXT),
        sa.Column("title", LONG_TEXT),
        schema=schema,
        **TABLE_OPTIONS,
    )
    op.create_index("ix_signoff_waits_due_at", "signoff_waits", ["due_at"], schema=schema)
    op.create_index(
        "ix_signoff_waits_event", "signoff_waits", ["instance_id", "event"], schema=schema
    )
    op.create_index("ix_signoff_waits_kind", "signoff_waits", ["kind", "began_at"], schema=schema)

    op.create_table(
        "signoff_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance_id", sa.String(100), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("thread", sa.String(200)),
        sa.Column("name", sa.String(200)),
        sa.Column("actor", sa.String(200)),
        sa.Column("via", sa.String(20)),
        sa.Column("message", LONG_TEXT),
        sa.Column("detail", LONG_TEXT),
        schema=schema,
        **TABLE_OPTIONS,
    )
    op.create_index(
        "ix_signoff_history_instance", "signoff_history", ["instance_id", "id"], schema=schema
    )


def downgrade() -> None:
    schema = target_schema()
    op.drop_table("signoff_history", schema=schema)
    op.drop_table("signoff_waits", schema=schema)
    op.drop_table("signoff_instances", schema=schema)
