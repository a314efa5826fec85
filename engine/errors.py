"""Errors the engine raises. Each maps to one HTTP status in the web layer."""

from __future__ import annotations


class SignoffError(Exception):
    """Base of every error signoff raises on purpose."""

    status_code = 400


class DefinitionError(SignoffError):
    """A workflow definition is malformed (duplicate names, Break outside a For, ...)."""

    status_code = 422


class RunawayLoop(SignoffError):
    """A transition ran too many statements without blocking."""


class StatementMissing(SignoffError):
    """The statement an instance stands at no longer exists in the deployed definition."""

    status_code = 409


class InstanceNotFound(SignoffError):
    status_code = 404


class UnknownWorkflow(SignoffError):
    status_code = 404


class EventRejected(SignoffError):
    """A handler refused an event's payload. Raised by handlers; changes nothing."""

    status_code = 422


class NotAllowed(SignoffError):
    """The actor may not decide this wait."""

    status_code = 403


class Conflict(SignoffError):
    """The instance is not in a state that accepts the request (stale, already decided, ended)."""

    status_code = 409


class AlreadyDecided(Conflict):
    """Another event already ended the wait this one was meant for."""


class NotWaiting(Conflict):
    """No thread of the instance waits for the event."""


class SchemaOutdated(SignoffError):
    """The database is not at the schema this version of signoff needs; the message names the
    command that upgrades it (`signoff db upgrade`)."""


def brief(exc: BaseException) -> str:
    """An exception in one line: its type and message."""
    return f"{type(exc).__name__}: {exc}"
