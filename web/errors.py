"""How the engine's errors read over HTTP: one status per kind of refusal."""

from __future__ import annotations

import math

from signoff.engine import (
    Busy,
    Conflict,
    CorruptState,
    DefinitionError,
    EventRejected,
    InstanceNotFound,
    InvalidData,
    NotAllowed,
    NotReachable,
    SignoffError,
    StatementMissing,
    StorageError,
    Unavailable,
    UnknownWorkflow,
)

STATUS_OF: dict[type[SignoffError], int] = {
    InstanceNotFound: 404,
    UnknownWorkflow: 404,
    NotAllowed: 403,
    NotReachable: 422,  # no mailer or Slack, or no address for that person
    Conflict: 409,  # stale, already decided, not waiting, ended
    StatementMissing: 409,
    CorruptState: 409,  # its stored state cannot be read: cancel it, or restore its row
    EventRejected: 422,
    InvalidData: 422,
    DefinitionError: 422,
    Busy: 503,  # over its budget: try again later, or ask for less
    StorageError: 503,  # the database refused (disk full, read-only, unreachable)
    Unavailable: 503,  # a newer release handles the instance (rolling deploy): try again soon
}


def retry_after(exc: SignoffError) -> str:
    """The Retry-After of a 503: what the error asks for (whole seconds), else one second."""
    wait = getattr(exc, "retry_after", None)
    return str(max(1, math.ceil(wait))) if isinstance(wait, int | float) and wait > 0 else "1"


def status_for(exc: SignoffError) -> int:
    """The HTTP status for an engine error: its own class's, else its nearest ancestor's, else
    400 (the request asked for something the engine refuses)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400
