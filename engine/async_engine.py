"""`AsyncEngine`: the engine for asyncio applications.

Every method of `Engine` is here as a coroutine. The database work runs in a small pool of worker
threads, so awaiting never blocks the caller's event loop; `async def` steps and handlers run on
the caller's loop (the worker hands them over and waits), so they can use the application's own
async clients, such as an `httpx.AsyncClient` made at startup.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from signoff.engine.core.workflow import Workflow
from signoff.engine.engine import Engine

P = ParamSpec("P")
R = TypeVar("R")


def _awaitable(
    method: Callable[Concatenate[Engine, P], R],
) -> Callable[Concatenate[AsyncEngine, P], Coroutine[Any, Any, R]]:
    """`Engine.method` as a coroutine method of `AsyncEngine`, with the same signature."""

    async def call(self: AsyncEngine, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.run(functools.partial(method, self.engine, *args, **kwargs))

    call.__name__, call.__qualname__ = method.__name__, f"AsyncEngine.{method.__name__}"
    call.__doc__ = method.__doc__
    return call


class AsyncEngine:
    """The same constructor and methods as `Engine`, as coroutines.

    Construct it where blocking briefly is fine (at application startup: it may migrate the
    schema), then await its methods from request handlers. `engine` is the sync `Engine` it
    drives, for code that runs in threads of its own (a scheduler, `create_app`).
    """

    def __init__(self, *args: Any, max_threads: int = 8, **kwargs: Any) -> None:
        self.engine = Engine(*args, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="signoff")

    async def run(self, work: Callable[[], R]) -> R:
        """Run sync engine work in a worker thread; async actions it meets come back here."""
        loop = asyncio.get_running_loop()
        self.engine.use_loop(loop)
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, context.run, work)

    start = _awaitable(Engine.start)
    send = _awaitable(Engine.send)
    check_event = _awaitable(Engine.check_event)
    get = _awaitable(Engine.get)
    history = _awaitable(Engine.history)
    list = _awaitable(Engine.list)
    counts = _awaitable(Engine.counts)
    retry = _awaitable(Engine.retry)
    cancel = _awaitable(Engine.cancel)
    goto = _awaitable(Engine.goto)
    reassign = _awaitable(Engine.reassign)
    set_delegate = _awaitable(Engine.set_delegate)
    clear_delegate = _awaitable(Engine.clear_delegate)
    delegate_of = _awaitable(Engine.delegate_of)
    run_due = _awaitable(Engine.run_due)
    wake = _awaitable(Engine.wake)
    ping = _awaitable(Engine.ping)
    open_approvals = _awaitable(Engine.open_approvals)
    statement_counts = _awaitable(Engine.statement_counts)
    parked_on = _awaitable(Engine.parked_on)
    check_deployment = _awaitable(Engine.check_deployment)
    open_session = _awaitable(Engine.open_session)
    session_user = _awaitable(Engine.session_user)
    end_session = _awaitable(Engine.end_session)
    end_sessions = _awaitable(Engine.end_sessions)
    seen_before = _awaitable(Engine.seen_before)
    deliver_notices = _awaitable(Engine.deliver_notices)
    notices = _awaitable(Engine.notices)
    send_link = _awaitable(Engine.send_link)
    deliveries = _awaitable(Engine.deliveries)
    announcements = _awaitable(Engine.announcements)
    inbox = _awaitable(Engine.inbox)
    inbox_count = _awaitable(Engine.inbox_count)
    may_see = _awaitable(Engine.may_see)

    def remember_groups(self, user: str, groups: Iterable[str]) -> None:
        """`Engine.remember_groups`: memory only, nothing to wait for."""
        self.engine.remember_groups(user, groups)

    def register(self, workflow: type[Workflow]) -> None:
        """Register a workflow class (no I/O: its definition is checked in memory)."""
        self.engine.register(workflow)

    async def close(self) -> None:
        """Close the database pool and the worker threads."""
        await self.run(self.engine.close)
        self._pool.shutdown(wait=False)
