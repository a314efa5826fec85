"""What `Engine.get`, `Engine.list` and `Engine.history` return: read-only snapshots.

Each view reads as attributes (`view.status`) or as a mapping (`view["status"]`), and
`to_dict()` gives its JSON form, the one the web API serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


class _Readable:
    def __getitem__(self, key: str) -> Any:
        if key.startswith("_") or key not in {f.name for f in fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: datetimes as ISO 8601 text, nested views as dicts."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


def _jsonable(value: Any) -> Any:
    if isinstance(value, _Readable):
        return value.to_dict()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class Counts(dict[str, int]):
    """What `Engine.counts` returns: instances per status, a plain mapping of status to count.
    `complete` is False when a search was counted only up to `at_most` matches and matched
    more: each count is then a lower bound ("at least"), and together they hold `at_most` + 1."""

    complete: bool

    def __init__(self, counts: dict[str, int] | None = None, complete: bool = True) -> None:
        super().__init__(counts or {})
        self.complete = complete

    def __repr__(self) -> str:
        return f"Counts({dict(self)!r}, complete={self.complete})"


@dataclass(frozen=True)
class WaitView(_Readable):
    """One open case of a wait: the event it waits for (`event`), its handler's `kind`, when it
    began and falls due, whether its setup is done (`setup`: pending, done, failed, with `error`
    and `attempts`), what the handler describes (`info`: title, approvers ...) and stored."""

    wait: str
    event: str
    kind: str
    began_at: datetime
    due_at: datetime | None
    setup: str
    error: str | None
    attempts: int
    info: dict[str, Any]
    stored: dict[str, Any] | None
    # what the case will do on its own, earliest first: [{"what": "reminder" | "escalation" |
    # "timeout" | "due", "at": datetime, ...}] (signoff.engine.core.handlers.upcoming)
    upcoming: list[dict[str, Any]] = field(default_factory=list)
    key: str = (
        ""  # this opening of the wait: pass it as send(..., wait_key=) to refuse stale clicks
    )


@dataclass(frozen=True)
class ThreadView(_Readable):
    """A thread: `main` or a `Go` thread. `step` is the statement it stands at; `status` is
    running, waiting, blocked (in a WaitFor), retrying (a step backing off until `retry_at`),
    failed (with `error`, `traceback`, `attempts`), completed or stopped."""

    id: str
    name: str
    status: str
    step: str | None
    waits: list[WaitView]
    error: str | None
    traceback: str | None
    attempts: int
    retry_at: datetime | None


@dataclass(frozen=True)
class InstanceView(_Readable):
    """What `Engine.get` returns: an instance's status (running, waiting, failed, completed,
    cancelled), its data, result or error, its threads and their waits, and `version`, which
    grows by one at every commit."""

    id: str
    workflow: str
    status: str
    data: dict[str, Any]
    result: Any
    error: str | None
    created_at: datetime
    updated_at: datetime
    threads: list[ThreadView]
    version: int
    due_at: datetime | None
    pending_teardowns: int
    # True when `send` kept the event for a wait that has not begun yet (never a decision): it
    # is delivered when that wait begins, or dropped with a history entry if the instance ends
    kept: bool = False
    # what people call it: the workflow's `instance_title()`, else the title of its open
    # approval, else the workflow's name (DESIGN, "The instance's name")
    title: str = ""
    # what the handler of the event `send` applied answered (an `Approval` callback's or an
    # `Input` apply's JSON return value); None from every other call
    reply: Any = None

    def thread(self, thread_id: str) -> ThreadView:
        """The thread with this id (KeyError if there is none)."""
        for thread in self.threads:
            if thread.id == thread_id:
                return thread
        raise KeyError(thread_id)

    @property
    def waits(self) -> list[WaitView]:
        """Every open case of every thread."""
        return [w for t in self.threads for w in t.waits]


@dataclass(frozen=True)
class WaitingOn(_Readable):
    """What a waiting instance waits for (`InstanceSummary.waiting`): an approval, a form or an
    event (`kind`), its `title`, who may answer (`approvers`; None: anyone), since when, and
    `deadline`: when a timeout of the same wait decides it (None: it may wait for ever)."""

    thread: str
    wait: str
    event: str
    kind: str
    title: str | None
    approvers: list[str] | None
    since: datetime
    deadline: datetime | None

    def overdue(self, now: datetime) -> bool:
        """Its deadline has passed and nothing decided it yet (no scheduler fired the timer)."""
        return self.deadline is not None and self.deadline <= now


def waiting_on(waits: list[dict[str, Any]]) -> list[WaitingOn]:
    """An instance's wait rows (instance_id's rows of signoff_waits, as dicts) as `WaitingOn`:
    every case but the timeouts, which give the others of their wait a deadline."""
    deadlines: dict[tuple[str, str], datetime] = {}
    for w in waits:
        if w["kind"] == "timeout" and w["due_at"] is not None:
            key = (w["thread"], w["wait"])
            deadlines[key] = min(w["due_at"], deadlines.get(key, w["due_at"]))
    return [
        WaitingOn(
            thread=w["thread"],
            wait=w["wait"],
            event=w["event"],
            kind=w["kind"],
            title=w["title"],
            approvers=w["approvers"],
            since=w["began_at"],
            deadline=deadlines.get((w["thread"], w["wait"])),
        )
        for w in waits
        if w["kind"] != "timeout"
    ]


@dataclass(frozen=True)
class InstanceSummary(_Readable):
    """A row of `Engine.list`: enough for a table, without the execution state. `summary` holds
    the data fields the workflow names in `summary_fields`; `outcome` says what happened
    (approved, denied, timed out, cancelled, failed, completed, ended with an error; running
    or waiting while it runs) and `outcome_label` says it in words ("failed at 'fetch'")."""

    id: str
    workflow: str
    status: str
    waiting_for: list[str]
    error: str | None
    created_at: datetime
    updated_at: datetime
    summary: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""
    outcome_label: str = ""
    title: str = ""  # what people call it, as `InstanceView.title`
    waiting: list[WaitingOn] = field(default_factory=list)  # what it waits for, oldest first


@dataclass(frozen=True)
class DecisionView(_Readable):
    """One decision in an instance's history: an approval, a denial, a vote of several, or a
    timer that decided a wait (`what`: approved, denied, vote, timed out, event), who (`actor`),
    through what (`via`), when, the reason given, and for a decision that needed several
    approvals the approvers whose votes led to it (`votes`)."""

    thread: str | None
    wait: str | None
    event: str | None
    what: str
    actor: str | None
    via: str | None
    at: datetime
    reason: str | None
    votes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutcomeView(_Readable):
    """What `Engine.outcome` returns: the instance's outcome (see `InstanceSummary`), in words,
    the step failed threads stopped at, the cancel reason, and every decision, oldest first."""

    outcome: str
    label: str
    failed_steps: list[str]
    cancel_reason: str | None
    decisions: list[DecisionView]


@dataclass(frozen=True)
class HistoryEntry(_Readable):
    """One line of an instance's audit trail: what happened (`kind`: started, step, step failed,
    waiting, event, decision, failed, retried, cancelled, moved, completed ...), when, on which
    thread and statement (`name`), who did it (`actor`, None for the program) and through what
    (`via`: web, api, slack, cli, timer), with a `message` and structured `detail`."""

    id: int
    instance_id: str
    at: datetime
    kind: str
    thread: str | None
    name: str | None
    actor: str | None
    via: str | None
    message: str | None
    detail: dict[str, Any] | None
