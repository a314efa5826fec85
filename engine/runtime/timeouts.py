"""Steps with a timeout: how long one try may hold its instance (`Step(..., timeout=...)`).

An async step is cancelled at its timeout. A sync one cannot be interrupted: past its deadline
the lease keeper stops renewing its lease and `Deadlines.expire` counts the try as failed and
gives the instance up, so another driver goes on; the stuck call's late result is discarded
by the version check of its driver's next commit (docs/concepts.md, "Steps that never return").
Steps without a timeout never come here.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from signoff.engine.core.enums import ThreadStatus
from signoff.engine.core.state import ThreadState
from signoff.engine.core.steps import Step
from signoff.engine.core.tree import Entry
from signoff.engine.core.workflow import Workflow
from signoff.engine.core.working import Working
from signoff.engine.errors import StepTimedOut
from signoff.engine.runtime.commits import Committer
from signoff.engine.runtime.heartbeat import LeaseKeeper
from signoff.engine.storage.store import Store

# how the runner notes a failed try: (work, thread, step, attempt, exc, traceback, seconds)
FailTry = Callable[[Working, ThreadState, Step, int, Exception, str, float], None]


class Deadlines:
    """Bounds the tries of steps that have a timeout."""

    def __init__(
        self, store: Store, keeper: LeaseKeeper, committer: Committer, fail_try: FailTry
    ) -> None:
        self.store = store
        self.keeper = keeper
        self.committer = committer
        self.fail_try = fail_try

    def bounded(
        self, work: Working, thread: ThreadState, step: Step, owner: str
    ) -> Callable[[], Any]:
        """`step`'s action bounded by its timeout. An async step is cancelled at it (measured
        on its event loop). A sync one cannot be interrupted: past the deadline (by the
        engine's clock) the lease keeper stops renewing the lease and `expire` gives the
        instance up, counting the try as failed; the late result is then discarded by the
        version check of this driver's next commit."""
        assert step.timeout is not None
        seconds = step.timeout.total_seconds()
        action = step.action
        key = (work.id, owner)
        expire = functools.partial(
            self.expire, work.id, work.cls, owner, thread.id, step, thread.attempts + 1
        )

        def bounded() -> Any:
            self.keeper.watch(key, self.committer.clock() + timedelta(seconds=seconds), expire)
            try:
                result = action()
            finally:
                self.keeper.unwatch(key)
            if inspect.isawaitable(result):
                return cancelled_at(result, seconds, step.name)
            return result

        if inspect.iscoroutinefunction(action):  # it returns at once: only the loop's timeout
            return lambda: cancelled_at(action(), seconds, step.name)
        return bounded

    def expire(
        self,
        instance_id: str,
        cls: type[Workflow] | None,
        owner: str,
        thread_id: str,
        step: Step,
        attempt: int,
    ) -> None:
        """A sync step held its instance past its timeout: count the try as failed under the
        step's retry policy and give the lease up, in one version-checked commit, so another
        driver (any process's `run_due`) goes on from there. Nothing happens when the instance
        moved on meanwhile (the step returned, another process took over)."""
        assert step.timeout is not None
        timed_out = StepTimedOut(
            f"step '{step.name}' passed its timeout of {_seconds(step.timeout)}; "
            "its lease is no longer renewed"
        )
        for _ in range(3):  # other writers (an event for another thread) may commit first
            row = self.store.load(instance_id)
            if row is None or row.lease_owner != owner:
                return
            work = Working.of(row, cls)
            thread = work.state.threads.get(thread_id)
            if (
                thread is None
                or thread.status != ThreadStatus.RUNNING
                or thread.at != step.name
                or thread.entry not in (Entry.AT, Entry.EVENT)  # a step; a WaitFor's `then`
                or thread.attempts != attempt - 1
            ):
                return
            self.fail_try(work, thread, step, attempt, timed_out, "", step.timeout.total_seconds())
            work.row.lease_owner = work.row.lease_until = None
            if self.committer.save(work, self.committer.clock()):
                return


def _seconds(timeout: timedelta) -> str:
    return f"{timeout.total_seconds():g} s"


async def cancelled_at(awaitable: Awaitable[Any], seconds: float, name: str) -> Any:
    """Await an async step for at most `seconds`; past them it is cancelled and the try fails."""
    try:
        async with asyncio.timeout(seconds) as scope:
            return await awaitable
    except TimeoutError:
        if not scope.expired():  # the step's own TimeoutError
            raise
        raise StepTimedOut(
            f"step '{name}' passed its timeout of {_seconds(timedelta(seconds=seconds))}; "
            "it was cancelled"
        ) from None
