"""Drives instances: walks threads, runs steps, calls handlers, commits after every step.

One process at a time drives an instance: the one holding its lease. Other writers (an event,
an operator's retry) commit their change under the version check and leave the driving to the
lease holder, which merges their change in at its next commit.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

from signoff.engine.core.datajson import data_json
from signoff.engine.core.enums import HistoryKind, Status, ThreadStatus
from signoff.engine.core.finite import nonfinite_at, nonfinite_text, stored_nonfinite
from signoff.engine.core.handlers import Services
from signoff.engine.core.interpreter import Position, advance, thread_body
from signoff.engine.core.records import Record, step_detail_json
from signoff.engine.core.renames import carry_over
from signoff.engine.core.state import Ending, OpenCase, ThreadState
from signoff.engine.core.steps import RunStep, Step
from signoff.engine.core.tree import (
    MAX_STATEMENTS_PER_TRANSITION,
    Entry,
    Returned,
    runaway_message,
    walk,
)
from signoff.engine.core.waits import Block, BlockUntil, Wait, WaitFor
from signoff.engine.core.working import Working
from signoff.engine.errors import (
    Conflict,
    DataNotStorable,
    DefinitionError,
    RunawayLoop,
    SignoffError,
    StatementMissing,
    brief,
)
from signoff.engine.runtime import tracing
from signoff.engine.runtime.commits import Committer, LostLease
from signoff.engine.runtime.events import Events
from signoff.engine.runtime.handovers import Away, HandOvers
from signoff.engine.runtime.heartbeat import LeaseKeeper
from signoff.engine.runtime.lifecycle import Lifecycle
from signoff.engine.runtime.metrics import Metrics
from signoff.engine.runtime.releases import Releases
from signoff.engine.runtime.timeouts import Deadlines
from signoff.engine.runtime.timers import Timers
from signoff.engine.storage.store import Store


class Runner:
    """Walks threads and runs steps. Its parts: the lifecycle runs handlers' setup and teardown,
    the committer saves under the version check, events are applied or kept for later, timers
    fire what falls due, and the lease keeper renews the lease while a long step runs."""

    def __init__(
        self,
        store: Store,
        services: Services,
        lease: timedelta,
        notify_due: Callable[[str, datetime], None],
        metrics: Metrics | None = None,
        away: Away | None = None,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.services = services
        self.lease = lease
        self.keeper = LeaseKeeper(store, lease, services.clock)
        self.lifecycle = Lifecycle(services)
        self.committer = Committer(
            store, self.lifecycle, lease, services.clock, notify_due, metrics, on_outbox
        )
        self.events = Events(self.lifecycle, self.committer, services.clock)
        self.timers = Timers(self.lifecycle, self.events)
        self.handovers = HandOvers(self.lifecycle, away)
        self.deadlines = Deadlines(store, self.keeper, self.committer, self._step_failed)
        # the releases this process runs: an instance a newer release moved is left to it
        self.releases: Releases | None = None

    @property
    def now(self) -> datetime:
        return self.services.clock()

    # --- driving -------------------------------------------------------------------------------

    def drive(self, work: Working, owner: str) -> bool:
        """Walk every runnable thread until all block, then release the lease. True when `work`
        is then the instance as committed (a caller may answer from it without reading again);
        False when another process has it now."""
        if work.row.lease_owner != owner:
            return False  # another process took over between our commit and this load
        try:
            # the keeper renews the lease while anything of the drive runs long: a step, a
            # setup or teardown (a Slack post), a handler
            with self.keeper.holding(work.id, owner):
                while True:
                    self._run(work, owner)
                    now = self.now
                    work.row.lease_owner = work.row.lease_until = None
                    if self.committer.save(work, now):
                        return True
                    self.committer.rebase(work, owner)
        except (LostLease, DataNotStorable):  # the latter has failed the instance already
            return False
        except NewerHandles:
            self._leave(work, owner)
            return False

    def _leave(self, work: Working, owner: str) -> None:
        """A thread walked (or was merged) onto a statement only a newer release has: commit
        what this drive did, then give the instance back for the newer release to drive."""
        try:
            self.committer.commit(work, owner)
        except LostLease:
            return
        if self.releases is not None:
            self.releases.give_back(work, owner, self.now)

    def _run(self, work: Working, owner: str) -> None:
        walked = 0  # statements walked by this transition: steps in an endless loop count too
        while True:
            self.lifecycle.cleanups(work)  # reads the clock only when something is owed
            if work.terminal:
                return
            if work.state.inbox and self.events.deliver(work, self.now):
                self.committer.commit(work, owner)
            for thread in work.state.threads.values():  # the first running one
                if thread.status == ThreadStatus.RUNNING:
                    break
            else:
                if self._unblock(work):
                    continue
                return
            walked += self._advance(work, thread, owner, walked)

    def _advance(self, work: Working, thread: ThreadState, owner: str, walked: int = 0) -> int:
        """Move `thread` on by one step, block or return; returns the statements walked."""
        try:
            definition = work.definition()
            body = thread_body(definition, thread.root)
            moved = advance(body, Position(thread.at, thread.entry, thread.event))
        except StatementMissing as exc:
            now = self.now
            if self.releases is not None:
                before = (thread.at, thread.root)
                if self.releases.place(work, now) is not None:
                    raise NewerHandles(work.row.workflow) from exc
                if (thread.at, thread.root) != before:
                    return 1  # moved back onto a name this definition has: walk again
            work.fail(thread, f"{exc} in workflow {work.row.workflow}", now)
            return 1
        except (DefinitionError, RunawayLoop) as exc:
            work.fail(thread, str(exc), self.now)
            return 1
        except Exception as exc:  # a condition or definition() itself raised
            work.fail(
                thread,
                f"building the definition failed: {brief(exc)}",
                self.now,
                traceback.format_exc(),
            )
            return 1
        if walked + moved.statements > MAX_STATEMENTS_PER_TRANSITION:
            work.fail(thread, runaway_message(), self.now)
            return moved.statements
        # the clock is read where the time is written: not for a step, which takes its own
        # (`_step`), so a step costs one clock read less
        if moved.spawned:
            now = self.now
            for go in moved.spawned:
                if not self._spawn(work, thread, go.thread_id, go.name, now):
                    return moved.statements  # failed at once: nothing after the Go runs
        match moved.next:
            case RunStep(step=step, entry=entry):
                # the position moves past any Go first, so a spawn commits with it
                if thread.at != step.name:
                    thread.at = step.name
                if thread.entry is not entry:  # EVENT: a WaitFor's `then`
                    thread.entry = entry
                if thread.event is not None:
                    thread.event = None
                # whatever happened since the last commit (a step, a wait that began) is
                # durable before the next step runs; if that commit had to merge another
                # writer's change, walk again from the state as it now is
                timeout = step.retry.timeout
                if (work.history or timeout is not None) and not self.committer.commit(work, owner):
                    return moved.statements
                if timeout is None:
                    self._step(work, thread, step)
                else:  # its position is committed: past its timeout, another driver takes it
                    self._step(
                        work, thread, step, self.deadlines.bounded(work, thread, step, owner)
                    )
            case Block(wait=wait):
                self._block(work, thread, wait, self.now)
                # The wait begins when it is committed: only then may a setup announce it (post
                # the Slack buttons), so an answer that comes at once finds the wait open.
                if any(case.handler.announces(self.services) for case in wait.cases):
                    self.committer.commit(work, owner)
            case BlockUntil(wait_for=wait_for):
                thread.status, thread.at, thread.entry, thread.event = (
                    ThreadStatus.BLOCKED,
                    wait_for.name,
                    Entry.AT,
                    None,
                )
            case Returned(value=value, error=error):
                self._finish(work, thread, value, error, self.now)
            case None:
                self._finish(work, thread, None, None, self.now)
        return moved.statements

    def _spawn(
        self, work: Working, parent: ThreadState, thread_id: str, name: str, now: datetime
    ) -> bool:
        """Start a Go's thread; False when its id names a thread still alive, which fails the
        thread that ran into the Go (it would otherwise be dropped silently)."""
        existing = work.state.threads.get(thread_id)
        if existing is not None and existing.live:
            work.fail(
                parent,
                f"Go '{name}' started thread '{thread_id}' again while it is still "
                f"{existing.status}; give each Go a unique id (a Go inside a For needs an id "
                "that changes with each round, or a thread that ends first)",
                now,
            )
            return False
        work.state.threads[thread_id] = ThreadState(id=thread_id, name=name, root=name)
        work.note(Record(now, HistoryKind.THREAD_STARTED, thread=thread_id, name=name))
        return True

    def _step(
        self,
        work: Working,
        thread: ThreadState,
        step: Step,
        action: Callable[[], Any] | None = None,
    ) -> None:
        """Run `step` (the thread stands at it: `_advance` put it there) and note how it went.
        Thread fields are set only when they change: each assignment to a pydantic model is a
        validated call, and this runs for every step. `action` stands for the step's own when
        it has a timeout (`Deadlines.bounded`)."""
        model = work.workflow()
        before = work.row.data
        attempt = thread.attempts + 1
        started = perf_counter()
        try:
            if tracing.off():
                self.services.call(action or step.action)
            else:
                with tracing.span(
                    "signoff.step",
                    lambda: {
                        "signoff.workflow": work.row.workflow,
                        "signoff.instance_id": work.id,
                        "signoff.thread": thread.id,
                        "signoff.step": step.name,
                        "signoff.attempt": attempt,
                    },
                ):
                    self.services.call(action or step.action)
            try:
                data = data_json(model)
            except Exception as exc:
                raise DataNotJSON(
                    f"step '{step.name}' left data that cannot be stored as JSON: {exc}"
                ) from exc
            nonfinite = stored_nonfinite(model, data)
            if nonfinite is not None:
                raise DataNotJSON(f"step '{step.name}' left {nonfinite_text(nonfinite)}")
        except Exception as exc:
            work.reset_data(before)
            took_s = perf_counter() - started
            self._step_failed(work, thread, step, attempt, exc, traceback.format_exc(), took_s)
            return
        work.row.data = data
        thread.entry = Entry.AFTER
        if thread.attempts or thread.error is not None or thread.traceback is not None:
            thread.attempts, thread.error, thread.traceback = 0, None, None
        took = round((perf_counter() - started) * 1e6) / 1000  # ms to the microsecond
        work.note(
            Record(
                self.now,
                HistoryKind.STEP,
                thread=thread.id,
                name=step.name,
                detail={"attempt": attempt, "ms": took},
                detail_json=step_detail_json(attempt, took),
            )
        )
        # Committed before the next step runs or the lease is released, whichever comes
        # first: a step that ends the walk shares its commit with the release.

    def _step_failed(
        self,
        work: Working,
        thread: ThreadState,
        step: Step,
        attempt: int,
        exc: Exception,
        tb: str,
        seconds: float = 0.0,
    ) -> None:
        now = self.now
        message = str(exc) if isinstance(exc, DataNotJSON) else brief(exc)
        delay = step.retry.delay_after(attempt)
        thread.attempts, thread.error, thread.traceback = attempt, message, tb
        work.note(
            Record(
                now,
                HistoryKind.STEP_FAILED,
                thread=thread.id,
                name=step.name,
                message=message,
                detail={
                    "attempt": attempt,
                    "of": step.retry.attempts,
                    "traceback": tb,
                    "retry_in_seconds": delay.total_seconds() if delay else None,
                },
                measures={"seconds": seconds},
            )
        )
        if delay is None:
            work.fail(
                thread,
                f"step '{step.name}' failed after {attempt} attempt(s): {message}",
                now,
                tb,
            )
        else:
            thread.status, thread.retry_at = ThreadStatus.RETRYING, now + delay

    def _block(self, work: Working, thread: ThreadState, wait: Wait, now: datetime) -> None:
        thread.status, thread.at, thread.entry = ThreadStatus.WAITING, wait.name, Entry.AT
        if thread.event is not None:
            thread.event = None
        thread.wait_round += 1
        thread.cases = [
            OpenCase(event=c.event, kind=c.handler.kind, began_at=now, info=c.handler.describe())
            for c in wait.cases
        ]
        work.waits_dirty = True
        detail: dict[str, Any] = {"events": [c.event for c in wait.cases]}
        asked = sorted(
            {
                name
                for c in thread.cases
                if c.kind == "approval"
                for key in ("approvers", "escalate_to")
                for name in c.info.get(key) or ()
            }
        )
        if asked:  # who was asked keeps sight of the instance once the wait is over
            detail["asked"] = asked
        first = [c.info.get("approvers") for c in thread.cases if c.kind == "approval"]
        if first:  # who it waits for at first (None: anyone), before any escalation
            named = {str(n) for a in first for n in a or ()}
            detail["approvers"] = None if None in first else sorted(named)
        work.note(Record(now, HistoryKind.WAITING, thread=thread.id, name=wait.name, detail=detail))
        self.handovers.delegate(work, thread, wait, now)  # approvers away: to their delegates

    def _unblock(self, work: Working) -> bool:
        """Wake threads in WaitFor whose condition now holds."""
        woke = False
        for thread in work.state.threads.values():
            if thread.status != ThreadStatus.BLOCKED:
                continue
            try:
                body = thread_body(work.definition(), thread.root)
                moved = advance(body, Position(thread.at, Entry.AT))
            except SignoffError:
                moved = None  # _advance reports it properly
            if not (
                moved
                and isinstance(moved.next, BlockUntil)
                and moved.next.wait_for.name == thread.at
            ):
                thread.status = ThreadStatus.RUNNING
                woke = True
        return woke

    def _finish(
        self, work: Working, thread: ThreadState, value: Any, error: str | None, now: datetime
    ) -> None:
        thread.status = ThreadStatus.COMPLETED
        if thread.cases:  # a running thread has none: no assignment through pydantic for it
            thread.cases = []
        if thread.id != "main":
            work.note(Record(now, HistoryKind.THREAD_COMPLETED, thread=thread.id, message=error))
            return
        nonfinite = nonfinite_at(value)
        if nonfinite is not None:
            work.fail(thread, f"the workflow returned {nonfinite_text(nonfinite)}", now)
            return
        try:
            result = json.dumps(value)
        except (TypeError, ValueError) as exc:
            work.fail(
                thread,
                f"the workflow returned a value that cannot be stored as JSON: {exc}",
                now,
            )
            return
        # the ending is told to teardowns only: made when some thread still has an open case
        ending = (
            Ending(how="finished", at=now)
            if any(t.cases and t.live for t in work.state.threads.values())
            else None
        )
        self.lifecycle.stop_threads(work, now, ending)
        if thread.status != ThreadStatus.COMPLETED:
            thread.status = ThreadStatus.COMPLETED
        work.row.status, work.row.result, work.row.error = Status.COMPLETED, result, error
        work.note(
            Record(
                now, HistoryKind.COMPLETED, thread="main", message=error, detail={"result": value}
            )
        )

    def wake(self, work: Working, now: datetime, claimed: str | None = None) -> bool:
        """Do what fell due for one instance: timers, step retries, owed setups/teardowns,
        and threads left running by a driver that died.

        `claimed` is the lease token under which `Store.claim_due` already took the instance
        (how the engine's `run_due` and the scheduler come here): the lease is ours, not a
        live driver's. Without it, the lease is taken here, under the version check."""
        committer = self.committer
        while True:
            mine = claimed is not None and work.row.lease_owner == claimed
            if work.terminal:
                if not work.state.teardowns:
                    if mine:  # release the claim, or it would fall due again at its end
                        committer.save(work, now)
                    return False
                self.lifecycle.cleanups(work, now)
                if committer.save(work, now):
                    return True
            else:
                owner = claimed if mine and claimed else committer.claim(work, now)
                if not owner:
                    return False
                self.timers.fire_due(work, now)
                if committer.save(work, now):
                    work.row.lease_owner = owner
                    self.drive(work, owner)
                    return True
            fresh = self.store.load(work.id)
            if fresh is None:
                return False
            work = Working.of(fresh, work.cls)
            carry_over(work, now)
            if self.releases is not None and self.releases.place(work, now) is not None:
                if claimed is not None and work.row.lease_owner == claimed:
                    self.releases.give_back(work, claimed, now)
                return False

    def check_target(self, work: Working, thread_id: str, name: str) -> None:
        thread = work.thread(thread_id)
        body = thread_body(work.definition(), thread.root)
        for stmt in walk(body):
            if isinstance(stmt, Step | Wait | WaitFor) and stmt.name == name:
                return
        raise Conflict(f"thread '{thread_id}' has no step or wait named '{name}'")


class NewerHandles(Exception):
    """The drive reached a statement only a newer release has: stop, and leave it to that."""


class DataNotJSON(Exception):
    """A step left workflow data that cannot be stored."""
