"""Read-only questions about where instances stand, for dashboards: which approvals are open
(with their instance's workflow), and how many instances sit on each statement.

Reads the store's tables; writes nothing. Kept beside `store.py` so the store stays the one
module that writes, and these heavier reporting queries stay out of the transition path.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import Integer, case, cast, func, literal, null, select
from sqlalchemy.dialects.postgresql import JSONB

from engine.state import InstanceState
from engine.store import INSTANCES, WAITS, Store

LIVE_NOT_WAITING = ("running", "failed")


def open_approvals(store: Store, limit: int = 200) -> list[dict[str, Any]]:
    """Open Approval cases, oldest first, each with its instance's workflow.

    Keys: instance_id, workflow, thread, wait, event, began_at, due_at, approvers (list or None,
    already widened by escalation), title, and key: the wait's `WaitView.key`, for
    `Engine.send(..., wait_key=)`.
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
            _wait_round(store).label("wait_round"),
        )
        .join(INSTANCES, i.id == w.instance_id)
        .where(w.kind == "approval")
        .order_by(w.began_at, w.id)
        .limit(limit)
    )
    with store.db.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        unread = {r["instance_id"] for r in rows if r["wait_round"] is None}
        states: dict[str, str] = {}
        if unread:
            states.update(conn.execute(select(i.id, i.state).where(i.id.in_(unread))).tuples())
    for row in rows:
        row["approvers"] = json.loads(row["approvers"]) if row["approvers"] else None
        if row["wait_round"] is None:  # a thread name the SQL path cannot spell: parse it all
            state = InstanceState.model_validate_json(states[row["instance_id"]])
            thread = state.threads.get(row["thread"])
            row["key"] = thread.wait_key if thread else ""
        else:
            row["key"] = _key(row["thread"], int(row["wait_round"]))
        del row["wait_round"]
    return rows


def _key(thread: str, wait_round: int) -> str:
    """`ThreadState.wait_key` of that thread in that round, spelled the same way (the inbox
    test compares the two on both databases)."""
    return f"{thread}:{wait_round}"


def _wait_round(store: Store) -> Any:
    """The SQL for the waiting thread's `wait_round`, read from its instance's state in the
    database, so the inbox never parses a hundred states; NULL where it cannot tell."""
    w, i = WAITS.c, INSTANCES.c
    if store.is_sqlite:
        # $.threads."<name>".wait_round; a name holding a quote or backslash reads NULL
        path = literal("$.threads.") + func.json_quote(w.thread) + literal(".wait_round")
        safe = ~w.thread.contains('"') & ~w.thread.contains("\\")
        return case((safe, func.coalesce(func.json_extract(i.state, path), 0)), else_=null())
    if store.db.dialect.name == "postgresql":
        found = func.jsonb_extract_path_text(cast(i.state, JSONB), "threads", w.thread)
        value = func.jsonb_extract_path_text(
            cast(i.state, JSONB), "threads", w.thread, "wait_round"
        )
        return case((found.is_(None), null()), else_=func.coalesce(cast(value, Integer), 0))
    return null()


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
