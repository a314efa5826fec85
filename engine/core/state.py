"""An instance's execution state: plain data that round-trips through JSON.

The workflow's own data lives beside it (the Workflow model); this is where each thread stands,
what it waits for, and the clean-up still owed to handlers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from signoff.engine.core.enums import ThreadStatus
from signoff.engine.core.tree import Entry

SetupStatus = Literal["pending", "done", "failed"]
LIVE_THREAD = (
    ThreadStatus.RUNNING,
    ThreadStatus.WAITING,
    ThreadStatus.BLOCKED,
    ThreadStatus.RETRYING,
)


def wait_key(thread_id: str, wait_round: int) -> str:
    """The key of one opening of a wait: thread `thread_id` in its `wait_round`th wait."""
    return f"{thread_id}:{wait_round}"


class _Plain(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OpenCase(_Plain):
    """One case of the Wait a thread is blocked in, with its handler's bookkeeping."""

    event: str
    kind: str
    began_at: datetime
    stored: dict[str, Any] | None = None
    setup: SetupStatus = "pending"
    error: str | None = None
    attempts: int = 0
    retry_at: datetime | None = None  # next try of a failed setup
    due_at: datetime | None = None  # when the handler wants its timer (Timeout, reminders)
    info: dict[str, Any] = Field(default_factory=dict)  # what the handler shows (title, approvers)


class ThreadState(_Plain):
    id: str
    name: str
    root: str | None = None  # the Go statement whose body this thread runs; None for main
    status: ThreadStatus = ThreadStatus.RUNNING
    at: str | None = None
    entry: Entry = Entry.START
    event: str | None = None
    cases: list[OpenCase] = Field(default_factory=list)
    attempts: int = 0  # failed tries of the step at `at`
    retry_at: datetime | None = None
    error: str | None = None
    traceback: str | None = None
    wait_round: int = 0  # how many times this thread has begun a wait: names one opening of it

    @property
    def wait_key(self) -> str:
        """Identifies the wait the thread is in now; a form or button carries it so a second
        click, or one from an earlier round of a loop, cannot decide a later wait."""
        return wait_key(self.id, self.wait_round)

    @property
    def live(self) -> bool:
        return self.status in LIVE_THREAD


EndingHow = Literal["event", "cancelled", "moved", "retried", "finished"]


class Ending(_Plain):
    """How a wait ended, kept with each teardown so that every surface that announced the wait
    (a Slack message) can say so: the event that won and who sent it, or the operator's
    cancel, goto or retry, or the instance finishing while the thread still waited."""

    how: EndingHow
    event: str | None = None  # the case that won (how="event")
    kind: str | None = None  # its handler's kind: "approval", "timeout", ...
    actor: str | None = None
    via: str | None = None
    at: datetime
    approved: bool | None = None
    reason: str | None = None


class Teardown(_Plain):
    """A teardown owed to a handler whose wait ended; retried until it succeeds."""

    thread: str
    wait: str
    event: str
    kind: str
    handled: bool
    began_at: datetime
    stored: dict[str, Any] | None = None
    attempts: int = 0
    error: str | None = None
    retry_at: datetime | None = None
    ending: Ending | None = None


class Decided(_Plain):
    """Who ended a wait, kept so a late event can be told "already decided by X at T"."""

    thread: str
    wait: str
    events: list[str]
    event: str
    actor: str | None
    via: str | None
    at: datetime
    approved: bool | None = None
    key: str | None = None


class Pending(_Plain):
    """An event that arrived mid-transition, before any thread waited for it: kept and
    delivered as soon as a wait for it begins."""

    event: str
    payload: dict[str, Any]
    actor: str | None
    via: str
    thread: str | None
    at: datetime


class InstanceState(_Plain):
    started_by: str | None = None  # the actor who started the instance; None: the program
    threads: dict[str, ThreadState] = Field(default_factory=dict)
    teardowns: list[Teardown] = Field(default_factory=list)
    decided: list[Decided] = Field(default_factory=list)
    inbox: list[Pending] = Field(default_factory=list)
    # the fingerprint of the release whose process last committed the instance
    # (engine/core/releases.py); None in rows written before releases were recorded
    release: str | None = None

    def next_due(self) -> datetime | None:
        """The earliest moment something of this instance must be done without an event."""
        times: list[datetime] = []
        for thread in self.threads.values():
            if thread.status == ThreadStatus.RETRYING and thread.retry_at:
                times.append(thread.retry_at)
            if thread.status == ThreadStatus.WAITING:
                for case in thread.cases:
                    if case.setup == "failed" and case.retry_at:
                        times.append(case.retry_at)
                    elif case.setup == "done" and case.due_at:
                        times.append(case.due_at)
        times.extend(t.retry_at for t in self.teardowns if t.retry_at)
        return min(times) if times else None


# pydantic's encoder of the state itself: `model_dump_json` is a Python wrapper that passes on
# a dozen keyword arguments, which costs a third of encoding a state, at every commit
_ENCODE_STATE = InstanceState.__pydantic_serializer__.to_json


def state_json(state: InstanceState) -> str:
    """`state.model_dump_json()`."""
    return _ENCODE_STATE(state).decode()
