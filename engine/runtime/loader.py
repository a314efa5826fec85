"""Reading an instance for a transition: its row, made a working copy of the registered
workflow, carried over a deployment's renames, and refused (`NewerRelease`) when only a newer
release reaches where it stands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from signoff.engine.core.records import Stored
from signoff.engine.core.renames import carry_over
from signoff.engine.core.workflow import Workflow
from signoff.engine.core.working import Working
from signoff.engine.errors import InstanceNotFound, UnknownWorkflow
from signoff.engine.runtime.arguments import check_text
from signoff.engine.runtime.releases import Releases
from signoff.engine.storage.store import Store


class Loader:
    def __init__(
        self,
        store: Store,
        workflows: Mapping[str, type[Workflow]],
        releases: Releases,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.releases = releases
        self._now = now

    def stored(self, instance_id: str) -> Stored:
        check_text(instance_id=instance_id)
        row = self.store.load(instance_id)
        if row is None:
            raise InstanceNotFound(f"no instance with id '{instance_id}'")
        return row

    def load(self, instance_id: str, *, leave: bool = True) -> Working:
        check_text(instance_id=instance_id)
        return self.working(instance_id, self.store.load(instance_id), leave=leave)

    def load_for_event(self, instance_id: str, recent: bool) -> tuple[Working, bool]:
        """The instance to apply an event to, and whether it was read from the database.
        With `recent`, the row as this process last committed it, when it is kept: the event
        that follows our own commit needs no read. Such a copy may be stale; its write would
        fail the version check, and a refusal is re-decided from the database (`send`).
        `instance_id` is checked already: `send` checks every argument before it loads."""
        if not recent:
            return self.working(instance_id, self.store.load(instance_id)), True
        row, read = self.store.load_recent(instance_id)
        return self.working(instance_id, row), read

    def still_current(self, work: Working) -> bool:
        """Whether `work`, begun from a kept copy, is the instance as committed now."""
        row = self.store.load(work.id)
        return row is not None and row.version == work.row.version

    def working(self, instance_id: str, row: Stored | None, *, leave: bool = True) -> Working:
        if row is None:
            raise InstanceNotFound(f"no instance with id '{instance_id}'")
        cls = self.workflows.get(row.workflow)
        if cls is None:
            raise UnknownWorkflow(
                f"instance {instance_id} runs workflow '{row.workflow}', "
                "which is not registered here"
            )
        work = Working.of(row, cls)
        now = self._now()
        carry_over(work, now)  # parked on a name a deployment renamed: move it now
        # standing where only a newer release reaches: left to it (or moved back, a rollback)
        if self.releases.place(work, now) is not None and leave:
            raise self.releases.refuse(work)
        return work
