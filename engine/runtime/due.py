"""Due work: firing timers, step retries and owed setup or teardown, each instance claimed in
the database first (`Store.claim_due`), so that several processes at it share the work and never
fire one timer twice; and the listeners told when an instance gets something due."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from signoff.engine.core.enums import HistoryKind, Status
from signoff.engine.core.records import Record, Stored
from signoff.engine.core.renames import carry_over
from signoff.engine.core.workflow import Workflow
from signoff.engine.core.working import Working
from signoff.engine.errors import CorruptState
from signoff.engine.runtime.outbox import Outbox
from signoff.engine.runtime.releases import Releases
from signoff.engine.runtime.runner import Runner
from signoff.engine.runtime.unreadable import Unreadable, warn
from signoff.engine.storage.store import Store

log = logging.getLogger("signoff.engine")
# a drain that keeps losing the race for what is due leaves it to the others (`drain_due`)
LOST_CLAIMS = 3


class DueListeners:
    """Who is told `(instance id, due at)` whenever an instance gets something due
    (`Engine.on_due`: a scheduler sets its timer)."""

    def __init__(self) -> None:
        self._due_listeners: list[Callable[[str, datetime], None]] = []

    def add(self, listener: Callable[[str, datetime], None]) -> None:
        self._due_listeners.append(listener)

    def __call__(self, instance_id: str, due_at: datetime) -> None:
        for listener in self._due_listeners:
            listener(instance_id, due_at)


class DueWork:
    def __init__(
        self,
        store: Store,
        workflows: Mapping[str, type[Workflow]],
        runner: Runner,
        releases: Releases,
        outbox: Outbox,
        unreadable: Unreadable,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.runner = runner
        self.releases = releases
        self.outbox = outbox
        self.unreadable = unreadable
        self._now = now

    def run_due(self, now: datetime | None = None, *, limit: int = 100) -> int:
        now = now or self._now()
        self.releases.beat()
        woken = 0
        failure: Exception | None = None
        for _ in range(1000):  # batches; bounded, should something fall due again and again
            owner = self.runner.committer.tokens()
            claimed = self.store.claim_due(
                now, owner, now + self.runner.lease, limit=limit, workflows=list(self.workflows)
            )
            try:
                woken += self._wake_all(claimed, owner, now)
            except Exception as exc:  # the next batches are done all the same, then it is raised
                failure = failure or exc
            if len(claimed) < limit:
                break
        if failure is not None:
            raise failure
        self.outbox.deliver_due(now)
        return woken

    def _wake_all(self, claimed: list[Stored], owner: str, now: datetime) -> int:
        """Wake every instance one claim took; if one fails, the others are still done (they
        are ours until the lease runs out), then the failure is raised."""
        woken = 0
        failure: Exception | None = None
        for row in claimed:
            try:
                woken += self._wake_claimed(row, owner, now)
            except Exception as exc:
                log.warning(
                    "waking %s failed (%s: %s); it is due again when its lease runs out",
                    row.id,
                    type(exc).__name__,
                    exc,
                    extra={"instance_id": row.id, "workflow": row.workflow},
                )
                failure = failure or exc
        if failure is not None:
            raise failure
        return woken

    def drain_due(
        self, *, most: int = 100_000, stop: Callable[[], bool] | None = None
    ) -> tuple[int, bool]:
        woken = lost = 0
        workflows = list(self.workflows)
        self.releases.beat()
        for _ in range(most):
            if stop is not None and stop():
                break
            now = self._now()
            owner = self.runner.committer.tokens()
            claimed = self.store.claim_due(
                now, owner, now + self.runner.lease, limit=1, workflows=workflows
            )
            if claimed:
                lost = 0
                woken += self._wake_all(claimed, owner, now)
                continue
            if not self.store.any_due(now, workflows):
                return woken, True
            # the claim lost a race for the row it picked: try again, a few times
            lost += 1
            if lost >= LOST_CLAIMS:
                break
        return woken, False

    def wake(self, instance_id: str, now: datetime | None = None) -> bool:
        now = now or self._now()
        owner = self.runner.committer.tokens()
        claimed = self.store.claim_due(
            now,
            owner,
            now + self.runner.lease,
            limit=1,
            instance_id=instance_id,
            workflows=list(self.workflows),
        )
        return self._wake_all(claimed, owner, now) > 0

    def _wake_claimed(self, row: Stored, owner: str, now: datetime) -> bool:
        """Do what is due for `row`, just claimed under `owner` (the claim returned it as it
        now stands, so there is nothing to read again)."""
        try:
            work = Working.of(row, self.workflows[row.workflow])
        except CorruptState as exc:  # it cannot be driven: failed, so it is not due again
            warn(exc, row.workflow, "failing it")
            record = Record(now, HistoryKind.FAILED, message=exc.problem)
            self.unreadable.end(row, Status.FAILED, exc.problem, record)
            return False
        carry_over(work, now)
        if self.releases.place(work, now) is not None:  # a newer release fires it
            self.releases.give_back(work, owner, now)
            return False
        return self.runner.wake(work, now, owner)
