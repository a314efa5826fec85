"""What callers are shown of stored instances: the `InstanceView` of a row and its state, the
failed view of one that cannot be read, and what an open case shows (an approval's deciders,
hand-overs and votes) with the refusal that answers whether someone may decide it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from signoff.engine.core.enums import Status, ThreadStatus
from signoff.engine.core.handlers import Approval, Handler, WaitInfo, upcoming
from signoff.engine.core.records import Stored
from signoff.engine.core.state import InstanceState
from signoff.engine.core.stored import read_data
from signoff.engine.core.workflow import Workflow, title_of
from signoff.engine.errors import CorruptState
from signoff.engine.views import InstanceView, ThreadView, WaitView


def shown_case(handler: Handler, info: WaitInfo) -> dict[str, Any]:
    shown = handler.describe()
    if isinstance(handler, Approval):
        shown["deciders"] = handler.current_approvers(info)
        shown["handovers"] = [h.stored() for h in handler.handovers(info)]
        shown["votes"] = [{"actor": v.actor, "at": v.at.isoformat()} for v in handler.votes(info)]
    return shown


def refusal_for(handler: Handler | None, wait: WaitInfo | None, actor: str | None) -> str | None:
    if isinstance(handler, Approval) and wait is not None:
        return handler.refusal(wait, actor)
    return None


def unreadable_status(status: str) -> str:
    """The status an instance that cannot be read is shown with: failed, unless an operator
    cancelled it."""
    return status if status == Status.CANCELLED else Status.FAILED


def unreadable_view(row: Stored, problem: str) -> InstanceView:
    """An instance whose stored state or data cannot be read: failed, with `problem` as its
    error and no threads; its data as stored when that much can be read."""
    try:
        data = read_data(row.id, row.data)
    except CorruptState:
        data = {}
    return InstanceView(
        id=row.id,
        workflow=row.workflow,
        status=unreadable_status(row.status),
        data=data,
        result=None,
        error=row.error if row.status == Status.CANCELLED else problem,
        created_at=row.created_at,
        updated_at=row.updated_at,
        threads=[],
        version=row.version,
        due_at=row.due_at,
        pending_teardowns=0,
        title=row.workflow,
    )


def instance_view(
    row: Stored,
    state: InstanceState,
    infos: Mapping[tuple[str, str], dict[str, Any]],
    cls: type[Workflow] | None = None,
    hidden: Sequence[str] = (),
) -> InstanceView:
    threads = [
        ThreadView(
            id=t.id,
            name=t.name,
            status=t.status,
            step=t.at,
            waits=[
                WaitView(
                    wait=t.at or "",
                    event=c.event,
                    kind=c.kind,
                    began_at=c.began_at,
                    due_at=c.due_at,
                    setup=c.setup,
                    error=c.error,
                    attempts=c.attempts,
                    info=infos.get((t.id, c.event), c.info),
                    stored=c.stored,
                    key=t.wait_key,
                    upcoming=upcoming(
                        c.kind,
                        c.began_at,
                        c.due_at if c.setup == "done" else None,
                        infos.get((t.id, c.event), c.info),
                        c.stored,
                    ),
                )
                for c in (t.cases if t.status == ThreadStatus.WAITING else [])
            ],
            error=t.error,
            traceback=t.traceback,
            attempts=t.attempts,
            retry_at=t.retry_at,
        )
        for t in state.threads.values()
    ]
    data = read_data(row.id, row.data)
    approvals = [w.info.get("title") for t in threads for w in t.waits if w.kind == "approval"]
    return InstanceView(
        id=row.id,
        workflow=row.workflow,
        status=row.status,
        data={k: v for k, v in data.items() if k not in hidden},
        title=title_of(cls, data, approvals, row.workflow),
        result=json.loads(row.result) if row.result is not None else None,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        threads=threads,
        version=row.version,
        due_at=row.due_at,
        pending_teardowns=len(state.teardowns),
    )
