"""What falls due on a wait without an event: timeouts, reminders and escalations."""

from __future__ import annotations

import traceback
from dataclasses import replace
from datetime import datetime
from typing import Any

from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.handlers import FIRE
from signoff.engine.core.outbound import Outbound
from signoff.engine.core.records import Record
from signoff.engine.core.state import OpenCase, ThreadState
from signoff.engine.core.working import Working
from signoff.engine.errors import brief
from signoff.engine.runtime.events import Events
from signoff.engine.runtime.lifecycle import Lifecycle, cleanup_delay


class Timers:
    """Fires what fell due on an instance: timeouts, reminders, escalations, step retries."""

    def __init__(self, lifecycle: Lifecycle, events: Events) -> None:
        self.lifecycle = lifecycle
        self.events = events

    def fire_due(self, work: Working, now: datetime) -> None:
        for thread in list(work.state.threads.values()):
            if (
                thread.status == ThreadStatus.RETRYING
                and thread.retry_at
                and thread.retry_at <= now
            ):
                thread.status, thread.retry_at = ThreadStatus.RUNNING, None
                continue
            if thread.status != ThreadStatus.WAITING:
                continue
            for case in thread.cases:
                if not (case.setup == "done" and case.due_at and case.due_at <= now):
                    continue
                try:
                    handler = self.lifecycle.handler(work, thread.at or "", case.event)
                except Exception as exc:  # data no longer fits the model, definition() raised
                    work.fail(
                        thread,
                        f"building the definition failed: {brief(exc)}",
                        now,
                        traceback.format_exc(),
                    )
                    break
                if (
                    handler is None
                    and self.lifecycle.wait_statement(work, thread.at or "") is not None
                ):
                    # a deployment removed this case: its timer goes, the wait goes on
                    case.due_at = None
                    work.note(
                        Record(
                            now,
                            HistoryKind.TIMER_DROPPED,
                            thread=thread.id,
                            name=case.event,
                            via="timer",
                            message=f"wait '{thread.at}' no longer has the event "
                            f"'{case.event}' in the deployed definition",
                        )
                    )
                    continue
                if handler is None:
                    work.fail(
                        thread,
                        f"wait '{thread.at}' (or its event '{case.event}') no "
                        f"longer exists in workflow {work.row.workflow}",
                        now,
                    )
                    break
                queued: list[Outbound] = []
                info = replace(
                    self.lifecycle.info(work, thread.id, thread.at or "", case, "timer"),
                    moment=now,
                    post=queued.append,
                )
                work.waits_dirty = True
                try:
                    outcome = self.lifecycle.services.call(handler.on_due, info)
                    if outcome is FIRE:
                        self.events.apply(work, thread, handler, case, {}, None, "timer", now)
                        break
                    if not isinstance(outcome, dict):
                        raise TypeError(f"on_due returned {type(outcome).__name__}, not a dict")
                    self._ticked(work, thread, case, outcome, now)
                    work.outbox.extend(queued)  # written with the commit of this tick
                    case.due_at = handler.due_at(replace(info, stored=case.stored))
                    case.error, case.attempts = None, 0
                except Exception as exc:
                    # Like a failed setup: recorded on the wait and tried again later; the other
                    # cases and threads go on (a Slack outage must not hold up a timeout).
                    case.attempts += 1
                    case.error = brief(exc)
                    case.due_at = now + cleanup_delay(case.attempts, exc)
                    work.note(
                        Record(
                            now,
                            HistoryKind.TIMER_FAILED,
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
        self,
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
                    HistoryKind.ESCALATED,
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
                    HistoryKind.REMINDER,
                    thread=thread.id,
                    name=case.event,
                    via="timer",
                    detail={"wait": thread.at, "count": stored.get("reminders")},
                )
            )
