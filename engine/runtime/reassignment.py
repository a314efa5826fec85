"""Handing a part of an approval to someone else: one open approval at a time (`reassign`: an
approver their own part, an operator anyone's), or every approval that begins while someone is
away (delegations, kept in the database for every process)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from signoff.engine.core.authority import check_actor, checked_reason
from signoff.engine.core.working import Working
from signoff.engine.errors import InvalidData
from signoff.engine.runtime.arguments import check_text, checked_delegates
from signoff.engine.runtime.due import DueWork
from signoff.engine.runtime.reading import Reading
from signoff.engine.runtime.repairs import Repairs
from signoff.engine.runtime.runner import Runner
from signoff.engine.storage.delegations import Delegate, Delegations
from signoff.engine.views import InstanceView


class Reassignment:
    def __init__(
        self,
        repairs: Repairs,
        reading: Reading,
        due: DueWork,
        runner: Runner,
        delegations: Delegations,
        now: Callable[[], datetime],
    ) -> None:
        self.repairs = repairs
        self.reading = reading
        self.due = due
        self.runner = runner
        self.delegations = delegations
        self._now = now

    def reassign(
        self,
        instance_id: str,
        to: str,
        actor: str | None = None,
        reason: str | None = None,
        thread: str | None = None,
        event: str | None = None,
        *,
        of: str | None = None,
        via: str = "api",
        wait_key: str | None = None,
    ) -> InstanceView:
        check_text(
            instance_id=instance_id,
            to=to,
            actor=actor,
            reason=reason,
            thread=thread,
            event=event,
            via=via,
            wait_key=wait_key,
        )
        giver = of if of is not None else actor
        if giver is None:
            raise InvalidData("say whose part to hand over: of=NAME")
        check_actor(giver)
        given = checked_reason(True, reason, required=False)

        def change(work: Working, now: datetime) -> None:
            self.runner.handovers.reassign(
                work,
                now,
                giver=giver,
                to=to,
                actor=actor,
                reason=given,
                via=via,
                thread=thread,
                event=event,
                wait_key=wait_key,
            )

        self.repairs.operate(instance_id, change)
        self.due.wake(instance_id)  # tell the receiver now; if that fails, run_due tries again
        return self.reading.get(instance_id)

    def set_delegate(self, user: str, to: str, until: datetime) -> None:
        check_text(user=user, to=to)
        check_actor(to)
        now = self._now()
        checked_delegates({user: (to, until)}, now)
        self.delegations.set(user, to, until, now)

    def clear_delegate(self, user: str) -> None:
        check_text(user=user)
        self.delegations.clear(user)

    def delegate_of(self, user: str) -> Delegate | None:
        check_text(user=user)
        return self.delegations.of(user, self._now())
