"""The words the engine uses for where things stand and what happened: instance and thread
statuses, the surfaces an action comes through, and the kinds of history entries.

They are `StrEnum`s: each member equals its text (`Status.FAILED == "failed"`), which is also
how it is stored and shown, so JSON, SQL and templates see plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """An instance's status. `failed` needs an operator; `completed` and `cancelled` are final
    (a workflow that returned an error has still completed)."""

    RUNNING = "running"
    WAITING = "waiting"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether nothing more can happen to an instance in this status."""
        return self in (Status.COMPLETED, Status.CANCELLED)


class ThreadStatus(StrEnum):
    """A thread's status: `blocked` waits in a `WaitFor`, `retrying` backs off before a step's
    next attempt, `stopped` was ended because the main thread returned."""

    RUNNING = "running"
    WAITING = "waiting"
    BLOCKED = "blocked"
    RETRYING = "retrying"
    FAILED = "failed"
    COMPLETED = "completed"
    STOPPED = "stopped"


class Via(StrEnum):
    """The surface an action came through, as the history records it."""

    WEB = "web"
    API = "api"
    SLACK = "slack"
    CLI = "cli"
    LINK = "link"  # an approval link
    TIMER = "timer"


class HistoryKind(StrEnum):
    """What a history entry records."""

    STARTED = "started"
    STEP = "step"
    STEP_FAILED = "step failed"
    WAITING = "waiting"
    EVENT = "event"
    DECISION = "decision"
    VOTE = "vote"
    EVENT_KEPT = "event kept"
    EVENT_REFUSED = "event refused"
    EVENT_DROPPED = "event dropped"
    THREAD_STARTED = "thread started"
    THREAD_COMPLETED = "thread completed"
    FAILED = "failed"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETRY = "retry"
    GOTO = "goto"
    MOVED = "moved"
    MERGED = "merged"
    REMINDER = "reminder"
    ESCALATED = "escalated"
    SETUP_FAILED = "setup failed"
    TEARDOWN_FAILED = "teardown failed"
    TEARDOWN_SKIPPED = "teardown skipped"
    TEARDOWN_ABANDONED = "teardown abandoned"
    TIMER_FAILED = "timer failed"
    TIMER_DISCARDED = "timer discarded"
    TIMER_DROPPED = "timer dropped"
    REASSIGNED = "reassigned"  # a part of an approval handed to someone else
    # the outbox (messages to people outside the dashboard): sent, failed (retried or given
    # up), dropped (its wait ended before it went), and someone's link asked for by an operator
    NOTICE_SENT = "notice sent"
    NOTICE_FAILED = "notice failed"
    NOTICE_DROPPED = "notice dropped"
    LINK_SENT = "link sent"
