"""Read-only questions about where instances stand, for dashboards: which approvals are open
(with their instance's workflow), and how many instances sit on each statement.

Reads the store's tables; writes nothing. Kept beside `store.py` so the store stays the one
module that writes, and these heavier reporting queries stay out of the transition path.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from engine.state import InstanceState
from engine.store import INSTANCES, WAITS, Store

LIVE_NOT_WAITING = ("running", "failed")


def open_approvals(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Open Approval cases, oldest first, each with its instance's workflow.

    Keys: instance_id, workflow, thread, wait, event, began_at, due_at, approvers (list or None,
    already widened by escalation), title.
    """
    w, i = WAITS.c, INSTANCES.c
    query = (
        select(
            w.instance_id,
            i.workflow,
            w.thread,
            w.wait,
            w.event,
            w.began_at,
            w.due_at,
            w.approvers,
            w.title,
        )
        .join(INSTANCES, i.id == w.instance_id)
        .where(w.kind == "approval")
        .order_by(w.began_at, w.id)
        .limit(limit)
    )
    with store.db.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["approvers"] = json.loads(row["approvers"]) if row["approvers"] else None
    return rows


def statement_counts(store: Store, scan_limit: int = 5000) -> dict[str, dict[str, int]]:
    """workflow -> statement name -> how many instances stand there now.

    Waiting threads are counted from the open-wait table (one per instance and wait); threads
    of running or failed instances from their state (at most `scan_limit` instances).
    """
    w, i = WAITS.c, INSTANCES.c
    counts: dict[str, Counter[str]] = {}
    with store.db.connect() as conn:
        for workflow, wait, n in conn.execute(
            select(i.workflow, w.wait, func.count(func.distinct(w.instance_id)))
            .join(INSTANCES, i.id == w.instance_id)
            .group_by(i.workflow, w.wait)
        ):
            counts.setdefault(workflow, Counter())[wait] += n
        for workflow, state in conn.execute(
            select(i.workflow, i.state).where(i.status.in_(LIVE_NOT_WAITING)).limit(scan_limit)
        ):
            for thread in InstanceState.model_validate_json(state).threads.values():
                if thread.at and thread.status in ("running", "retrying", "failed", "blocked"):
                    counts.setdefault(workflow, Counter())[thread.at] += 1
    return {workflow: dict(c) for workflow, c in counts.items()}


def ping(store: Store) -> None:
    """Raise unless the database answers."""
    with store.db.connect() as conn:
        conn.execute(select(1)).scalar()
