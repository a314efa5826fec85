"""What falls due without an event: timers, reminders, step retries, and instances whose
driver died."""

from __future__ import annotations

import traceback
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from signoff.engine.core.handlers import FIRE
from signoff.engine.core.records import Record
from signoff.engine.core.state import OpenCase, ThreadState
from signoff.engine.core.working import Working
from signoff.engine.errors import (
    brief,
)

if TYPE_CHECKING:
    from signoff.engine.runtime.driving import Driver
from signoff.engine.runtime.lifecycle import cleanup_delay


class Timers:
    """Fire what is due for one instance."""

    def wake(self: Driver, work: Working, now: datetime, claimed: str | None = None) -> bool:
        """Do what fell due for one instance: timers, step retries, owed setups/teardowns,
        and threads left running by a driver that died.

        `claimed` is the lease token under which `Store.claim_due` already took the instance
        (how the engine's `run_due` and the scheduler come here): the lease is ours, not a
        live driver's. Without it, the lease is taken here, under the version check."""
        while True:
            mine = claimed is not None and work.row.lease_owner == claimed
            if work.terminal:
                if not work.state.teardowns:
                    if mine:  # release the claim, or it would fall due again at its end
                        self.save(work, now)
                    return False
                self.cleanups(work, now)
                if self.save(work, now):
                    return True
            else:
                owner = claimed if mine and claimed else self.claim(work, now)
                if not owner:
                    return False
                self._fire_due(work, now)
                if self.save(work, now):
                    work.row.lease_owner = owner
                    self.drive(work, owner)
                    return True
            fresh = self.store.load(work.id)
            if fresh is None:
                return False
            work = Working.of(fresh, work.cls)

    def _fire_due(self: Driver, work: Working, now: datetime) -> None:
        for thread in list(work.state.threads.values()):
            if thread.status == "retrying" and thread.retry_at and thread.retry_at <= now:
                thread.status, thread.retry_at = "running", None
                continue
            if thread.status != "waiting":
                continue
            for case in thread.cases:
                if not (case.setup == "done" and case.due_at and case.due_at <= now):
                    continue
                try:
                    handler = self.handler(work, thread.at or "", case.event)
                except Exception as exc:  # data no longer fits the model, definition() raised
                    self.fail(
                        work,
                        thread,
                        f"building the definition failed: {brief(exc)}",
                        now,
                        traceback.format_exc(),
                    )
                    break
                if handler is None and self.wait_statement(work, thread.at or "") is not None:
                    # a deployment removed this case: its timer goes, the wait goes on
                    case.due_at = None
                    work.note(
                        Record(
                            now,
                            "timer dropped",
                            thread=thread.id,
                            name=case.event,
                            via="timer",
                            message=f"wait '{thread.at}' no longer has the event "
                            f"'{case.event}' in the deployed definition",
                        )
                    )
                    continue
                if handler is None:
                    self.fail(
                        work,
                        thread,
                        f"wait '{thread.at}' (or its event '{case.event}') no "
                        f"longer exists in workflow {work.row.workflow}",
                        now,
                    )
                    break
                info = replace(
                    self.info(work, thread.id, thread.at or "", case, "timer"), moment=now
                )
                work.waits_dirty = True
                try:
                    outcome = handler.on_due(info)
                    if outcome is FIRE:
                        self._apply(work, thread, handler, case, {}, None, "timer", now)
                        break
                    if not isinstance(outcome, dict):
                        raise TypeError(f"on_due returned {type(outcome).__name__}, not a dict")
                    self._ticked(work, thread, case, outcome, now)
                    case.due_at = handler.due_at(replace(info, stored=case.stored))
                    case.error, case.attempts = None, 0
                except Exception as exc:
                    # Like a failed setup: recorded on the wait and tried again later; the other
                    # cases and threads go on (a Slack outage must not hold up a timeout).
                    case.attempts += 1
                    case.error = brief(exc)
                    case.due_at = now + cleanup_delay(case.attempts)
                    work.note(
                        Record(
                            now,
                            "timer failed",
                            thread=thread.id,
                            name=case.event,
                            via="timer",
                            message=case.error,
                            detail={
                                "wait": thread.at,
                                "attempt": case.attempts,
                                "traceback": traceback.format_exc(),
                            },
                        )
                    )

    def _ticked(
        self: Driver,
        work: Working,
        thread: ThreadState,
        case: OpenCase,
        stored: dict[str, Any],
        now: datetime,
    ) -> None:
        before = case.stored or {}
        case.stored = stored
        if stored.get("escalated") and not before.get("escalated"):
            work.note(
                Record(
                    now,
                    "escalated",
                    thread=thread.id,
                    name=case.event,
                    via="timer",
                    detail={"wait": thread.at, "approvers": case.info.get("escalate_to")},
                )
            )
        if int(stored.get("reminders", 0)) > int(before.get("reminders", 0)):
            work.note(
                Record(
                    now,
                    "reminder",
                    thread=thread.id,
                    name=case.event,
                    via="timer",
                    detail={"wait": thread.at, "count": stored.get("reminders")},
                )
            )
