"""Handing over a part of an open approval: `Engine.reassign` (someone hands it on) and
delegations (an approver away hands on the part of every wait that begins meanwhile).

A hand-over changes the wait's stored case data (`core.handover`), which the `Approval` reads
to decide who may decide; the wait rows' approvers are rewritten with the commit, so the inbox,
the lists and who sees what follow. The receiver is told when the hand-over falls due: the
handler's timer runs at once after the commit (and again, should telling them fail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.handlers import Approval
from signoff.engine.core.handover import MAX_HANDOVERS, HandOver, handovers, with_handover
from signoff.engine.core.records import Record
from signoff.engine.core.state import OpenCase, ThreadState
from signoff.engine.core.waits import Wait
from signoff.engine.core.working import Working
from signoff.engine.errors import AlreadyDecided, Conflict, NotWaiting, SignoffError
from signoff.engine.runtime.lifecycle import Lifecycle

Away = Callable[[Iterable[str], datetime], Mapping[str, tuple[str, datetime]]]


class HandOvers:
    def __init__(self, lifecycle: Lifecycle, away: Away | None = None) -> None:
        self.lifecycle = lifecycle
        self.away = away

    def reassign(
        self,
        work: Working,
        now: datetime,
        *,
        giver: str,
        to: str,
        actor: str | None,
        reason: str,
        via: str,
        thread: str | None,
        event: str | None,
        wait_key: str | None,
    ) -> None:
        """Hand `giver`'s part of the instance's open approval to `to`, in `work`; raises the
        refusal (nothing changed) when the rules say no."""
        work.check_data()
        target, case, handler = self._approval(work, thread, event, wait_key)
        info = self.lifecycle.info(work, target.id, target.at or "", case, via)
        if len(handovers(case.stored)) >= MAX_HANDOVERS:
            raise Conflict(f"this approval was handed over {MAX_HANDOVERS} times already")
        handler.check_handover(info, actor, giver, to)
        handover = HandOver(giver, to, actor, reason, now, via)
        self._apply(work, target, case, handler, handover, now, tell=True)

    def delegate(self, work: Working, thread: ThreadState, wait: Wait, now: datetime) -> None:
        """The wait `thread` just began: hand the part of each approver away now to their
        delegate, where the rules allow it (never to the starter of an `allow_self=False`
        approval, nor to someone who decides it already: then it stays with the approver)."""
        if self.away is None:
            return
        for case in thread.cases:
            on = wait.case(case.event)
            handler = on.handler if on is not None else None
            if not isinstance(handler, Approval) or not handler.approvers:
                continue
            named = [a for a in handler.approvers if not a.startswith("group:")]
            away = self.away(named, now) if named else {}
            for giver in named:
                if giver not in away:
                    continue
                to, until = away[giver]
                info = self.lifecycle.info(work, thread.id, thread.at or "", case)
                try:
                    handler.check_handover(info, None, giver, to)
                except SignoffError:
                    continue
                reason = f"away until {until:%Y-%m-%d %H:%M} UTC"
                handover = HandOver(giver, to, None, reason, now, "delegation")
                self._apply(work, thread, case, handler, handover, now, tell=False)

    def _apply(
        self,
        work: Working,
        thread: ThreadState,
        case: OpenCase,
        handler: Approval,
        handover: HandOver,
        now: datetime,
        *,
        tell: bool,
    ) -> None:
        case.stored = with_handover(case.stored, handover, tell=tell)
        if case.setup == "done":  # its timer tells the receiver, at once
            info = self.lifecycle.info(work, thread.id, thread.at or "", case)
            case.due_at = handler.due_at(replace(info, moment=now))
        work.waits_dirty = True
        work.note(
            Record(
                now,
                HistoryKind.REASSIGNED,
                thread=thread.id,
                name=case.event,
                actor=handover.by,
                via=handover.via,
                message=handover.sentence(),
                detail={
                    "wait": thread.at,
                    "from": handover.giver,
                    "to": handover.to,
                    "reason": handover.reason,
                    "asked": [handover.to],  # they keep sight of the instance (visibility)
                },
            )
        )

    def _approval(
        self, work: Working, thread: str | None, event: str | None, wait_key: str | None
    ) -> tuple[ThreadState, OpenCase, Approval]:
        found: list[tuple[ThreadState, OpenCase, Approval]] = []
        for t in work.state.threads.values():
            if t.status != ThreadStatus.WAITING or (thread is not None and t.id != thread):
                continue
            if wait_key is not None and t.wait_key != wait_key:
                continue
            for c in t.cases:
                if c.kind != "approval" or (event is not None and c.event != event):
                    continue
                handler = self.lifecycle.handler(work, t.at or "", c.event)
                if isinstance(handler, Approval):
                    found.append((t, c, handler))
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(f"{t.id}/{c.event}" for t, c, _ in found)
            raise Conflict(
                f"instance {work.id} waits for several approvals ({names}): "
                "name one with thread= and event="
            )
        if wait_key is not None and any(d.key == wait_key for d in work.state.decided):
            raise AlreadyDecided(f"the wait {wait_key} of instance {work.id} was already decided")
        raise NotWaiting(
            f"instance {work.id} waits for no approval"
            + (f" '{event}'" if event else "")
            + (f" on thread {thread}" if thread else "")
            + f" (status: {work.row.status})"
        )
