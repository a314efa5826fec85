"""Operators' repairs: retry a failed thread, cancel an instance, move a thread to a named
statement; each applied with a version check (`operate`), then what it made runnable is
driven. Operators only (`Authority.require_operator`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from signoff.engine.core.authority import Authority
from signoff.engine.core.enums import HistoryKind, Status, ThreadStatus
from signoff.engine.core.records import Record
from signoff.engine.core.state import Ending, ThreadState
from signoff.engine.core.tree import Entry
from signoff.engine.core.working import Working
from signoff.engine.errors import Conflict, CorruptState
from signoff.engine.runtime.arguments import check_text
from signoff.engine.runtime.loader import Loader
from signoff.engine.runtime.reading import Reading
from signoff.engine.runtime.runner import Runner
from signoff.engine.runtime.unreadable import Unreadable
from signoff.engine.views import InstanceView


class Repairs:
    def __init__(
        self,
        loader: Loader,
        reading: Reading,
        authority: Authority,
        runner: Runner,
        unreadable: Unreadable,
        now: Callable[[], datetime],
    ) -> None:
        self.loader = loader
        self.reading = reading
        self.authority = authority
        self.runner = runner
        self.unreadable = unreadable
        self._now = now

    def retry(
        self,
        instance_id: str,
        thread: str | None = None,
        actor: str | None = None,
        *,
        via: str = "api",
    ) -> InstanceView:
        check_text(instance_id=instance_id, thread=thread, actor=actor, via=via)
        self.authority.require_operator(actor, f"retry instance {instance_id}")

        def pick(work: Working) -> list[ThreadState]:
            candidates = [
                t
                for t in work.state.threads.values()
                if t.status in (ThreadStatus.FAILED, ThreadStatus.RETRYING)
            ]
            if thread is not None:
                candidates = [t for t in candidates if t.id == thread]
            if not candidates:
                raise Conflict(
                    f"instance {instance_id} has no failed thread to retry"
                    + (f" named '{thread}'" if thread else "")
                    + f" (status: {work.row.status})"
                )
            return candidates

        def change(work: Working, now: datetime) -> None:
            work.check_data()
            for t in pick(work):
                # The position is kept as it is: a failed step or wait is re-entered (AT), but a
                # thread that failed after a committed step (AFTER) or an accepted event (EVENT)
                # walks on from there, so nothing committed runs twice.
                self.runner.lifecycle.end_waits(  # set up afresh
                    work,
                    t,
                    now,
                    handled_event=None,
                    ending=Ending(how="retried", actor=actor, via=via, at=now),
                )
                t.status, t.retry_at, t.attempts = ThreadStatus.RUNNING, None, 0
                t.error = t.traceback = None
                work.note(
                    Record(now, HistoryKind.RETRY, thread=t.id, name=t.at, actor=actor, via=via)
                )

        return self.operate(instance_id, change, leave=True)

    def cancel(
        self,
        instance_id: str,
        reason: str | None = None,
        actor: str | None = None,
        *,
        via: str = "api",
    ) -> InstanceView:
        check_text(instance_id=instance_id, reason=reason, actor=actor, via=via)
        self.authority.require_operator(actor, f"cancel instance {instance_id}")

        def change(work: Working, now: datetime) -> None:
            work.check_data()  # data that cannot be read: no teardown could run either
            self.runner.lifecycle.stop_threads(
                work, now, Ending(how="cancelled", actor=actor, via=via, at=now, reason=reason)
            )
            work.row.status, work.row.error = Status.CANCELLED, reason or Status.CANCELLED
            work.note(Record(now, HistoryKind.CANCELLED, actor=actor, via=via, message=reason))

        try:
            return self.operate(instance_id, change)
        except CorruptState:  # cancelled without reading what cannot be read
            while True:
                row = self.loader.stored(instance_id)
                if row.status in (Status.COMPLETED, Status.CANCELLED):
                    raise Conflict(f"instance {instance_id} is already {row.status}") from None
                now = self._now()
                record = Record(now, HistoryKind.CANCELLED, actor=actor, via=via, message=reason)
                if self.unreadable.end(row, Status.CANCELLED, reason or Status.CANCELLED, record):
                    return self.reading.get(instance_id)

    def goto(
        self,
        instance_id: str,
        thread: str,
        step: str,
        actor: str | None = None,
        *,
        via: str = "api",
    ) -> InstanceView:
        check_text(instance_id=instance_id, thread=thread, step=step, actor=actor, via=via)
        self.authority.require_operator(actor, f"move a thread of instance {instance_id}")

        def change(work: Working, now: datetime) -> None:
            work.check_data()
            if thread not in work.state.threads:
                raise Conflict(f"instance {instance_id} has no thread '{thread}'")
            self.runner.check_target(work, thread, step)
            t = work.thread(thread)
            self.runner.lifecycle.end_waits(
                work,
                t,
                now,
                handled_event=None,
                ending=Ending(how="moved", actor=actor, via=via, at=now),
            )
            t.status, t.at, t.entry, t.event = ThreadStatus.RUNNING, step, Entry.AT, None
            t.attempts, t.error, t.traceback, t.retry_at = 0, None, None, None
            work.note(Record(now, HistoryKind.GOTO, thread=thread, name=step, actor=actor, via=via))

        return self.operate(instance_id, change)

    def operate(
        self,
        instance_id: str,
        change: Callable[[Working, datetime], None],
        *,
        leave: bool = False,
    ) -> InstanceView:
        """Apply an operator's change with a version check, then drive what it made runnable.
        `leave`: refuse (NewerRelease) an instance a newer release handles (a retry would
        re-enter what this code lacks; a cancel or goto is the operator's to make)."""
        while True:
            work = self.loader.load(instance_id, leave=leave)
            if work.terminal:
                raise Conflict(f"instance {instance_id} is already {work.row.status}")
            now = self._now()
            change(work, now)
            committed = self.runner.committer.commit_change(work, now)
            if committed is None:
                continue  # someone committed first: look again
            if committed.drive_as:
                self.runner.drive(work, committed.drive_as)
            return self.reading.get(instance_id)
