"""Delivering events: to the thread that waits for one, or into the inbox when it came
mid-transition, before its wait began."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from signoff.engine.core.datajson import data_json
from signoff.engine.core.enums import HistoryKind, ThreadStatus
from signoff.engine.core.finite import nonfinite_text, stored_nonfinite
from signoff.engine.core.handlers import Handler, KeepWaiting, Reply, WaitInfo
from signoff.engine.core.interpreter import thread_body
from signoff.engine.core.limits import json_problem
from signoff.engine.core.records import Record
from signoff.engine.core.state import Decided, Ending, OpenCase, Pending, ThreadState
from signoff.engine.core.tree import Entry, walk
from signoff.engine.core.waits import Wait
from signoff.engine.core.working import Working
from signoff.engine.errors import (
    EventRejected,
    InvalidData,
    NotWaiting,
    SignoffError,
    StatementMissing,
    brief,
)
from signoff.engine.runtime.commits import Committed, Committer
from signoff.engine.runtime.lifecycle import Lifecycle

MAX_PAYLOAD_IN_HISTORY = 4000


class Events:
    """Applies events to waiting threads, or keeps them in the inbox for a wait not begun yet."""

    def __init__(
        self, lifecycle: Lifecycle, committer: Committer, clock: Callable[[], datetime]
    ) -> None:
        self.lifecycle = lifecycle
        self.committer = committer
        self.clock = clock

    def event(
        self,
        work: Working,
        thread: ThreadState,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        via: str,
        *,
        link: str | None = None,
    ) -> Committed | None:
        """Apply an event to a waiting thread and commit it. Returns as `commit_change` does."""
        now = self.clock()
        wait_name = thread.at or ""
        try:
            handler = self.lifecycle.handler(work, wait_name, event)
        except SignoffError as exc:
            handler, problem = None, str(exc)
        except Exception as exc:  # the stored data no longer fits the model, definition() raised
            handler, problem = None, f"building the definition failed: {brief(exc)}"
        else:
            problem = (
                f"wait '{wait_name}' (or its event '{event}') no longer exists in workflow "
                f"{work.row.workflow}"
            )
        if handler is None and self._wait_exists(work, wait_name):
            # only the case is gone: refuse the event, the wait goes on
            still = ", ".join(c.event for c in thread.cases if c.event != event) or "nothing"
            raise NotWaiting(
                f"wait '{wait_name}' of instance {work.id} no longer has the event '{event}' "
                f"(the deployed {work.row.workflow} removed it); it still waits for: {still}"
            )
        if handler is None:
            work.fail(thread, problem, now)
            if not self.committer.save(work, now):  # no lease taken: nothing is left to drive
                return None
            raise StatementMissing(
                f"{problem}; instance {work.id} is now failed: deploy a fix, "
                "then retry it or move the thread with goto"
            )
        case = next(c for c in thread.cases if c.event == event)
        self.apply(work, thread, handler, case, payload, actor, via, now, link=link)
        return self.committer.commit_change(work, now)

    def _wait_exists(self, work: Working, wait_name: str) -> bool:
        try:
            return self.lifecycle.wait_statement(work, wait_name) is not None
        except Exception:  # the definition cannot be built: the caller reports that
            return False

    def mid_transition(self, work: Working) -> bool:
        """A live driver holds the instance: threads may be about to begin new waits."""
        row = work.row
        return bool(row.lease_owner and row.lease_until and row.lease_until > self.clock())

    def waits_somewhere(self, work: Working, event: str, thread: str | None) -> bool:
        """Whether the definition has a Wait with this event (in `thread`'s body, if named)."""
        return self._early_wait(work, event, thread) is not None

    def _early_wait(self, work: Working, event: str, thread: str | None) -> Wait | None:
        try:
            definition = work.definition()
            if thread is not None:
                state = work.state.threads.get(thread)
                if state is None:
                    return None
                definition = thread_body(definition, state.root)
        except Exception:
            return None
        return next((s for s in walk(definition) if isinstance(s, Wait) and s.case(event)), None)

    def early_check(
        self,
        work: Working,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        thread: str | None,
        via: str,
    ) -> None:
        """Before keeping an event for a wait that has not begun: may `actor` send it, and does
        the payload fit? Raises the refusal to the sender now, not into the history later. A
        decision is never kept: it raises `NotWaiting` naming the wait that has not begun."""
        wait = self._early_wait(work, event, thread)
        case = wait.case(event) if wait is not None else None
        if wait is None or case is None:
            return
        now = self.clock()
        info = WaitInfo(
            work.id,
            work.row.workflow,
            thread or "",
            wait.name,
            event,
            now,
            None,
            self.lifecycle.services,
            via,
            starter=work.state.started_by,
        )
        case.handler.check(info, payload, actor)
        if case.handler.decides:
            raise NotWaiting(
                f"'{wait.name}' has not begun yet: instance {work.id} is still running, and a "
                "decision is taken only once its wait is open; try again when it waits"
            )

    def keep_for_later(
        self,
        work: Working,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        thread: str | None,
        via: str,
    ) -> bool:
        """Put an early event in the instance's inbox; False when someone committed first."""
        now = self.clock()
        work.state.inbox.append(
            Pending(event=event, payload=payload, actor=actor, via=via, thread=thread, at=now)
        )
        work.note(
            Record(
                now,
                HistoryKind.EVENT_KEPT,
                thread=thread,
                name=event,
                actor=actor,
                via=via,
                message="arrived mid-transition; delivered when its wait begins",
            )
        )
        return self.committer.save(work, now)

    def deliver(self, work: Working, now: datetime) -> bool:
        """Give kept events to the waits that have begun for them; True if any was taken."""
        delivered = False
        for pending in list(work.state.inbox):
            target = next(
                (
                    t
                    for t in work.state.threads.values()
                    if t.status == ThreadStatus.WAITING
                    and (pending.thread in (None, t.id))
                    and any(c.event == pending.event for c in t.cases)
                ),
                None,
            )
            if target is None:
                continue
            work.state.inbox.remove(pending)
            delivered = True
            try:
                handler = self.lifecycle.handler(work, target.at or "", pending.event)
                if handler is None:
                    raise StatementMissing(f"wait '{target.at}' has no event '{pending.event}'")
                case = next(c for c in target.cases if c.event == pending.event)
                self.apply(
                    work, target, handler, case, pending.payload, pending.actor, pending.via, now
                )
            except SignoffError as exc:
                work.note(
                    Record(
                        now,
                        HistoryKind.EVENT_REFUSED,
                        thread=target.id,
                        name=pending.event,
                        actor=pending.actor,
                        via=pending.via,
                        message=str(exc),
                    )
                )
        return delivered

    def apply(
        self,
        work: Working,
        thread: ThreadState,
        handler: Handler,
        case: OpenCase,
        payload: dict[str, Any],
        actor: str | None,
        via: str,
        now: datetime,
        *,
        link: str | None = None,
    ) -> None:
        model = work.workflow()
        before = work.row.data
        info = self.lifecycle.info(work, thread.id, thread.at or "", case, via)
        try:
            handler.check(info, payload, actor)
            outcome = self.lifecycle.services.call(handler.handle, info, payload, actor)
            data = data_json(model)
            nonfinite = stored_nonfinite(model, data)
            if nonfinite is not None:
                raise InvalidData(
                    f"the {handler.kind} handler of '{case.event}' left {nonfinite_text(nonfinite)}"
                )
            if isinstance(outcome, Reply):  # refused as data that is not JSON is
                _check_reply(outcome.value, f"the {handler.kind} handler of '{case.event}'")
        except SignoffError:
            work.reset_data(before)
            raise
        except Exception as exc:
            work.reset_data(before)
            raise EventRejected(
                f"the {handler.kind} handler of '{case.event}' refused the event: {brief(exc)}"
            ) from exc
        work.row.data = data
        if isinstance(outcome, KeepWaiting):  # one vote of several: the wait goes on
            case.stored = outcome.stored
            if case.setup == "done":  # the handler may want to act on it (edit a message)
                case.due_at = handler.due_at(replace(info, stored=case.stored))
            work.waits_dirty = True
            work.note(
                Record(
                    now,
                    HistoryKind.VOTE,
                    thread=thread.id,
                    name=case.event,
                    actor=actor,
                    via=via,
                    message=outcome.note or None,
                    detail={"wait": thread.at, "payload": payload}
                    | ({"link": link} if link is not None else {}),
                )
            )
            return
        approved = payload.get("approved") if handler.kind == "approval" else None
        work.decided(
            Decided(
                thread=thread.id,
                wait=thread.at or "",
                event=case.event,
                events=[c.event for c in thread.cases],
                actor=actor,
                via=via,
                at=now,
                approved=approved if isinstance(approved, bool) else None,
                key=thread.wait_key,
            )
        )
        measures = {"waited": (now - case.began_at).total_seconds()}
        if via == "timer" and case.due_at is not None:
            measures["late"] = (now - case.due_at).total_seconds()
        shown = json.dumps(payload)
        detail: dict[str, Any] = {
            "wait": thread.at,
            "payload": payload
            if len(shown) <= MAX_PAYLOAD_IN_HISTORY
            else shown[:MAX_PAYLOAD_IN_HISTORY] + "...",
        }
        if link is not None:
            detail["link"] = link  # the approval link it came through
        if isinstance(outcome, Reply):  # the sender's answer; the history keeps it too
            work.reply = outcome.value
            shown = json.dumps(outcome.value)
            detail["reply"] = (
                outcome.value
                if len(shown) <= MAX_PAYLOAD_IN_HISTORY
                else shown[:MAX_PAYLOAD_IN_HISTORY] + "..."
            )
        reason = payload.get("reason")
        reason = reason.strip() if isinstance(reason, str) else None  # as the Decision has it
        if isinstance(approved, bool):
            work.note(
                Record(
                    now,
                    HistoryKind.DECISION,
                    thread=thread.id,
                    name=case.event,
                    actor=actor,
                    via=via,
                    message=("approved" if approved else "denied")
                    + (f": {reason}" if reason else ""),
                    detail=detail,
                    measures=measures,
                )
            )
        else:
            work.note(
                Record(
                    now,
                    HistoryKind.EVENT,
                    thread=thread.id,
                    name=case.event,
                    actor=actor,
                    via=via,
                    detail=detail,
                    measures=measures,
                )
            )
        ending = Ending(
            how="event",
            event=case.event,
            kind=case.kind,
            actor=actor,
            via=via,
            at=now,
            approved=approved if isinstance(approved, bool) else None,
            reason=reason or None,
        )
        self.lifecycle.end_waits(work, thread, now, handled_event=case.event, ending=ending)
        thread.status, thread.entry, thread.event = ThreadStatus.RUNNING, Entry.EVENT, case.event


def _check_reply(value: Any, handler: str) -> None:
    """Refuse a reply that cannot be stored as JSON (as the history keeps it): NaN or
    ±Infinity, a NUL, too deep or too big, or not JSON at all (a set, an object)."""
    what = f"the reply of {handler}"
    problem = json_problem(value, what)
    if problem is None:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            problem = f"{what} is not JSON: {exc}"
    if problem:
        raise InvalidData(problem)
