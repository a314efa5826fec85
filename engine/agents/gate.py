"""`gate`: each call of a function becomes a durable request for a person's approval (an instance
of the built-in `ToolCall` workflow); the call returns the function's result once approved and
run, raises `Denied` or `TimedOut` otherwise.

Waiting: sync code blocks its thread, reading the instance with a growing pause (at most `poll`
seconds). Async code awaits a future; one watcher task per event loop and engine reads every
pending request's status in one go, on one worker thread at a time, so a thousand pending calls
cost a thousand futures, not a thousand threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
import weakref
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast

from signoff.engine.agents.arguments import Arguments
from signoff.engine.agents.toolcall import (
    APPROVED,
    DENIED,
    GatedFunction,
    ToolCall,
    remember,
    request_data,
)
from signoff.engine.async_engine import AsyncEngine
from signoff.engine.core.authority import name_problem
from signoff.engine.core.steps import Retry
from signoff.engine.engine import Engine
from signoff.engine.errors import (
    Conflict,
    DefinitionError,
    Denied,
    InstanceNotFound,
    InvalidData,
    TimedOut,
    ToolFailed,
)
from signoff.engine.views import InstanceView

F = TypeVar("F", bound=Callable[..., Any])
FINAL = frozenset({"completed", "failed", "cancelled"})
FIRST_POLL = 0.02  # seconds; the pause doubles (async) or grows by half (sync) up to `poll`
MAX_CALL_ID = 500


def gate(
    engine: Engine | AsyncEngine,
    approvers: Sequence[str] | None = None,
    timeout: timedelta | float | None = None,
    editable: bool = True,
    title: str | None = None,
    redact: Collection[str] = (),
    *,
    required: int = 1,
    allow_self: bool = True,
    escalate_after: timedelta | None = None,
    escalate_to: Sequence[str] | None = None,
    remind_every: timedelta | None = None,
    slack_channel: str | None = None,
    retry: Retry | None = None,
    poll: float = 1.0,
) -> Callable[[F], F]:
    """Gate a function (sync or async) on a person's approval.

    Each call starts a `ToolCall` instance whose approval shows the function and its arguments
    (`title` replaces the one-line call shown as its title); `approvers`, `required`,
    `allow_self`, `escalate_*`, `remind_every` and `slack_channel` are `Approval`'s. Approved,
    the function runs as the instance's step "run" (once; `retry` is its policy) and the call
    returns its result; denied, it raises `Denied`; undecided `timeout` after the call,
    `TimedOut` (timers fire when a scheduler runs: the dashboard's, `signoff worker`'s or your
    own `Scheduler`); failing after its retries, `ToolFailed`.

    `editable`: the approver may change the arguments (checked against the signature).
    `redact`: argument names whose values are replaced by "[redacted]" wherever people see the
    call (its title and text, the instance's data, the history, Slack, email) and that may not
    be edited; their real values are stored in the instance's hidden data (the database), for
    whichever process runs the step.

    The wrapper takes one extra keyword, `call_id=` (an agent framework's tool-call id): the
    request for that id is made once, and a call with the same id attaches to it, waiting for it
    or returning its stored outcome, so a retried or restarted agent neither asks twice nor runs
    the function twice. The same id with other arguments raises `InvalidData`.

    The function is registered in this process by its qualified name when this decorator runs:
    every process that may run the step (yours, a dashboard that decides, `signoff worker`)
    must import the module that defines it.
    """
    sync_engine = engine.engine if isinstance(engine, AsyncEngine) else engine
    if not isinstance(sync_engine, Engine):
        raise TypeError("gate(engine, ...) takes an Engine or an AsyncEngine")
    registered = sync_engine.workflows.get(ToolCall.registered_name())
    if registered is None:
        sync_engine.register(ToolCall)
    elif registered is not ToolCall:
        raise DefinitionError("another workflow is registered as 'ToolCall'; gate needs that name")
    if isinstance(redact, str):
        raise TypeError('redact is a list of argument names, e.g. redact=["api_key"]')
    if isinstance(approvers, str):
        raise TypeError('approvers is a list, e.g. approvers=["alice", "group:finance"]')
    for name in [*(approvers or []), *(escalate_to or [])]:
        if name_problem(name.removeprefix("group:")):
            raise InvalidData(f"gate: {name!r} is not an approver's name")
    timeout = timedelta(seconds=timeout) if isinstance(timeout, int | float) else timeout
    if timeout is not None and timeout <= timedelta(0):
        raise ValueError("gate(timeout=...) must be positive, or None to wait until decided")
    retry = retry or Retry()
    options = {
        "approvers": list(approvers) if approvers is not None else None,
        "required": required,
        "allow_self": allow_self,
        "escalate_to": list(escalate_to) if escalate_to is not None else None,
        "escalate_after_seconds": escalate_after.total_seconds() if escalate_after else None,
        "remind_every_seconds": remind_every.total_seconds() if remind_every else None,
        "slack_channel": slack_channel,
        "timeout_seconds": timeout.total_seconds() if timeout is not None else None,
        "editable": editable,
        "attempts": retry.attempts,
        "backoff_seconds": retry.backoff.total_seconds(),
    }

    def decorate(function: F) -> F:
        gated = register(function)
        missing = sorted(set(redact) - set(gated.arguments.names))
        if missing:
            raise TypeError(f"gate: {gated.name} has no argument(s) {', '.join(missing)} to redact")
        door = Gate(engine, sync_engine, gated, title, frozenset(redact), options, poll)
        wrapper: Callable[..., Any]
        if gated.is_async:

            @functools.wraps(function)
            async def wrapper(*args: Any, call_id: str | None = None, **kwargs: Any) -> Any:
                return await door.call_async(args, kwargs, call_id)

        else:

            @functools.wraps(function)
            def wrapper(*args: Any, call_id: str | None = None, **kwargs: Any) -> Any:
                return door.call(args, kwargs, call_id)

        wrapper.signoff_gate = door  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


def register(function: Callable[..., Any]) -> GatedFunction:
    """Make `function` known in this process, by its qualified name, as the function a
    `ToolCall` step may run: what `gate` does first. A module that gates with an engine made
    later (or only in some processes) calls it at import time, so every process that imports
    the module can run the approved calls."""
    name = f"{function.__module__}:{function.__qualname__}"
    gated = GatedFunction(name, function, Arguments(function, name), function.__name__)
    remember(gated)
    return gated


class Gate:
    """What a gated function's wrapper does: make or find the request, wait, give the outcome."""

    def __init__(
        self,
        given: Engine | AsyncEngine,
        engine: Engine,
        gated: GatedFunction,
        title: str | None,
        redact: frozenset[str],
        options: dict[str, Any],
        poll: float,
    ) -> None:
        self.given, self.engine, self.gated = given, engine, gated
        self.title, self.redact, self.options, self.poll = title, redact, options, poll

    def instance_id(self, call_id: str) -> str:
        """The id of the request made for `call_id` (the same in every process)."""
        digest = hashlib.sha256(f"{self.gated.name}\0{call_id}".encode()).hexdigest()
        return f"call-{digest[:40]}"

    # --- making or finding the request -----------------------------------------------------

    def request(self, args: Sequence[Any], kwargs: dict[str, Any], call_id: str | None) -> str:
        """Start the request for this call, or find the one made for `call_id`; its id.
        Everything is checked before anything is stored."""
        if call_id is not None and (
            not isinstance(call_id, str) or not call_id or len(call_id) > MAX_CALL_ID
        ):
            raise InvalidData(f"call_id must be a text of 1 to {MAX_CALL_ID} characters")
        try:
            values = self.gated.arguments.bind(args, kwargs)
        except TypeError as exc:
            raise InvalidData(f"{self.gated.label}: {exc}") from None
        try:
            proposed = self.gated.arguments.as_json(values)
        except ValueError as exc:
            raise InvalidData(str(exc)) from None
        sealed = {k: v for k, v in proposed.items() if k in self.redact}
        data = request_data(
            self.gated, proposed, sealed, title=self.title, call_id=call_id, options=self.options
        )
        if call_id is None:
            return self.engine.start(ToolCall, data)
        iid = self.instance_id(call_id)
        if self.engine.store.load(iid) is None:
            try:
                return self.engine.start(ToolCall, data, id=iid)
            except Conflict:
                pass  # made meanwhile by another attempt of the same call: attach to it
        self._attachable(iid, call_id, data)
        return iid

    def _attachable(self, iid: str, call_id: str, data: dict[str, Any]) -> None:
        row = self.engine.store.load(iid)
        if row is None:
            raise InstanceNotFound(f"the request for call_id {call_id!r} has disappeared")
        stored = json.loads(row.data) if row.workflow == ToolCall.registered_name() else {}
        if stored.get("function") != data["function"]:
            raise InvalidData(f"call_id {call_id!r} names another request than a ToolCall")
        differ = sorted(
            name
            for name in {*stored.get("arguments", {}), *data["arguments"], *data["sealed"]}
            if stored.get("arguments", {}).get(name) != data["arguments"].get(name)
            or stored.get("sealed", {}).get(name) != data["sealed"].get(name)
        )
        if differ:
            raise InvalidData(
                f"call_id {call_id!r} was already used to call {self.gated.label} with other "
                f"arguments (they differ in: {', '.join(differ)}); a tool-call id names one "
                f"call: give this call a new id (request {iid})"
            )

    # --- the outcome -----------------------------------------------------------------------------

    def outcome(self, view: InstanceView) -> Any:
        """The function's result, or the error that says why there is none."""
        data = view.data
        if view.status == "completed":
            if data.get("outcome") == APPROVED:
                return view.result
            if data.get("outcome") == DENIED:
                raise Denied(
                    str(data.get("reason") or ""),
                    actor=data.get("decided_by"),
                    instance_id=view.id,
                )
            raise TimedOut(view.error or "timed out", instance_id=view.id)
        if view.status == "cancelled":
            raise Denied(view.error or "the request was cancelled", instance_id=view.id)
        error = view.error or next((t.error for t in view.threads if t.error), None)
        raise ToolFailed(f"{self.gated.label} failed: {error}", instance_id=view.id)

    # --- waiting: a thread, or a future -----------------------------------------------------------

    def call(self, args: Sequence[Any], kwargs: dict[str, Any], call_id: str | None) -> Any:
        iid = self.request(args, kwargs, call_id)
        pause = FIRST_POLL
        while True:
            view = self.engine.get(iid)
            if view.status in FINAL:
                return self.outcome(view)
            time.sleep(pause)
            pause = min(pause * 1.5, self.poll)

    async def call_async(
        self, args: Sequence[Any], kwargs: dict[str, Any], call_id: str | None
    ) -> Any:
        iid = await self._off_loop(self.request, args, kwargs, call_id)
        view = await self._off_loop(self.engine.get, iid)
        if view.status not in FINAL:
            await _watcher(self.engine, self.poll).until_final(iid)
            view = await self._off_loop(self.engine.get, iid)
        return self.outcome(view)

    async def _off_loop(self, work: Callable[..., Any], *args: Any) -> Any:
        if isinstance(self.given, AsyncEngine):  # its pool; async steps come back to this loop
            return await self.given.run(functools.partial(work, *args))
        self.engine.use_loop(asyncio.get_running_loop())
        return await asyncio.get_running_loop().run_in_executor(None, work, *args)


class _Watcher:
    """Watches the pending requests of one engine for one event loop: one task, one query
    round at a time on a worker thread, each waiter a future."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, poll: float) -> None:
        self.engine, self.loop, self.poll = engine, loop, poll
        self.waiting: dict[str, list[asyncio.Future[None]]] = {}
        self.nudge = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def until_final(self, iid: str) -> None:
        future: asyncio.Future[None] = self.loop.create_future()
        self.waiting.setdefault(iid, []).append(future)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._watch())
        self.nudge.set()
        await future

    async def _watch(self) -> None:
        pause = FIRST_POLL
        while True:
            for iid, futures in list(self.waiting.items()):
                futures[:] = [f for f in futures if not f.done()]  # callers that gave up
                if not futures:
                    del self.waiting[iid]
            if not self.waiting:
                return
            self.nudge.clear()
            try:
                final = await self.loop.run_in_executor(None, self._final, list(self.waiting))
            except Exception as exc:  # the database failing: every waiter hears of it
                for futures in self.waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                self.waiting.clear()
                return
            for iid in final:
                for future in self.waiting.pop(iid, []):
                    if not future.done():
                        future.set_result(None)
            pause = FIRST_POLL if final else min(pause * 2, self.poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.nudge.wait(), pause)

    def _final(self, ids: list[str]) -> list[str]:
        done = []
        for iid in ids:
            row = self.engine.store.load(iid)
            if row is None or row.status in FINAL:
                done.append(iid)
        return done


_WATCHERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[Engine, _Watcher]
] = weakref.WeakKeyDictionary()


def _watcher(engine: Engine, poll: float) -> _Watcher:
    loop = asyncio.get_running_loop()
    per_engine = _WATCHERS.setdefault(loop, weakref.WeakKeyDictionary())
    found = per_engine.get(engine)
    if found is None:
        found = per_engine[engine] = _Watcher(engine, loop, poll)
    return found
