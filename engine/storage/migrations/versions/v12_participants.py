"""Participants (issue 25): who takes part in which instance, one row per person and role, so
the lists, counts and inbox of a person who sees only their own instances read one index range
instead of every open wait's approvers. Filled in here from the history and the open waits.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from signoff.engine.storage.migrations import TABLE_OPTIONS, index_if_missing, target_schema

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None

# as engine/storage/visibility.py has them when this revision was written
ACTED_KINDS = ("started", "decision", "vote", "event")
DECIDED_KINDS = ("approval", "input")
BATCH = 5000


def upgrade() -> None:
    schema = target_schema()
    op.create_table(
        "signoff_participants",
        sa.Column("instance_id", sa.String(100), primary_key=True),
        sa.Column("role", sa.String(20), primary_key=True),
        sa.Column("person", sa.String(250), primary_key=True),
        **TABLE_OPTIONS,
        schema=schema,
        if_not_exists=True,
    )
    op.create_index(
        "ix_signoff_participants_person",
        "signoff_participants",
        ["person", "role", "instance_id"],
        schema=schema,
        if_not_exists=index_if_missing(),
    )
    fill(op.get_bind(), schema)


def fill(conn: sa.Connection, schema: str | None) -> None:
    """The rows of what is stored already, in batches (the approvers are a JSON list, read
    here rather than by each database's own JSON functions)."""
    history = sa.table(
        "signoff_history",
        sa.column("instance_id"),
        sa.column("actor"),
        sa.column("kind"),
        schema=schema,
    )
    waits = sa.table(
        "signoff_waits",
        sa.column("instance_id"),
        sa.column("kind"),
        sa.column("approvers"),
        schema=schema,
    )
    participants = sa.table(
        "signoff_participants",
        sa.column("instance_id"),
        sa.column("role"),
        sa.column("person"),
        schema=schema,
    )
    if conn.execute(sa.select(sa.func.count()).select_from(participants)).scalar():
        return  # made by create_all with the rest, and kept since: nothing to fill in
    acted = (
        sa.select(history.c.instance_id, history.c.actor)
        .where(history.c.actor.is_not(None), history.c.actor != "")
        .where(history.c.kind.in_(ACTED_KINDS))
        .distinct()
    )
    rows: set[tuple[str, str, str]] = set()

    def flush() -> None:
        if rows:
            conn.execute(
                participants.insert(),
                [{"instance_id": i, "role": r, "person": p} for i, r, p in sorted(rows)],
            )
            rows.clear()

    for instance_id, actor in conn.execute(acted):
        rows.add((instance_id, "acted", actor))
        if len(rows) >= BATCH:
            flush()
    flush()
    opened = (
        sa.select(waits.c.instance_id, waits.c.kind, waits.c.approvers)
        .where(waits.c.kind.in_(DECIDED_KINDS))
        .order_by(waits.c.instance_id)
    )
    # one instance's waits may name a person twice: kept once (the rows come by instance)
    current: set[tuple[str, str, str]] = set()
    for instance_id, kind, approvers in conn.execute(opened):
        if current and next(iter(current))[0] != instance_id:
            rows.update(current)
            current.clear()
            if len(rows) >= BATCH:
                flush()
        try:
            names = json.loads(approvers) if approvers is not None else [""]
        except ValueError:  # unreadable: names nobody, as it matched nobody's name before
            names = []
        # only names someone can be: "" is "anyone"
        if approvers is not None and isinstance(names, list):
            names = [n for n in names if isinstance(n, str) and 0 < len(n) <= 250]
            names = [n for n in names if "\x00" not in n]
        if isinstance(names, list):
            current.update((instance_id, kind, name) for name in names)
    rows.update(current)
    flush()


def downgrade() -> None:
    op.drop_table("signoff_participants", schema=target_schema())
