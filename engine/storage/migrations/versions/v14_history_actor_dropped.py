"""The history's index by actor goes (issue 25): who took part in an instance is now read from
the participants (revision 0012), so nothing looks the history up by actor across instances
any more, and every step paid for keeping the index (a step's history row has no actor, yet
each one was an entry in it).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op
from signoff.engine.storage.migrations import index_if_missing, target_schema

revision = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None

INDEX = "ix_signoff_history_actor"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="signoff_history", schema=target_schema())


def downgrade() -> None:
    op.create_index(
        INDEX,
        "signoff_history",
        ["actor", "kind", "instance_id"],
        schema=target_schema(),
        if_not_exists=index_if_missing(),
    )
