"""What the parts of the runner (commits, events, lifecycle, timers) may use of each other:
the self-type of their methods, so each part type-checks on its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from signoff.engine.core.handlers import Handler, Services, WaitInfo
from signoff.engine.core.state import OpenCase, Teardown, ThreadState
from signoff.engine.core.steps import Step
from signoff.engine.core.tree import Statement
from signoff.engine.core.waits import Wait
from signoff.engine.core.working import Working
from signoff.engine.runtime.heartbeat import LeaseKeeper
from signoff.engine.storage.store import Store


class Driver(Protocol):
    store: Store
    services: Services
    lease: timedelta
    notify_due: Callable[[str, datetime], None]
    keeper: LeaseKeeper

    @property
    def now(self) -> datetime: ...

    def drive(self, work: Working, owner: str) -> None: ...

    def _run(self, work: Working, owner: str) -> None: ...

    def definition(self, work: Working) -> Statement: ...

    def _advance(self, work: Working, thread: ThreadState, owner: str, walked: int = 0) -> int: ...

    def _spawn(
        self, work: Working, parent: ThreadState, thread_id: str, name: str, now: datetime
    ) -> bool: ...

    def _step(self, work: Working, thread: ThreadState, step: Step, owner: str) -> None: ...

    def _step_failed(
        self, work: Working, thread: ThreadState, step: Step, attempt: int, exc: Exception, tb: str
    ) -> None: ...

    def _block(self, work: Working, thread: ThreadState, wait: Wait, now: datetime) -> None: ...

    def _unblock(self, work: Working) -> bool: ...

    def _finish(
        self, work: Working, thread: ThreadState, value: Any, error: str | None, now: datetime
    ) -> None: ...

    def fail(
        self, work: Working, thread: ThreadState, message: str, now: datetime, tb: str | None = None
    ) -> None: ...

    def check_target(self, work: Working, thread_id: str, name: str) -> None: ...

    def claim(self, work: Working, now: datetime) -> str: ...

    def save(self, work: Working, now: datetime) -> bool: ...

    def commit(self, work: Working, owner: str) -> bool: ...

    def rebase(self, work: Working, owner: str) -> None: ...

    def commit_change(self, work: Working, now: datetime) -> str | None: ...

    def _own_for_cleanup(self, work: Working) -> str: ...

    def event(
        self,
        work: Working,
        thread: ThreadState,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        via: str,
    ) -> str | None: ...

    def mid_transition(self, work: Working) -> bool: ...

    def _wait_exists(self, work: Working, wait_name: str) -> bool: ...

    def waits_somewhere(self, work: Working, event: str, thread: str | None) -> bool: ...

    def _early_wait(self, work: Working, event: str, thread: str | None) -> Wait | None: ...

    def keep_for_later(
        self,
        work: Working,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        thread: str | None,
        via: str,
    ) -> bool: ...

    def _deliver(self, work: Working, now: datetime) -> bool: ...

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
    ) -> None: ...

    def stop_threads(self, work: Working, now: datetime) -> None: ...

    def end_waits(
        self, work: Working, thread: ThreadState, now: datetime, handled_event: str | None
    ) -> None: ...

    def handler(self, work: Working, wait_name: str, event: str) -> Handler | None: ...

    def wait_statement(self, work: Working, wait_name: str) -> Wait | None: ...

    def early_check(
        self,
        work: Working,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        thread: str | None,
        via: str,
    ) -> None: ...

    def info(
        self,
        work: Working,
        thread: str,
        wait: str,
        case: OpenCase | Teardown,
        via: str | None = None,
    ) -> WaitInfo: ...

    def cleanups(self, work: Working, now: datetime) -> None: ...

    def _setup(self, work: Working, thread: ThreadState, case: OpenCase, now: datetime) -> None: ...

    def _teardown(self, work: Working, teardown: Teardown, now: datetime) -> None: ...

    def wake(self, work: Working, now: datetime, claimed: str | None = None) -> bool: ...

    def _fire_due(self, work: Working, now: datetime) -> None: ...

    def _ticked(
        self,
        work: Working,
        thread: ThreadState,
        case: OpenCase,
        stored: dict[str, Any],
        now: datetime,
    ) -> None: ...
