"""Rows as the engine handles them, free of any database library."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Stored:
    """An instance row as the engine works with it."""

    id: str
    workflow: str
    status: str
    data: str
    state: str
    result: str | None
    error: str | None
    version: int
    due_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class WaitRecord:
    thread: str
    wait: str
    event: str
    kind: str
    began_at: datetime
    due_at: datetime | None
    approvers: list[str] | None
    title: str | None
    wait_key: str  # the waiting thread's `ThreadState.wait_key`


@dataclass(slots=True)
class Record:
    """A history entry not yet written."""

    at: datetime
    kind: str
    thread: str | None = None
    name: str | None = None
    actor: str | None = None
    via: str | None = None
    message: str | None = None
    detail: dict[str, Any] | None = None
    # not stored: numbers for the engine's metrics (seconds waited, a timer's lateness, ...)
    measures: dict[str, float] | None = None
    # `detail` as the JSON text stored, when its maker wrote it out (a step's, made at every
    # step: `step_detail_json`), so it is not encoded again
    detail_json: str | None = None


def step_detail_json(attempt: int, ms: float) -> str:
    """`json.dumps({"attempt": attempt, "ms": ms})` for a finite `ms`, written out: a step's
    history detail, made at every step, where the JSON encoder's setting up costs more than
    the encoding."""
    return f'{{"attempt": {attempt}, "ms": {ms!r}}}'
