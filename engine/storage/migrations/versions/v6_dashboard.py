"""What the dashboard of issue 12 reads: an index for per-status counts of one workflow (the
instances list filtered by workflow counts from the index alone); the workflow on each open
wait row, indexed with its kind and start, so the inbox of one workflow is one index range in
its own order (filled in here from the instances for the waits already open); and the table
that makes an approval link single-use (the ids of links already used, until they expire).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import TABLE_OPTIONS, WHEN, index_if_missing, target_schema

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.create_index(
        "ix_signoff_instances_workflow_status",
        "signoff_instances",
        ["workflow", "status"],
        schema=schema,
        if_not_exists=index_if_missing(),
    )
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("signoff_waits", schema)}
    if "workflow" not in columns:
        op.add_column("signoff_waits", sa.Column("workflow", sa.String(200)), schema=schema)
    waits = sa.table(
        "signoff_waits", sa.column("instance_id"), sa.column("workflow"), schema=schema
    )
    instances = sa.table("signoff_instances", sa.column("id"), sa.column("workflow"), schema=schema)
    op.execute(
        waits.update()
        .where(waits.c.workflow.is_(None))
        .values(
            workflow=sa.select(instances.c.workflow)
            .where(instances.c.id == waits.c.instance_id)
            .scalar_subquery()
        )
    )
    op.create_index(
        "ix_signoff_waits_kind_workflow",
        "signoff_waits",
        ["kind", "workflow", "began_at"],
        schema=schema,
        if_not_exists=index_if_missing(),
    )
    op.create_table(
        "signoff_spent_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("spent_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        schema=schema,
        **TABLE_OPTIONS,
        if_not_exists=True,
    )
    op.create_index(
        "ix_signoff_spent_keys_expires",
        "signoff_spent_keys",
        ["expires_at"],
        schema=schema,
        if_not_exists=index_if_missing(),
    )


def downgrade() -> None:
    schema = target_schema()
    op.drop_table("signoff_spent_keys", schema=schema)
    op.drop_index("ix_signoff_waits_kind_workflow", table_name="signoff_waits", schema=schema)
    with op.batch_alter_table("signoff_waits", schema=schema) as batch:
        batch.drop_column("workflow")
    op.drop_index(
        "ix_signoff_instances_workflow_status", table_name="signoff_instances", schema=schema
    )
