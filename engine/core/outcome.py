"""How an instance ended, or stands, in one word a person reads at a glance.

A status says whether an instance needs anything (running, waiting, failed, completed,
cancelled); an outcome says what happened: an expense that was denied has *completed* (its
workflow returned), but its outcome is *denied*. Derived here, in one place, from what the
engine keeps anyway: the status, the error, the last waits decided (`InstanceState.decided`)
and where failed threads stopped. Pure: stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from signoff.engine.core.enums import Status, ThreadStatus

APPROVED = "approved"
DENIED = "denied"
TIMED_OUT = "timed out"
CANCELLED = "cancelled"
FAILED = "failed"
COMPLETED = "completed"
ERROR = "ended with an error"
OUTCOMES = (APPROVED, DENIED, TIMED_OUT, CANCELLED, FAILED, COMPLETED, ERROR)


def outcome_of(
    status: str,
    error: str | None,
    decided: Sequence[Mapping[str, Any]] = (),
    failed_steps: Sequence[str] = (),
) -> tuple[str, str]:
    """(outcome, label): the outcome is one of OUTCOMES for a finished or failed instance, else
    the status itself (running, waiting); the label is the words to show ("failed at 'fetch
    figures'", "denied by alice").

    `decided` are the waits decided so far, oldest first, as `InstanceState.decided` keeps them
    (dicts with approved, actor, via); `failed_steps` the statements failed threads stopped at.
    The last decision is what the instance ended on: denied if it was a denial, timed out if a
    timer decided it and the workflow then returned an error, approved if it was an approval
    and nothing failed after it.
    """
    if status == Status.FAILED:
        where = ", ".join(f"'{s}'" for s in failed_steps if s)
        return FAILED, f"failed at {where}" if where else "failed"
    if status == Status.CANCELLED:
        return CANCELLED, "cancelled"
    if status != Status.COMPLETED:
        return status, status
    last = decided[-1] if decided else None
    actor = (last or {}).get("actor")
    by = f" by {actor}" if actor else ""
    if last is not None and last.get("approved") is False:
        return DENIED, DENIED + by
    if last is not None and last.get("via") == "timer" and error:
        return TIMED_OUT, TIMED_OUT
    if error:
        return ERROR, ERROR
    if last is not None and last.get("approved") is True:
        return APPROVED, APPROVED + by
    return COMPLETED, COMPLETED


def outcome_of_state(status: str, error: str | None, state: Mapping[str, Any]) -> tuple[str, str]:
    """`outcome_of` read from a stored state (the JSON of `InstanceState`, as a dict)."""
    decided = state.get("decided") or []
    threads = state.get("threads") or {}
    failed = [
        str(t.get("at") or "")
        for t in (threads.values() if isinstance(threads, Mapping) else ())
        if isinstance(t, Mapping) and t.get("status") == ThreadStatus.FAILED
    ]
    decided = [d for d in decided if isinstance(d, Mapping)] if isinstance(decided, list) else []
    return outcome_of(status, error, decided, failed)
