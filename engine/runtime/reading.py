"""Reading one instance: its view as the definition deployed now describes its waits, its
history, how it ended or stands, and who may decide its open approvals. Each answers as for the
`actor` given: an instance they may not see is not found, as one that does not exist."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.handlers import Approval, Handler, WaitInfo
from signoff.engine.core.outcome import outcome_of, outcome_of_state
from signoff.engine.core.records import Stored
from signoff.engine.core.state import InstanceState
from signoff.engine.core.stored import read_data, read_state
from signoff.engine.core.tree import Statement
from signoff.engine.core.working import Working
from signoff.engine.errors import CorruptState, InstanceNotFound
from signoff.engine.runtime.arguments import check_text
from signoff.engine.runtime.cases import OpenCases
from signoff.engine.runtime.loader import Loader
from signoff.engine.runtime.registry import Registry
from signoff.engine.runtime.sight import Sight
from signoff.engine.runtime.unreadable import warn
from signoff.engine.runtime.viewing import (
    instance_view,
    refusal_for,
    shown_case,
    unreadable_status,
    unreadable_view,
)
from signoff.engine.storage.store import Store
from signoff.engine.views import DecisionView, HistoryEntry, InstanceView, OutcomeView


class Reading:
    def __init__(
        self, store: Store, loader: Loader, registry: Registry, sight: Sight, cases: OpenCases
    ) -> None:
        self.store = store
        self.loader = loader
        self.registry = registry
        self.sight = sight
        self.cases = cases

    def get(self, instance_id: str, actor: str | None = None) -> InstanceView:
        check_text(actor=actor)
        row = self.loader.stored(instance_id)
        if not self.sight.sees(instance_id, actor):
            raise InstanceNotFound(f"no instance with id '{instance_id}'")
        try:
            state = read_state(row.id, row.state)
            infos = {key: info for key, (_, _, info) in self.open_cases(row, state).items()}
            return instance_view(
                row,
                state,
                infos,
                self.registry.workflows.get(row.workflow),
                self.registry.hidden(row.workflow),
            )
        except CorruptState as exc:
            warn(exc, row.workflow)
            return unreadable_view(row, exc.problem)

    def view_of(self, work: Working) -> InstanceView:
        """The view of a working copy that is the instance as just committed."""
        infos: dict[tuple[str, str], dict[str, Any]] = {}
        # an instance that waits nowhere (as one that ran to its end) has no open cases: no
        # lookup, and no entry in the table of open cases that others would want kept
        if any(t.status == ThreadStatus.WAITING and t.at for t in work.state.threads.values()):
            cases = self.open_cases(work.row, work.state, work.tree)
            infos = {key: info for key, (_, _, info) in cases.items()}
        return instance_view(
            work.row,
            work.state,
            infos,
            self.registry.workflows.get(work.row.workflow),
            self.registry.hidden(work.row.workflow),
        )

    def history(self, instance_id: str, actor: str | None = None) -> list[HistoryEntry]:
        check_text(instance_id=instance_id, actor=actor)
        if self.store.load(instance_id) is None or not self.sight.sees(instance_id, actor):
            raise InstanceNotFound(f"no instance with id '{instance_id}'")
        return self.store.history(instance_id)

    def may_see(self, instance_id: str, actor: str | None) -> bool:
        check_text(instance_id=instance_id, actor=actor)
        return self.store.load(instance_id) is not None and self.sight.sees(instance_id, actor)

    def outcome(
        self, instance_id: str, history: Sequence[HistoryEntry] | None = None
    ) -> OutcomeView:
        row = self.loader.stored(instance_id)
        try:
            read_data(row.id, row.data)
            state = read_state(row.id, row.state)
        except CorruptState as exc:
            warn(exc, row.workflow)
            outcome, label = outcome_of(unreadable_status(row.status), exc.problem)
            state = InstanceState()
        else:
            outcome, label = outcome_of_state(row.status, row.error, json.loads(row.state))
        if history is None:
            history = self.store.history(instance_id)
        decisions: list[DecisionView] = []
        votes: dict[tuple[str | None, str | None], list[str]] = {}
        cancel_reason = None
        for h in history:
            detail = h.detail or {}
            payload = detail.get("payload") if isinstance(detail.get("payload"), dict) else {}
            reason = payload.get("reason") if isinstance(payload, dict) else None
            reason = reason.strip() or None if isinstance(reason, str) else None
            where = (h.thread, h.name)
            if h.kind == HistoryKind.CANCELLED:
                cancel_reason = h.message
            elif h.kind == HistoryKind.VOTE:
                votes.setdefault(where, []).append(h.actor or "the program")
                decisions.append(
                    DecisionView(
                        h.thread, detail.get("wait"), h.name, "vote", h.actor, h.via, h.at, reason
                    )
                )
            elif h.kind == HistoryKind.DECISION:
                approved = (h.message or "").startswith("approved")
                decisions.append(
                    DecisionView(
                        h.thread,
                        detail.get("wait"),
                        h.name,
                        "approved" if approved else "denied",
                        h.actor,
                        h.via,
                        h.at,
                        reason,
                        [*votes.pop(where, []), *([h.actor or "the program"] if approved else [])],
                    )
                )
            elif h.kind == HistoryKind.EVENT and h.via == "timer":
                decisions.append(
                    DecisionView(
                        h.thread, detail.get("wait"), h.name, "timed out", None, "timer", h.at, None
                    )
                )
        failed = [t.at or "" for t in state.threads.values() if t.status == ThreadStatus.FAILED]
        return OutcomeView(outcome, label, failed, cancel_reason, decisions)

    def decision_refusals(
        self, instance_id: str, actor: str | None
    ) -> dict[tuple[str, str], str | None]:
        check_text(actor=actor)
        row = self.loader.stored(instance_id)
        try:  # only who may decide: not what each case shows (an Input's form schema costs)
            cases = self.cases.of(
                row.id, row.version, self.registry.workflows.get(row.workflow), row.data, row.state
            )
        except CorruptState:  # nothing is open to decide (`get` tells why)
            return {}
        return {
            key: refusal_for(handler, wait, actor)
            for key, (handler, wait) in cases.items()
            if isinstance(handler, Approval)
        }

    def deny_needs_reason(self, instance_id: str, thread: str, event: str) -> bool:
        row = self.store.load(instance_id)
        if row is None:
            return True
        try:
            cases = self.open_cases(row, read_state(row.id, row.state))
        except CorruptState:
            return True
        handler, _, _ = cases.get((thread, event), (None, None, None))
        return not isinstance(handler, Approval) or handler.require_reason

    def open_cases(
        self,
        row: Stored,
        state: InstanceState | str,
        build: Callable[[], Statement] | None = None,
    ) -> dict[tuple[str, str], tuple[Handler, WaitInfo, dict[str, Any]]]:
        """The open cases of waiting threads, by (thread, event), as the definition deployed
        now describes them: handler, wait info and what the dashboard shows (`describe()`,
        plus for an approval `deciders`, who may decide now, and its `votes`). `build` gives
        the definition when the caller has it built already."""
        cases = self.cases.of(
            row.id, row.version, self.registry.workflows.get(row.workflow), row.data, state, build
        )
        return {
            key: (handler, info, shown_case(handler, info))
            for key, (handler, info) in cases.items()
        }
