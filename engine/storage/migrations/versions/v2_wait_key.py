"""Wait rows carry the key of the opening of the wait they belong to (`ThreadState.wait_key`).

Rows written before this revision get it from their instance's state: the thread's
`wait_round` (0 in releases that did not count rounds), so a dashboard form built from an
upgraded row still refuses a stale click.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import target_schema

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = target_schema()
    op.add_column("signoff_waits", sa.Column("wait_key", sa.String(250)), schema=schema)
    waits = sa.table(
        "signoff_waits",
        sa.column("id", sa.Integer),
        sa.column("instance_id", sa.String),
        sa.column("thread", sa.String),
        sa.column("wait_key", sa.String),
        schema=schema,
    )
    instances = sa.table(
        "signoff_instances", sa.column("id", sa.String), sa.column("state"), schema=schema
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(waits.c.id, waits.c.thread, instances.c.state).join(
            instances, instances.c.id == waits.c.instance_id
        )
    ).all()
    keys = []
    for wait_id, thread, state in rows:
        found = json.loads(state).get("threads", {}).get(thread) or {}
        keys.append({"b_id": wait_id, "b_key": f"{thread}:{found.get('wait_round', 0)}"})
    if keys:
        conn.execute(
            sa.update(waits)
            .where(waits.c.id == sa.bindparam("b_id"))
            .values(wait_key=sa.bindparam("b_key")),
            keys,
        )


def downgrade() -> None:
    op.drop_column("signoff_waits", "wait_key", schema=target_schema())
