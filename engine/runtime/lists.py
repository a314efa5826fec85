"""Reading many instances: the lists and counts of instances (searched, narrowed, paged) and
the open approvals with the inbox, each as for the `actor` given: they see only the instances
they may see, and may decide only where the definition deployed now lets them."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from signoff.engine.core.authority import Authority
from signoff.engine.core.enums import Status
from signoff.engine.core.handlers import Handler, WaitInfo
from signoff.engine.core.outcome import outcome_of, outcome_of_state
from signoff.engine.core.stored import peek_state, read_data, read_state
from signoff.engine.core.workflow import Workflow, title_of, titled
from signoff.engine.errors import CorruptState, InvalidData
from signoff.engine.runtime.arguments import MAX_SEARCH, check_text
from signoff.engine.runtime.cases import OpenCases
from signoff.engine.runtime.reading import Reading
from signoff.engine.runtime.sight import Sight
from signoff.engine.runtime.unreadable import warn
from signoff.engine.runtime.viewing import refusal_for, shown_case, unreadable_status
from signoff.engine.storage import placement
from signoff.engine.storage.narrowing import ORDERS, Narrowing
from signoff.engine.storage.store import Store
from signoff.engine.views import Counts, InstanceSummary, waiting_on


class Lists:
    def __init__(
        self,
        store: Store,
        workflows: Mapping[str, type[Workflow]],
        authority: Authority,
        sight: Sight,
        cases: OpenCases,
        reading: Reading,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.authority = authority
        self.sight = sight
        self.cases = cases
        self.reading = reading
        self._now = now

    def list(
        self,
        status: str | None = None,
        workflow: str | type[Workflow] | None = None,
        limit: int = 50,
        *,
        search: str | None = None,
        before: tuple[datetime, str] | None = None,
        order: str = "recent",
        actor: str | None = None,
        decider: str | None = None,
        overdue: bool = False,
        started_from: datetime | None = None,
        started_before: datetime | None = None,
    ) -> builtins.list[InstanceSummary]:
        if search is not None and len(search) > MAX_SEARCH:
            raise InvalidData(f"a search is at most {MAX_SEARCH} characters")
        if order not in ORDERS:
            raise InvalidData(f"order is one of {', '.join(ORDERS)}, not {order!r}")
        check_text(search=search, status=status, workflow=workflow, actor=actor, decider=decider)
        if before is not None:
            check_text(cursor=before[1])
        if isinstance(workflow, type):
            workflow = workflow.registered_name()
        rows = self.store.page(
            status=status,
            workflow=workflow,
            search=search,
            limit=max(1, min(limit, 500)),
            before=before,
            order=order,
            viewer=self.sight.viewer(actor),
            narrow=self.narrowing(decider, overdue, started_from, started_before),
        )
        return [self.summary(r) for r in rows]

    def narrowing(
        self,
        decider: str | None,
        overdue: bool,
        started_from: datetime | None = None,
        started_before: datetime | None = None,
    ) -> Narrowing | None:
        if decider is None and not overdue and started_from is None and started_before is None:
            return None
        for name, moment in (("started_from", started_from), ("started_before", started_before)):
            if moment is not None and moment.tzinfo is None:
                raise InvalidData(f"{name} must be an aware datetime (with its time zone)")
        names = tuple(sorted(self.authority.identities(decider))) if decider is not None else None
        return Narrowing(names, self._now() if overdue else None, started_from, started_before)

    def summary(self, r: dict[str, Any]) -> InstanceSummary:
        data, state = r.pop("data"), r.pop("state")
        waiting = waiting_on(r.pop("waits", []))
        cls = self.workflows.get(r["workflow"])
        summary: dict[str, Any] = {}
        titles = [w.title for w in waiting if w.kind == "approval"]
        title = r["workflow"]
        try:
            if cls is not None and (cls.summary_fields or titled(cls)):
                values = read_data(r["id"], data)
                summary = cls.summarize(values)
                title = title_of(cls, values, titles, r["workflow"])
            else:
                title = title_of(None, None, titles, r["workflow"])
            if r["status"] in (Status.COMPLETED, Status.FAILED):  # only these need the state
                found = peek_state(r["id"], state)
                outcome, label = outcome_of_state(r["status"], r["error"], found)
            else:
                outcome, label = outcome_of(r["status"], r["error"])
        except CorruptState as exc:  # shown as failed, as `get` shows it
            warn(exc, r["workflow"])
            r["status"] = unreadable_status(r["status"])
            r["error"] = r["error"] if r["status"] == Status.CANCELLED else exc.problem
            outcome, label = outcome_of(r["status"], r["error"])
        return InstanceSummary(
            **r, summary=summary, outcome=outcome, outcome_label=label, title=title,
            waiting=waiting,
        )  # fmt: skip

    def counts(
        self,
        *,
        workflow: str | type[Workflow] | None = None,
        search: str | None = None,
        actor: str | None = None,
        decider: str | None = None,
        overdue: bool = False,
        started_from: datetime | None = None,
        started_before: datetime | None = None,
        at_most: int | None = None,
    ) -> Counts:
        if search is not None and len(search) > MAX_SEARCH:
            raise InvalidData(f"a search is at most {MAX_SEARCH} characters")
        if at_most is not None and (type(at_most) is not int or at_most < 1):
            raise InvalidData(f"at_most is a whole number of instances, 1 or more: {at_most!r}")
        check_text(search=search, workflow=workflow, actor=actor, decider=decider)
        if isinstance(workflow, type):
            workflow = workflow.registered_name()
        return self.store.counts(
            workflow or None,
            search or None,
            self.sight.viewer(actor),
            self.narrowing(decider, overdue, started_from, started_before),
            at_most if search else None,
        )

    def open_approvals(
        self,
        limit: int = 200,
        *,
        after: tuple[datetime, int] | None = None,
        instance_id: str | None = None,
        actor: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        rows = placement.open_approvals(self.store, limit, after=after, instance_id=instance_id)
        stored = placement.load_many(self.store, (r["instance_id"] for r in rows))
        cases: dict[str, dict[tuple[str, str], tuple[Handler, WaitInfo, dict[str, Any]]]] = {}
        broken: dict[str, str] = {}  # instance id -> why its state cannot be read
        for r in rows:
            row = stored.get(r["instance_id"])
            if row is not None and row.id not in cases:
                try:
                    cases[row.id] = self.reading.open_cases(row, read_state(row.id, row.state))
                except CorruptState as exc:
                    warn(exc, row.workflow)
                    cases[row.id], broken[row.id] = {}, exc.problem
            handler, wait, info = cases.get(r["instance_id"], {}).get(
                (r["thread"], r["event"]), (None, None, None)
            )
            r["required"], r["votes"], r["require_reason"] = 1, 0, True
            if info is not None:
                r["approvers"], r["title"] = info.get("deciders"), info.get("title")
                r["required"], r["votes"] = info.get("required", 1), len(info.get("votes", []))
                r["require_reason"] = bool(info.get("require_reason", True))
            refusal = broken.get(r["instance_id"]) or refusal_for(handler, wait, actor)
            r["may_decide"], r["refusal"] = refusal is None, refusal
        return rows

    def inbox(
        self,
        actor: str | None,
        *,
        workflow: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[dict[str, Any]]:
        check_text(search=search, workflow=workflow, actor=actor)
        if search is not None and len(search) > MAX_SEARCH:
            raise InvalidData(f"a search is at most {MAX_SEARCH} characters")
        names = None if actor is None else self.authority.identities(actor)
        rows = placement.inbox(
            self.store,
            names,
            workflow=workflow or None,
            search=search or None,
            limit=max(1, min(limit, 500)),
            offset=max(0, offset),
        )
        for r in rows:
            cls = self.workflows.get(r["workflow"])
            data, state, version = r.pop("data"), r.pop("state"), r.pop("version")
            r["summary"], r["text"], values = {}, None, None
            try:
                if cls is not None and (cls.summary_fields or titled(cls)):
                    values = read_data(r["instance_id"], data)
                    r["summary"] = cls.summarize(values)
                handler, wait = self.cases.of(r["instance_id"], version, cls, data, state).get(
                    (r["thread"], r["event"]), (None, None)
                )
            except CorruptState as exc:  # listed, but nobody may decide it
                warn(exc, r["workflow"])
                self.decorate(r, None, None, actor)
                r["may_decide"], r["refusal"] = False, exc.problem
                r["instance_title"] = title_of(None, None, [r["title"]], r["workflow"])
                continue
            self.decorate(r, handler, wait, actor)
            r["instance_title"] = title_of(cls, values, [r["title"]], r["workflow"])
        return rows

    def decorate(
        self, r: dict[str, Any], handler: Handler | None, wait: WaitInfo | None, actor: str | None
    ) -> None:
        r["required"], r["votes"], r["require_reason"] = 1, 0, True
        if handler is not None and wait is not None:
            info = shown_case(handler, wait)
            r["approvers"], r["title"] = info.get("deciders"), info.get("title")
            r["text"] = info.get("text")
            r["required"], r["votes"] = info.get("required", 1), len(info.get("votes", []))
            r["require_reason"] = bool(info.get("require_reason", True))
        r["needed"] = max(0, int(r["required"]) - int(r["votes"]))
        refusal = refusal_for(handler, wait, actor)
        r["may_decide"], r["refusal"] = refusal is None, refusal

    def inbox_count(
        self, actor: str | None, *, workflow: str | None = None, search: str | None = None
    ) -> int:
        check_text(search=search, workflow=workflow, actor=actor)
        if search is not None and len(search) > MAX_SEARCH:
            raise InvalidData(f"a search is at most {MAX_SEARCH} characters")
        names = None if actor is None else self.authority.identities(actor)
        return placement.inbox_count(
            self.store, names, workflow=workflow or None, search=search or None
        )
