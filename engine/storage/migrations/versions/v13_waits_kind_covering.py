"""The open waits' index by kind and time also holds each wait's id and instance (issue 25):
a person's inbox walks the oldest open approvals in it and keeps those of their instances
(the participants) without reading a wait row; only the page's rows are read.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op
from signoff.engine.storage.migrations import target_schema

revision = "0013"
down_revision: str | None = "0012"
branch_labels = None
depends_on = None

INDEX = "ix_signoff_waits_kind"


def upgrade() -> None:
    schema = target_schema()
    op.drop_index(INDEX, table_name="signoff_waits", schema=schema)
    op.create_index(
        INDEX, "signoff_waits", ["kind", "began_at", "id", "instance_id"], schema=schema
    )


def downgrade() -> None:
    schema = target_schema()
    op.drop_index(INDEX, table_name="signoff_waits", schema=schema)
    op.create_index(INDEX, "signoff_waits", ["kind", "began_at"], schema=schema)
