"""Instances whose stored state or data cannot be read (`CorruptState`): told once per read,
and ended without being read.

Such an instance cannot be driven, but it must not hold the others up: the drain that claims
it fails it here, so it is not due again and again, and an operator can cancel it. Ending it
writes the row's status, error and version only: the state and data stay as they were stored,
for whoever restores them; its wait rows go (it leaves the inbox, its timers with them) and
nothing is due. A teardown it owed (a Slack message to update) cannot be known, so none runs.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from signoff.engine.core.records import Record, Stored
from signoff.engine.errors import CorruptState
from signoff.engine.runtime import logs
from signoff.engine.runtime.metrics import Metrics
from signoff.engine.storage.store import Store

log = logging.getLogger("signoff.engine")


def warn(exc: CorruptState, workflow: str | None = None, doing: str = "") -> None:
    """One warning for one read of an unreadable row (`doing`: what was skipped, if anything)."""
    log.warning(
        "%s%s",
        exc,
        f" ({doing})" if doing else "",
        extra={"instance_id": exc.instance_id, "workflow": workflow},
    )


class Unreadable:
    """Ends instances whose stored state cannot be read, in a version-checked write."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    def end(self, row: Stored, status: str, error: str, record: Record) -> bool:
        """Write `row` (as read, at its version) with `status` and `error`, and `record` in its
        history, without reading its state; False when another writer committed first."""
        ended = replace(
            row,
            status=status,
            error=error,
            version=row.version + 1,
            due_at=None,
            lease_owner=None,
            lease_until=None,
            updated_at=record.at,
        )
        if not self.store.save(ended, row.version, [], [record]):
            return False
        self.store.recent.drop(row.id)  # nothing to begin a transition from
        logs.committed(row.id, row.workflow, [record])
        self.metrics.committed(row.workflow, [record])
        return True
