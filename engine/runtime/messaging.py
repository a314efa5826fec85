"""The messages an instance sends people, through the outbox: sending what is due, what was
queued and how it fared, the Slack messages that announced a wait, and an approver's own link
sent at an operator's request."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from signoff.engine.core.authority import Authority, name_problem
from signoff.engine.core.handlers import Approval
from signoff.engine.core.outbound import LinkMaker
from signoff.engine.core.workflow import Workflow
from signoff.engine.errors import InstanceNotFound, InvalidData, NotAllowed, NotWaiting
from signoff.engine.runtime.arguments import check_text
from signoff.engine.runtime.cases import OpenCases
from signoff.engine.runtime.loader import Loader
from signoff.engine.runtime.outbox import Outbox, latest_deliveries, link_for
from signoff.engine.runtime.sight import Sight
from signoff.engine.storage.store import Store


class Messaging:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        loader: Loader,
        workflows: Mapping[str, type[Workflow]],
        authority: Authority,
        sight: Sight,
        cases: OpenCases,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.loader = loader
        self.workflows = workflows
        self.authority = authority
        self.sight = sight
        self.cases = cases
        self._now = now

    def deliver_notices(self, now: datetime | None = None) -> int:
        return self.outbox.deliver_due(now or self._now())

    def notices(self, instance_id: str) -> list[dict[str, Any]]:
        return self.outbox.table.of_instance(instance_id)

    def deliveries(self, instance_id: str, actor: str | None = None) -> list[dict[str, Any]]:
        check_text(instance_id=instance_id, actor=actor)
        if self.store.load(instance_id) is None or not self.sight.sees(instance_id, actor):
            raise InstanceNotFound(f"no instance with id '{instance_id}'")
        return latest_deliveries(
            self.outbox.table.of_instance(instance_id),
            self._now(),
            addresses=actor is None or self.authority.is_operator(actor),
        )

    def announcements(self, instance_id: str, wait_key: str) -> list[dict[str, str]]:
        return [
            json.loads(row["result"])
            for row in self.outbox.table.of_instance(instance_id)
            if row["what"] == "approval"
            and row["channel"] == "slack"
            and row["status"] == "sent"
            and row["wait_key"] == wait_key
            and row["result"]
        ]

    def send_link(
        self,
        instance_id: str,
        person: str,
        *,
        actor: str | None,
        event: str | None = None,
        thread: str | None = None,
        links: LinkMaker | None = None,
    ) -> str:
        check_text(actor=actor, person=person)
        self.authority.require_operator(actor, "send someone their approval link")
        problem = name_problem(person, "the person the link is for")
        if problem:
            raise InvalidData(problem)
        row = self.loader.stored(instance_id)
        cases = self.cases.of(
            row.id, row.version, self.workflows.get(row.workflow), row.data, row.state
        )
        found = [
            (key, handler, info)
            for key, (handler, info) in cases.items()
            if isinstance(handler, Approval)
            and (thread is None or key[0] == thread)
            and (event is None or key[1] == event)
        ]
        if not found:
            raise NotWaiting(f"instance {instance_id} waits for no such approval")
        _, handler, info = found[0]
        info = replace(info, moment=self._now())
        reach = info.services.reach
        if links is not None and reach is not None and reach.link_maker is None:
            reach = replace(reach, link_maker=links)
            info = replace(info, services=replace(info.services, reach=reach))
        refusal = handler.refusal(info, person)
        if refusal:
            raise NotAllowed(refusal)
        return link_for(self.outbox, handler, info, person, actor, self._now())
