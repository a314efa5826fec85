"""signoff's log lines about instances: the history, as it is committed, told to `logging`.

Every line goes to the `signoff.engine.runtime` logger once the history entry it tells of is
committed, so the log never tells of a step or decision that a lost version check took back.
Each carries, in its text and as `extra` attributes of the LogRecord, the instance id
(`instance_id`), the workflow (`workflow`) and the thread (`workflow_thread`: `thread` is
taken by `logging` for the OS thread), and the history kind (`history_kind`).

Levels: what an operator must look at (an instance failed, a teardown abandoned) is ERROR;
what goes wrong but is retried (a step, a setup, a timer) is WARNING; decisions, events, timers
fired, starts, ends and operator actions are INFO; the steps of a healthy instance are DEBUG.

signoff configures no handlers: an application decides where its logs go, and the `signoff`
command line sets up plain console logging.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from signoff.engine.core.records import Record

log = logging.getLogger("signoff.engine.runtime")


def _named(r: Record) -> str:
    return f"'{r.name}'" if r.name else ""


def _by(r: Record) -> str:
    who = f" by {r.actor}" if r.actor else ""
    return who + (f" via {r.via}" if r.via else "")


def _detail(r: Record, key: str) -> Any:
    return (r.detail or {}).get(key)


def _step(r: Record) -> str:
    attempt = _detail(r, "attempt") or 1
    return f"step {_named(r)} succeeded" + (f" on attempt {attempt}" if attempt > 1 else "")


def _step_failed(r: Record) -> str:
    retry_in = _detail(r, "retry_in_seconds")
    then = f"retrying in {retry_in:g}s" if retry_in is not None else "no attempts left"
    return (
        f"step {_named(r)} failed (attempt {_detail(r, 'attempt')} of {_detail(r, 'of')}), "
        f"{then}: {r.message}"
    )


def _event(r: Record) -> str:
    if r.via == "timer":
        return f"timer fired: event {_named(r)} of wait '{_detail(r, 'wait')}'"
    return f"event {_named(r)} of wait '{_detail(r, 'wait')}'{_by(r)}"


_TOLD: dict[str, tuple[int, Callable[[Record], str]]] = {
    "started": (logging.INFO, lambda r: f"started{_by(r)}"),
    "step": (logging.DEBUG, _step),
    "step failed": (logging.WARNING, _step_failed),
    "failed": (logging.ERROR, lambda r: f"failed at {_named(r) or 'its start'}: {r.message}"),
    "waiting": (logging.DEBUG, lambda r: f"waiting in {_named(r)}"),
    "decision": (
        logging.INFO,
        lambda r: f"decision on {_named(r)}{_by(r)}: {r.message}",
    ),
    "event": (logging.INFO, _event),
    "event refused": (logging.INFO, lambda r: f"event {_named(r)} refused{_by(r)}: {r.message}"),
    "event dropped": (logging.WARNING, lambda r: f"event {_named(r)} dropped: {r.message}"),
    "reminder": (
        logging.INFO,
        lambda r: f"timer fired: reminder {_detail(r, 'count')} for {_named(r)}",
    ),
    "escalated": (
        logging.INFO,
        lambda r: f"timer fired: {_named(r)} escalated to {_detail(r, 'approvers')}",
    ),
    "timer failed": (
        logging.WARNING,
        lambda r: (
            f"timer of {_named(r)} failed (attempt {_detail(r, 'attempt')}), "
            f"trying again later: {r.message}"
        ),
    ),
    "timer discarded": (logging.INFO, lambda r: str(r.message)),
    "setup failed": (
        logging.WARNING,
        lambda r: (
            f"setting up {_named(r)} failed (attempt {_detail(r, 'attempt')}), "
            f"trying again later: {r.message}"
        ),
    ),
    "teardown failed": (
        logging.WARNING,
        lambda r: f"tearing down {_named(r)} failed (attempt {_detail(r, 'attempt')}): {r.message}",
    ),
    "teardown abandoned": (
        logging.ERROR,
        lambda r: f"tearing down {_named(r)} abandoned: {r.message}",
    ),
    "completed": (
        logging.INFO,
        lambda r: "completed" + (f" with error: {r.message}" if r.message else ""),
    ),
    "cancelled": (
        logging.INFO,
        lambda r: f"cancelled{_by(r)}" + (f": {r.message}" if r.message else ""),
    ),
    "retry": (logging.INFO, lambda r: f"retry of {_named(r)}{_by(r)}"),
    "goto": (logging.INFO, lambda r: f"moved to {_named(r)}{_by(r)}"),
    "merged": (logging.INFO, lambda r: str(r.message)),
    "reassigned": (logging.INFO, lambda r: f"{_named(r)}: {r.message}"),
}


def committed(instance_id: str, workflow: str, records: Iterable[Record]) -> None:
    """Log the history entries just committed for one instance."""
    for record in records:
        level, tell = _TOLD.get(record.kind, (logging.DEBUG, _other))
        if not log.isEnabledFor(level):
            continue
        where = f"{workflow} {instance_id}" + (f" thread {record.thread}" if record.thread else "")
        log.log(
            level,
            "%s: %s",
            where,
            tell(record),
            extra={
                "instance_id": instance_id,
                "workflow": workflow,
                "workflow_thread": record.thread,
                "history_kind": record.kind,
            },
        )


def _other(r: Record) -> str:
    return f"{r.kind} {_named(r)}".rstrip() + (f": {r.message}" if r.message else "")
