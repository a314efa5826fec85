"""The handler lifecycle around a wait: setup once it began, teardown for every case once it
ended, each retried with backoff when it raises."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta

from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.handlers import Handler, Services, WaitInfo
from signoff.engine.core.outbound import Outbound
from signoff.engine.core.records import Record
from signoff.engine.core.state import Ending, OpenCase, Teardown, ThreadState
from signoff.engine.core.waits import Wait
from signoff.engine.core.working import Working
from signoff.engine.errors import (
    StatementMissing,
    Unavailable,
    brief,
)

MAX_CLEANUP_ATTEMPTS = 20


def cleanup_delay(attempts: int, exc: BaseException | None = None) -> timedelta:
    """How long to wait before trying a failed setup, teardown or timer again: doubling from
    one second up to ten minutes, and never sooner than a service asked (Retry-After)."""
    delay = min(timedelta(seconds=2 ** (attempts - 1)), timedelta(minutes=10))
    if isinstance(exc, Unavailable) and exc.retry_after:
        delay = max(delay, timedelta(seconds=min(exc.retry_after, 3600)))
    return delay


class Lifecycle:
    """Runs waits' handlers: finds the handler of a case in the current definition, sets it up
    when its wait begins and tears it down when the wait ends."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def stop_threads(self, work: Working, now: datetime, ending: Ending | None = None) -> None:
        for thread in work.state.threads.values():
            if thread.live:
                self.end_waits(work, thread, now, handled_event=None, ending=ending)
                thread.status = ThreadStatus.STOPPED

    def end_waits(
        self,
        work: Working,
        thread: ThreadState,
        now: datetime,
        handled_event: str | None,
        ending: Ending | None = None,
    ) -> None:
        """Close the thread's open cases; each owes its handler a teardown, which is told how
        the wait ended (`ending`: the event and who sent it, or the operator's action). A timer
        that was already due but had not fired yet (the scheduler was down or busy) is
        discarded, and the history says so: the wait ended first."""
        for case in thread.cases:
            if (
                case.event != handled_event
                and case.setup == "done"
                and case.due_at is not None
                and case.due_at <= now
            ):
                ended = f" by '{handled_event}'" if handled_event else ""
                work.note(
                    Record(
                        now,
                        HistoryKind.TIMER_DISCARDED,
                        thread=thread.id,
                        name=case.event,
                        message=f"the {case.kind} timer of '{case.event}' was due at "
                        f"{case.due_at:%Y-%m-%d %H:%M:%S} UTC but had not fired when "
                        f"the wait ended{ended}",
                        detail={
                            "wait": thread.at,
                            "kind": case.kind,
                            "due_at": case.due_at.isoformat(),
                        },
                    )
                )
            work.state.teardowns.append(
                Teardown(
                    thread=thread.id,
                    wait=thread.at or "",
                    event=case.event,
                    kind=case.kind,
                    handled=case.event == handled_event,
                    began_at=case.began_at,
                    stored=case.stored,
                    ending=ending,
                )
            )
        if thread.cases:
            work.waits_dirty = True
        thread.cases = []

    def handler(self, work: Working, wait_name: str, event: str) -> Handler | None:
        wait = self.wait_statement(work, wait_name)
        case = wait.case(event) if wait is not None else None
        return case.handler if case else None

    def wait_statement(self, work: Working, wait_name: str) -> Wait | None:
        """The Wait of that name in the definition deployed now."""
        return work.wait_named(wait_name)

    def info(
        self,
        work: Working,
        thread: str,
        wait: str,
        case: OpenCase | Teardown,
        via: str | None = None,
        *,
        post: Callable[[Outbound], None] | None = None,
        deadline: datetime | None = None,
    ) -> WaitInfo:
        """What `case`'s handler is told; `post` and `deadline` as a setup or teardown has
        them (made here in one go: `replace` on a dataclass costs as much as making it)."""
        state = work.state.threads.get(thread)
        return WaitInfo(
            work.id,
            work.row.workflow,
            thread,
            wait,
            case.event,
            case.began_at,
            case.stored,
            self.services,
            via,
            starter=work.state.started_by,
            key=state.wait_key if isinstance(case, OpenCase) and state is not None else None,
            ending=case.ending if isinstance(case, Teardown) else None,
            data_json=work.row.data,
            deadline=deadline,
            post=post,
        )

    def deadline(self, work: Working, thread: ThreadState) -> datetime | None:
        """When a Timeout of the thread's wait decides it (the earliest, if several)."""
        times = []
        for case in thread.cases:
            if case.kind != "timeout":
                continue
            handler = self.handler(work, thread.at or "", case.event)
            if handler is not None:
                due = handler.due_at(self.info(work, thread.id, thread.at or "", case))
                if due is not None:
                    times.append(due)
        return min(times) if times else None

    def cleanups(self, work: Working, now: datetime | None = None) -> None:
        """Run setups owed to new waits and teardowns owed to ended ones, and due retries.
        Without `now`, the clock is read once something may be owed (a drive asks before
        every statement, and nearly always nothing is)."""
        for thread in work.state.threads.values():
            if thread.status != ThreadStatus.WAITING:
                continue
            for case in thread.cases:
                if case.setup == "done":
                    continue
                if now is None:
                    now = self.services.clock()
                if case.setup == "pending" or (
                    case.setup == "failed" and case.retry_at and case.retry_at <= now
                ):
                    self.setup(work, thread, case, now)
        if not work.state.teardowns:  # as nearly always: no copy of an empty list per step
            return
        if now is None:
            now = self.services.clock()
        for teardown in list(work.state.teardowns):
            if teardown.attempts == 0 or (teardown.retry_at and teardown.retry_at <= now):
                self.teardown(work, teardown, now)

    def setup(self, work: Working, thread: ThreadState, case: OpenCase, now: datetime) -> None:
        work.waits_dirty = True
        try:
            handler = self.handler(work, thread.at or "", case.event)
            if handler is None:
                raise StatementMissing(f"wait '{thread.at}' no longer has event '{case.event}'")
            queued: list[Outbound] = []
            deadline = (
                self.deadline(work, thread)
                if handler.announces(self.services) or self.services.reach is not None
                else None
            )
            info = self.info(
                work, thread.id, thread.at or "", case, post=queued.append, deadline=deadline
            )
            stored = self.services.call(handler.setup, info)
            if stored is not None:
                json.dumps(stored, allow_nan=False)
                stored = dict(stored)
            case.stored, case.setup = stored, "done"
            if case.error is not None or case.retry_at is not None:  # a retry that succeeded
                case.error, case.retry_at = None, None
            work.outbox.extend(queued)  # written with the commit that records the setup
            case.due_at = handler.due_at(self.info(work, thread.id, thread.at or "", case))
        except Exception as exc:
            case.attempts += 1
            case.setup, case.error = "failed", brief(exc)
            case.retry_at = now + cleanup_delay(case.attempts, exc)
            work.note(
                Record(
                    now,
                    HistoryKind.SETUP_FAILED,
                    thread=thread.id,
                    name=case.event,
                    message=case.error,
                    detail={
                        "wait": thread.at,
                        "attempt": case.attempts,
                        "traceback": traceback.format_exc(),
                    },
                )
            )

    def teardown(self, work: Working, teardown: Teardown, now: datetime) -> None:
        try:
            handler = self.handler(work, teardown.wait, teardown.event)
            if handler is not None:
                queued: list[Outbound] = []
                info = self.info(work, teardown.thread, teardown.wait, teardown, post=queued.append)
                self.services.call(handler.teardown, info, teardown.handled)
                work.outbox.extend(queued)  # written with the commit that records the teardown
            else:
                work.note(
                    Record(
                        now,
                        HistoryKind.TEARDOWN_SKIPPED,
                        thread=teardown.thread,
                        name=teardown.event,
                        message=f"wait '{teardown.wait}' no longer exists in the definition",
                    )
                )
        except Exception as exc:
            teardown.attempts += 1
            teardown.error = brief(exc)
            work.note(
                Record(
                    now,
                    HistoryKind.TEARDOWN_FAILED,
                    thread=teardown.thread,
                    name=teardown.event,
                    message=teardown.error,
                    detail={"wait": teardown.wait, "attempt": teardown.attempts},
                )
            )
            if teardown.attempts < MAX_CLEANUP_ATTEMPTS:
                teardown.retry_at = now + cleanup_delay(teardown.attempts, exc)
                return
            work.note(
                Record(
                    now,
                    HistoryKind.TEARDOWN_ABANDONED,
                    thread=teardown.thread,
                    name=teardown.event,
                    message=f"gave up after {teardown.attempts} attempts",
                )
            )
        work.state.teardowns.remove(teardown)
