"""Who sees what (issue 22): a signed-in user's lists hold the instances they started or
decided, found through the history by actor; this index makes that one index range per user.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op
from signoff.engine.storage.migrations import index_if_missing, target_schema

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_signoff_history_actor",
        "signoff_history",
        ["actor", "kind", "instance_id"],
        schema=target_schema(),
        if_not_exists=index_if_missing(),
    )


def downgrade() -> None:
    op.drop_index("ix_signoff_history_actor", table_name="signoff_history", schema=target_schema())
