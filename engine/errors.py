"""Every error the engine raises on purpose, rooted in `SignoffError`. They say what went wrong
in plain words and carry no transport details: the web layer maps them to HTTP statuses."""

from __future__ import annotations


class SignoffError(Exception):
    """Base of every error signoff raises on purpose."""


class DefinitionError(SignoffError):
    """A workflow definition is malformed (duplicate names, Break outside a For, ...)."""


class RunawayLoop(SignoffError):
    """A transition ran too many statements without blocking."""


class StatementMissing(SignoffError):
    """The statement an instance stands at no longer exists in the deployed definition."""


class InstanceNotFound(SignoffError):
    """No instance has the id asked for."""


class UnknownWorkflow(SignoffError):
    """No workflow is registered under the name asked for."""


class EventRejected(SignoffError):
    """A handler refused an event's payload. Raised by handlers; changes nothing."""


class InvalidData(SignoffError):
    """Data or an id given to `start` that the workflow cannot take."""


class NotAllowed(SignoffError):
    """The actor may not do this: decide a wait, start a workflow, or operate on an instance."""


class NotReachable(SignoffError):
    """A message cannot be sent to that person: no mailer or Slack, or no address for them."""


class Conflict(SignoffError):
    """The instance is not in a state that accepts the request (stale, already decided, ended)."""


class AlreadyDecided(Conflict):
    """Another event already ended the wait this one was meant for."""


class NotWaiting(Conflict):
    """No thread of the instance waits for the event."""


class Busy(SignoffError):
    """Work refused or stopped because it would cost more than its budget (a search that read
    for too long); trying again later, or asking for less, may succeed."""


class Unavailable(SignoffError):
    """A service a handler calls (Slack) failed or asked us to slow down. The setup, teardown or
    timer that raised it is tried again later, after `retry_after` seconds if the service said
    so (Slack's `Retry-After`), else after the usual backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NewerRelease(Unavailable):
    """A newer release of the workflow handles this instance: it stands where the code of this
    process does not reach (a rolling deploy is under way, or this code was rolled back). Nothing
    was changed; the same request succeeds on a process that runs the newer release, so trying
    again in a moment (`retry_after` seconds) is the answer."""

    def __init__(self, workflow: str, retry_after: float = 2.0) -> None:
        super().__init__(
            f"a newer release of {workflow} handles this instance; try again in a moment",
            retry_after=retry_after,
        )
        self.workflow = workflow


class CorruptState(SignoffError):
    """What the database holds for an instance cannot be read: its stored state (or data) is
    not what signoff wrote (a hand edit, a bad restore). Raised where that instance's state is
    needed (send, retry, goto, check_event); nothing else is harmed, and an operator can still
    cancel it. `problem` is the sentence shown as the instance's error: "stored state
    unreadable: <reason>" (or "stored data unreadable: ...")."""

    def __init__(self, instance_id: str, problem: str) -> None:
        super().__init__(f"instance {instance_id}: {problem}; cancel it, or restore its row")
        self.instance_id = instance_id
        self.problem = problem


class DataNotStorable(SignoffError):
    """Workflow data that cannot be stored as JSON."""


class SchemaOutdated(SignoffError):
    """The database is not at the schema this version of signoff needs; the message names the
    command that upgrades it (`signoff db upgrade`)."""


class StorageError(SignoffError):
    """The database refused: its disk is full, its file is read-only or cannot be opened, its
    server cannot be reached. The message says what happened and whether the change asked for
    was committed before the refusal (`committed`): "the event 'approval' was committed; the
    database then refused: disk full", or "nothing was committed: the database refused: the
    database file /srv/signoff.db is read-only". `reason` is the refusal alone."""

    def __init__(self, message: str, *, committed: bool = False, reason: str = "") -> None:
        super().__init__(message)
        self.committed = committed
        self.reason = reason or message


class StepTimedOut(SignoffError):
    """A step ran past its `timeout`: the attempt counts as failed under the step's retry
    policy (an async step is cancelled; a sync one cannot be, and its late result is
    discarded)."""


def brief(exc: BaseException) -> str:
    """An exception in one line: its type and message."""
    return f"{type(exc).__name__}: {exc}"


class Denied(SignoffError):
    """A gated call (`signoff.engine.agents.gate`) was denied, or its request cancelled: the
    function did not run. `reason` is the approver's, `actor` who denied it."""

    def __init__(
        self, reason: str, *, actor: str | None = None, instance_id: str | None = None
    ) -> None:
        super().__init__(f"denied by {actor}: {reason}" if actor else f"denied: {reason}")
        self.reason, self.actor, self.instance_id = reason, actor, instance_id


class TimedOut(SignoffError):
    """A gated call's request reached its deadline undecided: the function did not run."""

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id


class ToolFailed(SignoffError):
    """A gated call was approved, but its function kept failing (its step's retry policy is
    spent): the error it raised, as text, from whichever process ran it."""

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id
