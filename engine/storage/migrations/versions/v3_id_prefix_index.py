"""PostgreSQL: an index that an id prefix search (LIKE 'prefix%') can use. The primary key's
index follows the database's collation, which LIKE cannot use; text_pattern_ops can. SQLite
searches a range of the primary key instead, so nothing changes there. Releases before
migrations created this index on their own: it may be there already.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op
from signoff.engine.storage.migrations import target_schema

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

INDEX = "ix_signoff_instances_id_prefix"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        INDEX,
        "signoff_instances",
        ["id"],
        schema=target_schema(),
        postgresql_ops={"id": "text_pattern_ops"},
        if_not_exists=True,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(INDEX, table_name="signoff_instances", schema=target_schema())
