"""Who sees which instance: the engine's one answer, for `get`, `list`, `history`, `counts`
and every surface that asks `Engine.may_see` before explaining a refusal.

The program (actor None), operators and viewers see everything. Anyone else sees what
`storage.visibility` says (started it, may decide or decided one of its waits, was asked by one
of its approvals); one instance asked for by id is also shown to the approvers its definition
names for a wait that has not begun yet: the request is on its way to them.
"""

from __future__ import annotations

from collections.abc import Mapping

from signoff.engine.core.authority import Authority
from signoff.engine.core.handlers import Approval
from signoff.engine.core.tree import walk
from signoff.engine.core.waits import Wait
from signoff.engine.core.workflow import Workflow
from signoff.engine.storage.store import Store
from signoff.engine.storage.visibility import can_see


class Sight:
    def __init__(
        self, store: Store, authority: Authority, workflows: Mapping[str, type[Workflow]]
    ) -> None:
        self.store = store
        self.authority = authority
        self.workflows = workflows  # the engine's registry, as it grows

    def viewer(self, actor: str | None) -> list[str] | None:
        """The identities a listing for `actor` must be visible to; None: everything."""
        if actor is None or self.authority.sees_all(actor):
            return None
        return sorted(self.authority.identities(actor))

    def sees(self, instance_id: str, actor: str | None) -> bool:
        """Whether `actor` sees the (existing) instance `instance_id`."""
        viewer = self.viewer(actor)
        if viewer is None:
            return True
        if viewer and can_see(self.store.db, instance_id, viewer):
            return True
        return self.named_approver(instance_id, actor)

    def named_approver(self, instance_id: str, actor: str | None) -> bool:
        """Whether the definition, built from the instance's data as it is now, names `actor`
        among the approvers of one of its waits (begun or not)."""
        row = self.store.load(instance_id)
        cls = self.workflows.get(row.workflow) if row is not None else None
        if row is None or cls is None or actor is None:
            return False
        try:
            definition = cls.model_validate_json(row.data).definition()
        except Exception:  # the workflow's own code: nothing it names can be relied on
            return False
        for statement in walk(definition):
            if not isinstance(statement, Wait):
                continue
            for case in statement.cases:
                handler = case.handler
                if isinstance(handler, Approval) and (
                    handler.approvers is None
                    or self.authority.matches(
                        actor, [*handler.approvers, *(handler.escalate_to or ())]
                    )
                ):
                    return True
        return False
