"""Drives instances: walks threads, runs steps, calls handlers, commits after every step.

One process at a time drives an instance: the one holding its lease. Other writers (an event,
an operator's retry) commit their change under the version check and leave the driving to the
lease holder, which merges their change in at its next commit.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any

from engine.errors import (
    Conflict,
    DefinitionError,
    EventRejected,
    RunawayLoop,
    SignoffError,
    StatementMissing,
)
from engine.handlers import FIRE, Handler, Services, WaitInfo
from engine.heartbeat import LeaseKeeper
from engine.interpreter import Position, advance, thread_body
from engine.records import Record
from engine.state import Decided, OpenCase, Pending, Teardown, ThreadState
from engine.steps import Step
from engine.store import Store
from engine.tree import (
    MAX_STATEMENTS_PER_TRANSITION,
    Block,
    BlockUntil,
    Entry,
    Returned,
    RunStep,
    Statement,
    runaway_message,
    walk,
)
from engine.validate import validate
from engine.waits import Wait, WaitFor
from engine.working import Working, rebase

MAX_CLEANUP_ATTEMPTS = 20
MAX_PAYLOAD_IN_HISTORY = 4000


class LostLease(Exception):
    """Another process took over the instance (our lease ran out): stop driving it."""


def cleanup_delay(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** (attempts - 1)), timedelta(minutes=10))


def run_action(action: Callable[[], Any]) -> Any:
    """Call a step's action; an async one runs to completion on an event loop of its own."""
    result = action()
    if not inspect.isawaitable(result):
        return result

    async def wait_for() -> Any:
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait_for())
    with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside a running loop
        return pool.submit(asyncio.run, wait_for()).result()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Runner:
    def __init__(
        self,
        store: Store,
        services: Services,
        lease: timedelta,
        notify_due: Callable[[str, datetime], None],
    ) -> None:
        self.store = store
        self.services = services
        self.lease = lease
        self.notify_due = notify_due
        self.keeper = LeaseKeeper(store, lease, services.clock)

    @property
    def now(self) -> datetime:
        return self.services.clock()

    # --- committing ----------------------------------------------------------------------------

    def claim(self, work: Working, now: datetime) -> str:
        """Take the lease unless a live driver holds it; returns our token or ""."""
        row = work.row
        if row.lease_owner and row.lease_until and row.lease_until > now:
            return ""
        owner = uuid.uuid4().hex
        row.lease_owner, row.lease_until = owner, now + self.lease
        return owner

    def save(self, work: Working, now: datetime) -> bool:
        """Commit the working copy if nobody else committed since we loaded it."""
        work.refresh_status()
        row = work.row
        expected = row.version
        if row.lease_owner and not work.terminal:
            row.due_at = row.lease_until
        else:
            row.lease_owner = row.lease_until = None
            row.due_at = work.state.next_due()  # a finished instance may still owe teardowns
        row.state = work.state.model_dump_json()
        row.version, row.updated_at = expected + 1, now
        waits = work.wait_records() if work.waits_dirty or work.terminal else None
        if not self.store.save(row, expected, waits, work.history):
            row.version = expected
            return False
        work.committed(expected + 1, now)
        if row.due_at is not None and row.lease_owner is None:
            self.notify_due(row.id, row.due_at)
        return True

    def commit(self, work: Working, owner: str) -> None:
        """Commit mid-drive, keeping the lease; merge in whatever another writer committed."""
        while True:
            now = self.now
            work.row.lease_owner, work.row.lease_until = owner, now + self.lease
            if self.save(work, now):
                return
            self.rebase(work, owner)

    def rebase(self, work: Working, owner: str) -> None:
        fresh = self.store.load(work.id)
        if fresh is None:
            raise LostLease(f"instance {work.id} vanished")
        theirs = Working.of(fresh, work.cls)
        if fresh.lease_owner not in (owner, None):
            raise LostLease(f"instance {work.id} is driven elsewhere now")
        if not rebase(work, theirs):
            work.note(
                Record(
                    self.now,
                    "merged",
                    message="a concurrent change to the same thread "
                    "won; this process's uncommitted progress was discarded",
                )
            )

    def commit_change(self, work: Working, now: datetime) -> str | None:
        """Commit an outside change (event, retry, cancel, goto). None: someone committed first,
        reload and try again; "": committed, another process drives; else our lease token."""
        owner = "" if work.terminal else self.claim(work, now)
        if not self.save(work, now):
            return None
        if work.terminal and work.state.teardowns:
            return self._own_for_cleanup(work)
        return owner

    def _own_for_cleanup(self, work: Working) -> str:
        """A finished instance still owes teardowns: run them now (run_due retries failures)."""
        self.cleanups(work, self.now)
        self.save(work, self.now)
        return ""

    # --- driving -------------------------------------------------------------------------------

    def drive(self, work: Working, owner: str) -> None:
        """Walk every runnable thread until all block, then release the lease."""
        if work.row.lease_owner != owner:
            return  # another process took over between our commit and this load
        try:
            while True:
                self._run(work, owner)
                now = self.now
                work.row.lease_owner = work.row.lease_until = None
                if self.save(work, now):
                    return
                self.rebase(work, owner)
        except LostLease:
            return

    def _run(self, work: Working, owner: str) -> None:
        walked = 0  # statements walked by this transition: steps in an endless loop count too
        while True:
            now = self.now
            self.cleanups(work, now)
            if work.terminal:
                return
            if work.state.inbox and self._deliver(work, now):
                self.commit(work, owner)
            thread = next((t for t in work.state.threads.values() if t.status == "running"), None)
            if thread is None:
                if self._unblock(work):
                    continue
                return
            walked += self._advance(work, thread, owner, walked)

    def definition(self, work: Working) -> Statement:
        """The tree built from the data as it is now; checked once per transition, since a
        full check costs more than the rebuild that follows every step."""
        tree = work.workflow().definition()
        if not work.validated:
            validate(tree, work.row.workflow)
            work.validated = True
        return tree

    def _advance(self, work: Working, thread: ThreadState, owner: str, walked: int = 0) -> int:
        """Move `thread` on by one step, block or return; returns the statements walked."""
        now = self.now
        try:
            definition = self.definition(work)
            body = thread_body(definition, thread.root)
            moved = advance(body, Position(thread.at, thread.entry, thread.event))
        except StatementMissing as exc:
            self.fail(work, thread, f"{exc} in workflow {work.row.workflow}", now)
            return 1
        except (DefinitionError, RunawayLoop) as exc:
            self.fail(work, thread, str(exc), now)
            return 1
        except Exception as exc:  # a condition or definition() itself raised
            self.fail(
                work,
                thread,
                f"building the definition failed: {_error(exc)}",
                now,
                traceback.format_exc(),
            )
            return 1
        if walked + moved.statements > MAX_STATEMENTS_PER_TRANSITION:
            self.fail(work, thread, runaway_message(), now)
            return moved.statements
        for go in moved.spawned:
            self._spawn(work, go.thread_id, go.name, now)
        match moved.next:
            case RunStep(step=step):
                self._step(work, thread, step, owner)
            case Block(wait=wait):
                self._block(work, thread, wait, now)
                # The wait begins when it is committed: only then may setup announce it (post
                # the Slack buttons), so an answer that comes at once finds the wait open.
                self.commit(work, owner)
            case BlockUntil(wait_for=wait_for):
                thread.status, thread.at, thread.entry, thread.event = (
                    "blocked",
                    wait_for.name,
                    Entry.AT,
                    None,
                )
            case Returned(value=value, error=error):
                self._finish(work, thread, value, error, now)
            case None:
                self._finish(work, thread, None, None, now)
        return moved.statements

    def _spawn(self, work: Working, thread_id: str, name: str, now: datetime) -> None:
        existing = work.state.threads.get(thread_id)
        if existing is not None and existing.live:
            raise_into = work.thread("main") if "main" in work.state.threads else existing
            self.fail(
                work,
                raise_into,
                f"Go '{name}' started thread '{thread_id}' while it is "
                "still running; give each Go a unique id",
                now,
            )
            return
        work.state.threads[thread_id] = ThreadState(id=thread_id, name=name, root=name)
        work.note(Record(now, "thread started", thread=thread_id, name=name))

    def _step(self, work: Working, thread: ThreadState, step: Step, owner: str) -> None:
        thread.at, thread.entry, thread.event, thread.status = step.name, Entry.AT, None, "running"
        model = work.workflow()
        before = work.row.data
        attempt = thread.attempts + 1
        started = perf_counter()
        try:
            with self.keeper.holding(work.id, owner):
                run_action(step.action)
            try:
                data = model.model_dump_json(warnings="error")
            except Exception as exc:
                raise DataNotJSON(
                    f"step '{step.name}' left data that cannot be stored as JSON: {exc}"
                ) from exc
        except Exception as exc:
            work.reset_data(before)
            self._step_failed(work, thread, step, attempt, exc, traceback.format_exc())
            self.commit(work, owner)
            return
        work.row.data = data
        thread.entry, thread.attempts, thread.error, thread.traceback = Entry.AFTER, 0, None, None
        took = round((perf_counter() - started) * 1000, 3)
        work.note(
            Record(
                self.now,
                "step",
                thread=thread.id,
                name=step.name,
                detail={"attempt": attempt, "ms": took},
            )
        )
        self.commit(work, owner)

    def _step_failed(
        self, work: Working, thread: ThreadState, step: Step, attempt: int, exc: Exception, tb: str
    ) -> None:
        now = self.now
        message = str(exc) if isinstance(exc, DataNotJSON) else _error(exc)
        delay = step.retry.delay_after(attempt)
        thread.attempts, thread.error, thread.traceback = attempt, message, tb
        work.note(
            Record(
                now,
                "step failed",
                thread=thread.id,
                name=step.name,
                message=message,
                detail={
                    "attempt": attempt,
                    "of": step.retry.attempts,
                    "traceback": tb,
                    "retry_in_seconds": delay.total_seconds() if delay else None,
                },
            )
        )
        if delay is None:
            self.fail(
                work,
                thread,
                f"step '{step.name}' failed after {attempt} attempt(s): {message}",
                now,
                tb,
            )
        else:
            thread.status, thread.retry_at = "retrying", now + delay

    def _block(self, work: Working, thread: ThreadState, wait: Wait, now: datetime) -> None:
        thread.status, thread.at, thread.entry, thread.event = "waiting", wait.name, Entry.AT, None
        thread.wait_round += 1
        thread.cases = [
            OpenCase(event=c.event, kind=c.handler.kind, began_at=now, info=c.handler.describe())
            for c in wait.cases
        ]
        work.waits_dirty = True
        work.note(
            Record(
                now,
                "waiting",
                thread=thread.id,
                name=wait.name,
                detail={"events": [c.event for c in wait.cases]},
            )
        )

    def _unblock(self, work: Working) -> bool:
        """Wake threads in WaitFor whose condition now holds."""
        woke = False
        for thread in work.state.threads.values():
            if thread.status != "blocked":
                continue
            try:
                body = thread_body(self.definition(work), thread.root)
                moved = advance(body, Position(thread.at, Entry.AT))
            except SignoffError:
                moved = None  # _advance reports it properly
            if not (
                moved
                and isinstance(moved.next, BlockUntil)
                and moved.next.wait_for.name == thread.at
            ):
                thread.status = "running"
                woke = True
        return woke

    def _finish(
        self, work: Working, thread: ThreadState, value: Any, error: str | None, now: datetime
    ) -> None:
        thread.status, thread.cases = "completed", []
        if thread.id != "main":
            work.note(Record(now, "thread completed", thread=thread.id, message=error))
            return
        try:
            result = json.dumps(value)
        except (TypeError, ValueError) as exc:
            self.fail(
                work,
                thread,
                f"the workflow returned a value that cannot be stored as JSON: {exc}",
                now,
            )
            return
        self.stop_threads(work, now)
        for pending in work.state.inbox:
            work.note(
                Record(
                    now,
                    "event dropped",
                    name=pending.event,
                    actor=pending.actor,
                    via=pending.via,
                    message="the instance ended before a wait for this event began",
                )
            )
        work.state.inbox = []
        thread.status = "completed"
        work.row.status, work.row.result, work.row.error = "completed", result, error
        work.note(Record(now, "completed", thread="main", message=error, detail={"result": value}))

    def fail(
        self, work: Working, thread: ThreadState, message: str, now: datetime, tb: str | None = None
    ) -> None:
        thread.status, thread.error, thread.traceback, thread.retry_at = "failed", message, tb, None
        work.waits_dirty = True  # a failed thread's wait leaves the inbox
        work.note(Record(now, "failed", thread=thread.id, name=thread.at, message=message))
        work.refresh_status()

    # --- waits and handlers --------------------------------------------------------------------

    def stop_threads(self, work: Working, now: datetime) -> None:
        for thread in work.state.threads.values():
            if thread.live:
                self.end_waits(work, thread, now, handled_event=None)
                thread.status = "stopped"

    def end_waits(
        self, work: Working, thread: ThreadState, now: datetime, handled_event: str | None
    ) -> None:
        """Close the thread's open cases; each owes its handler a teardown. A timer that was
        already due but had not fired yet (the scheduler was down or busy) is discarded, and the
        history says so: the wait ended first."""
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
                        "timer discarded",
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
                )
            )
        if thread.cases:
            work.waits_dirty = True
        thread.cases = []

    def handler(self, work: Working, wait_name: str, event: str) -> Handler | None:
        for stmt in walk(self.definition(work)):
            if isinstance(stmt, Wait) and stmt.name == wait_name:
                case = stmt.case(event)
                return case.handler if case else None
        return None

    def info(
        self,
        work: Working,
        thread: str,
        wait: str,
        case: OpenCase | Teardown,
        via: str | None = None,
    ) -> WaitInfo:
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
        )

    def event(
        self,
        work: Working,
        thread: ThreadState,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        via: str,
    ) -> str | None:
        """Apply an event to a waiting thread and commit it. Returns as `commit_change` does."""
        now = self.now
        wait_name = thread.at or ""
        try:
            handler = self.handler(work, wait_name, event)
        except SignoffError as exc:
            handler, problem = None, str(exc)
        except Exception as exc:  # the stored data no longer fits the model, definition() raised
            handler, problem = None, f"building the definition failed: {_error(exc)}"
        else:
            problem = (
                f"wait '{wait_name}' (or its event '{event}') no longer exists in workflow "
                f"{work.row.workflow}"
            )
        if handler is None:
            self.fail(work, thread, problem, now)
            if not self.save(work, now):  # no lease taken: nothing is left to drive
                return None
            raise StatementMissing(
                f"{problem}; instance {work.id} is now failed: deploy a fix, "
                "then retry it or move the thread with goto"
            )
        case = next(c for c in thread.cases if c.event == event)
        self._apply(work, thread, handler, case, payload, actor, via, now)
        return self.commit_change(work, now)

    # --- events that came early --------------------------------------------------------------

    def mid_transition(self, work: Working) -> bool:
        """A live driver holds the instance: threads may be about to begin new waits."""
        row = work.row
        return bool(row.lease_owner and row.lease_until and row.lease_until > self.now)

    def waits_somewhere(self, work: Working, event: str, thread: str | None) -> bool:
        """Whether the definition has a Wait with this event (in `thread`'s body, if named)."""
        try:
            definition = self.definition(work)
            if thread is not None:
                state = work.state.threads.get(thread)
                if state is None:
                    return False
                definition = thread_body(definition, state.root)
        except Exception:
            return False
        return any(isinstance(s, Wait) and s.case(event) for s in walk(definition))

    def keep_for_later(
        self,
        work: Working,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        thread: str | None,
        via: str,
    ) -> bool:
        """Put an early event in the instance's inbox; False when someone committed first."""
        now = self.now
        work.state.inbox.append(
            Pending(event=event, payload=payload, actor=actor, via=via, thread=thread, at=now)
        )
        work.note(
            Record(
                now,
                "event kept",
                thread=thread,
                name=event,
                actor=actor,
                via=via,
                message="arrived mid-transition; delivered when its wait begins",
            )
        )
        return self.save(work, now)

    def _deliver(self, work: Working, now: datetime) -> bool:
        """Give kept events to the waits that have begun for them; True if any was taken."""
        delivered = False
        for pending in list(work.state.inbox):
            target = next(
                (
                    t
                    for t in work.state.threads.values()
                    if t.status == "waiting"
                    and (pending.thread in (None, t.id))
                    and any(c.event == pending.event for c in t.cases)
                ),
                None,
            )
            if target is None:
                continue
            work.state.inbox.remove(pending)
            delivered = True
            try:
                handler = self.handler(work, target.at or "", pending.event)
                if handler is None:
                    raise StatementMissing(f"wait '{target.at}' has no event '{pending.event}'")
                case = next(c for c in target.cases if c.event == pending.event)
                self._apply(
                    work, target, handler, case, pending.payload, pending.actor, pending.via, now
                )
            except SignoffError as exc:
                work.note(
                    Record(
                        now,
                        "event refused",
                        thread=target.id,
                        name=pending.event,
                        actor=pending.actor,
                        via=pending.via,
                        message=str(exc),
                    )
                )
        return delivered

    def _apply(
        self,
        work: Working,
        thread: ThreadState,
        handler: Handler,
        case: OpenCase,
        payload: dict[str, Any],
        actor: str | None,
        via: str,
        now: datetime,
    ) -> None:
        model = work.workflow()
        before = work.row.data
        try:
            handler.handle(self.info(work, thread.id, thread.at or "", case, via), payload, actor)
            data = model.model_dump_json(warnings="error")
        except SignoffError:
            work.reset_data(before)
            raise
        except Exception as exc:
            work.reset_data(before)
            raise EventRejected(
                f"the {handler.kind} handler of '{case.event}' refused the event: {_error(exc)}"
            ) from exc
        work.row.data = data
        approved = payload.get("approved") if handler.kind == "approval" else None
        work.decided(
            Decided(
                thread=thread.id,
                wait=thread.at or "",
                event=case.event,
                events=[c.event for c in thread.cases],
                actor=actor,
                via=via,
                at=now,
                approved=approved if isinstance(approved, bool) else None,
                key=thread.wait_key,
            )
        )
        shown = json.dumps(payload)
        detail: dict[str, Any] = {
            "wait": thread.at,
            "payload": payload
            if len(shown) <= MAX_PAYLOAD_IN_HISTORY
            else shown[:MAX_PAYLOAD_IN_HISTORY] + "...",
        }
        if isinstance(approved, bool):
            reason = payload.get("reason")
            reason = reason.strip() if isinstance(reason, str) else None  # as the Decision has it
            work.note(
                Record(
                    now,
                    "decision",
                    thread=thread.id,
                    name=case.event,
                    actor=actor,
                    via=via,
                    message=("approved" if approved else "denied")
                    + (f": {reason}" if reason else ""),
                    detail=detail,
                )
            )
        else:
            work.note(
                Record(
                    now,
                    "event",
                    thread=thread.id,
                    name=case.event,
                    actor=actor,
                    via=via,
                    detail=detail,
                )
            )
        self.end_waits(work, thread, now, handled_event=case.event)
        thread.status, thread.entry, thread.event = "running", Entry.EVENT, case.event

    def cleanups(self, work: Working, now: datetime) -> None:
        """Run setups owed to new waits and teardowns owed to ended ones, and due retries."""
        for thread in work.state.threads.values():
            if thread.status != "waiting":
                continue
            for case in thread.cases:
                if case.setup == "pending" or (
                    case.setup == "failed" and case.retry_at and case.retry_at <= now
                ):
                    self._setup(work, thread, case, now)
        for teardown in list(work.state.teardowns):
            if teardown.attempts == 0 or (teardown.retry_at and teardown.retry_at <= now):
                self._teardown(work, teardown, now)

    def _setup(self, work: Working, thread: ThreadState, case: OpenCase, now: datetime) -> None:
        work.waits_dirty = True
        try:
            handler = self.handler(work, thread.at or "", case.event)
            if handler is None:
                raise StatementMissing(f"wait '{thread.at}' no longer has event '{case.event}'")
            stored = handler.setup(self.info(work, thread.id, thread.at or "", case))
            if stored is not None:
                json.dumps(stored)
                stored = dict(stored)
            case.stored, case.setup, case.error, case.retry_at = stored, "done", None, None
            case.due_at = handler.due_at(self.info(work, thread.id, thread.at or "", case))
        except Exception as exc:
            case.attempts += 1
            case.setup, case.error = "failed", _error(exc)
            case.retry_at = now + cleanup_delay(case.attempts)
            work.note(
                Record(
                    now,
                    "setup failed",
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

    def _teardown(self, work: Working, teardown: Teardown, now: datetime) -> None:
        try:
            handler = self.handler(work, teardown.wait, teardown.event)
            if handler is not None:
                handler.teardown(
                    self.info(work, teardown.thread, teardown.wait, teardown), teardown.handled
                )
            else:
                work.note(
                    Record(
                        now,
                        "teardown skipped",
                        thread=teardown.thread,
                        name=teardown.event,
                        message=f"wait '{teardown.wait}' no longer exists in the definition",
                    )
                )
        except Exception as exc:
            teardown.attempts += 1
            teardown.error = _error(exc)
            work.note(
                Record(
                    now,
                    "teardown failed",
                    thread=teardown.thread,
                    name=teardown.event,
                    message=teardown.error,
                    detail={"wait": teardown.wait, "attempt": teardown.attempts},
                )
            )
            if teardown.attempts < MAX_CLEANUP_ATTEMPTS:
                teardown.retry_at = now + cleanup_delay(teardown.attempts)
                return
            work.note(
                Record(
                    now,
                    "teardown abandoned",
                    thread=teardown.thread,
                    name=teardown.event,
                    message=f"gave up after {teardown.attempts} attempts",
                )
            )
        work.state.teardowns.remove(teardown)

    # --- time ----------------------------------------------------------------------------------

    def wake(self, work: Working, now: datetime, claimed: str | None = None) -> bool:
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

    def _fire_due(self, work: Working, now: datetime) -> None:
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
                        f"building the definition failed: {_error(exc)}",
                        now,
                        traceback.format_exc(),
                    )
                    break
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
                    case.error = _error(exc)
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

    def check_target(self, work: Working, thread_id: str, name: str) -> None:
        thread = work.thread(thread_id)
        body = thread_body(self.definition(work), thread.root)
        for stmt in walk(body):
            if isinstance(stmt, Step | Wait | WaitFor) and stmt.name == name:
                return
        raise Conflict(f"thread '{thread_id}' has no step or wait named '{name}'")


class DataNotJSON(Exception):
    """A step left workflow data that cannot be stored."""
