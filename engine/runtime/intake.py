"""What comes in from callers: new instances (`start`) and events (`send`, and `check_event`
that answers whether one would be taken). Each is checked before anything is written (the data
or payload, the actor's right, the wait it goes to, a deadline that passed), then committed
and driven until every thread blocks."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from signoff.engine.core.authority import Authority
from signoff.engine.core.datajson import data_json
from signoff.engine.core.enums import HistoryKind, Status, ThreadStatus
from signoff.engine.core.finite import nonfinite_text, stored_nonfinite
from signoff.engine.core.limits import json_problem
from signoff.engine.core.records import Record, Stored
from signoff.engine.core.renames import renames_among
from signoff.engine.core.state import Decided, InstanceState, OpenCase, ThreadState, state_json
from signoff.engine.core.workflow import Workflow
from signoff.engine.core.working import Working, marks
from signoff.engine.errors import AlreadyDecided, Conflict, InvalidData, NotWaiting
from signoff.engine.runtime import logs
from signoff.engine.runtime.arguments import ID_PATTERN, brief, check_text, checked_payload
from signoff.engine.runtime.loader import Loader
from signoff.engine.runtime.metrics import Metrics
from signoff.engine.runtime.reading import Reading
from signoff.engine.runtime.registry import Registry
from signoff.engine.runtime.releases import Releases
from signoff.engine.runtime.runner import Runner
from signoff.engine.storage.store import Store
from signoff.engine.views import InstanceView, WaitView


class Intake:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        loader: Loader,
        reading: Reading,
        authority: Authority,
        releases: Releases,
        runner: Runner,
        metrics: Metrics,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.registry = registry
        self.loader = loader
        self.reading = reading
        self.authority = authority
        self.releases = releases
        self.runner = runner
        self.metrics = metrics
        self._now = now

    def start(
        self,
        workflow: str | type[Workflow],
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        *,
        actor: str | None = None,
        via: str = "api",
    ) -> str:
        cls = self.registry.class_of(workflow)
        if data is not None and not isinstance(data, Mapping):
            raise InvalidData("an instance's data must be a JSON object")
        data = dict(data or {})
        problem = json_problem(data, "the data")
        if problem:
            raise InvalidData(problem)
        check_text(actor=actor, via=via)
        self.authority.check_start(cls, data, actor)
        fields = cls.model_fields
        unknown = sorted(key for key in data if key not in fields)
        if unknown:
            raise InvalidData(f"{cls.registered_name()} has no field(s): {', '.join(unknown)}")
        try:
            model = cls.model_validate(data)
            stored_data = data_json(model)
        except (ValidationError, ValueError) as exc:
            raise InvalidData(f"invalid data for {cls.registered_name()}: {brief(exc)}") from None
        nonfinite = stored_nonfinite(model, stored_data)  # "nan" as text, made a float by a field
        if nonfinite is not None:
            raise InvalidData(f"the data has {nonfinite_text(nonfinite)}")
        if id is None:
            id = _new_id()
        elif not isinstance(id, str) or not ID_PATTERN.fullmatch(id):
            raise InvalidData(
                "an instance id is 1-100 letters, digits or . _ : - "
                "and starts with a letter or digit"
            )
        now = self._now()
        name = cls.registered_name()
        state = InstanceState(
            started_by=actor,
            threads={"main": ThreadState(id="main", name="main")},
            release=self.releases.fingerprint(name),
        )
        owner = self.runner.committer.tokens()
        row = Stored(
            id=id,
            workflow=name,
            status=Status.RUNNING,
            data=stored_data,
            state=state_json(state),
            result=None,
            error=None,
            version=1,
            due_at=now + self.runner.lease,
            lease_owner=owner,
            lease_until=now + self.runner.lease,
            created_at=now,
            updated_at=now,
        )
        started = [Record(now, HistoryKind.STARTED, actor=actor, via=via, name=name)]
        self.store.insert(row, [], started)
        logs.committed(row.id, row.workflow, started)
        self.metrics.committed(row.workflow, started)
        # the state as just written, not parsed back; the model is built from the stored JSON,
        # as every later transition builds it
        work = Working(row, cls, state, row.state, row.data, base_marks=marks(row))
        self.runner.drive(work, owner)
        return id

    def send(
        self,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
        thread: str | None = None,
        via: str = "api",
        *,
        wait_key: str | None = None,
        link: str | None = None,
    ) -> InstanceView:
        payload = checked_payload(payload)
        check_text(
            instance_id=instance_id,
            event=event,
            actor=actor,
            thread=thread,
            via=via,
            wait_key=wait_key,
            link=link,
        )
        self.releases.beat()
        recent = True  # the first try may begin from the row as this process last committed it
        while True:
            work, read = self.loader.load_for_event(instance_id, recent)
            recent, loaded = False, work.row.version
            try:
                work.check_data()
                current = self._current_event(work, event)
                target = self._waiting_thread(work, current, thread, wait_key)
                if target is None:  # mid-transition (a kept copy never is: it has no driver)
                    self.runner.events.early_check(work, current, payload, actor, thread, via)
                    if self.runner.events.keep_for_later(
                        work, current, payload, actor, thread, via
                    ):
                        return replace(self.reading.get(instance_id), kept=True)
                    continue
                deadline = self._passed_deadline(target)
                if deadline is not None:
                    if not read:  # fire it from the instance as read: it may have fired elsewhere
                        continue
                    self._decide_by_deadline(work, target, deadline)
                committed = self.runner.events.event(
                    work, target, current, payload, actor, via, link=link
                )
            except Exception:
                # a refusal stands unless it was decided on a copy of ours that was stale
                if read or work.row.version != loaded or self.loader.still_current(work):
                    raise
                continue
            if committed is None:
                continue  # someone committed first: look again
            reply = work.reply  # the handler's answer to this sender
            if committed.drive_as and self.runner.drive(work, committed.drive_as):
                view = self.reading.view_of(work)  # what was just committed: no second read
            else:
                view = self.reading.get(instance_id)
            return view if reply is None else replace(view, reply=reply)

    def check_event(
        self,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
        thread: str | None = None,
        via: str = "api",
        *,
        wait_key: str | None = None,
    ) -> WaitView:
        payload = checked_payload(payload)
        check_text(
            instance_id=instance_id,
            event=event,
            actor=actor,
            thread=thread,
            via=via,
            wait_key=wait_key,
        )
        work = self.loader.load(instance_id)
        work.check_data()
        current = self._current_event(work, event)
        target = self._waiting_thread(work, current, thread, wait_key)
        if target is None:  # mid-transition: send would keep it, after the same early check
            self.runner.events.early_check(work, current, payload, actor, thread, via)
            raise NotWaiting(f"instance {instance_id} is busy; try again in a moment")
        now = self._now()
        for c in target.cases:
            if c.kind == "timeout" and c.setup == "done" and c.due_at and c.due_at <= now:
                raise AlreadyDecided(
                    f"'{target.at}' was already decided: {c.event} by the timer at "
                    f"{c.due_at:%Y-%m-%d %H:%M:%S} UTC (its deadline passed before this event)"
                )
        case = next(c for c in target.cases if c.event == current)
        handler = self.runner.lifecycle.handler(work, target.at or "", current)
        if handler is None:
            raise NotWaiting(
                f"wait '{target.at}' of instance {instance_id} no longer has the event '{event}'"
            )
        handler.check(
            self.runner.lifecycle.info(work, target.id, target.at or "", case, via),
            payload,
            actor,
        )
        view = self.reading.get(instance_id)
        return next(
            w for t in view.threads if t.id == target.id for w in t.waits if w.event == current
        )

    def _current_event(self, work: Working, event: str) -> str:
        """An event sent under a name a deployment renamed goes to the case that now has it."""
        if any(c.event == event for t in work.state.threads.values() for c in t.cases):
            return event
        try:
            renames = renames_among(work.statements())
        except Exception:  # the transition reports a definition that cannot be built
            return event
        for t in work.state.threads.values():
            if t.status == ThreadStatus.WAITING:
                current = renames.event(t.at, event)
                if current is not None:
                    return current
        return event

    def _waiting_thread(
        self, work: Working, event: str, thread: str | None, wait_key: str | None
    ) -> ThreadState | None:
        """The thread to deliver `event` to; None when it should wait in the inbox."""
        iid = work.id
        if wait_key is not None:
            return self._keyed_thread(work, event, wait_key)
        candidates = [
            t
            for t in work.state.threads.values()
            if t.status == ThreadStatus.WAITING
            and any(c.event == event for c in t.cases)
            and (thread is None or t.id == thread)
        ]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            names = ", ".join(t.id for t in candidates)
            raise Conflict(
                f"several threads of {iid} wait for '{event}' ({names}): name one with thread="
            )
        for decided in reversed(work.state.decided):
            if event in decided.events and (thread is None or decided.thread == thread):
                raise _already(decided)
        if work.row.status == Status.FAILED:
            raise Conflict(f"instance {iid} has failed and needs an operator: {work.row.error}")
        if work.terminal:
            raise Conflict(f"instance {iid} is {work.row.status}")
        if self.runner.events.mid_transition(work) and self.runner.events.waits_somewhere(
            work, event, thread
        ):
            return None
        open_events = sorted(
            {
                c.event
                for t in work.state.threads.values()
                if t.status == ThreadStatus.WAITING
                for c in t.cases
            }
        )
        waits_for = ", ".join(open_events) if open_events else "nothing"
        raise NotWaiting(f"instance {iid} is not waiting for '{event}'; it waits for: {waits_for}")

    def _passed_deadline(self, target: ThreadState) -> OpenCase | None:
        """Hard deadlines: the earliest Timeout of the target's wait whose due time has passed,
        which decided the wait then, whether or not its timer has fired yet."""
        timed = [c for c in target.cases if c.kind == "timeout" and c.setup == "done" and c.due_at]
        if not timed:  # the clock is read only for a wait that has a deadline
            return None
        now = self._now()
        due = [c for c in timed if c.due_at and c.due_at <= now]
        return min(due, key=lambda c: c.due_at or now) if due else None

    def _decide_by_deadline(self, work: Working, target: ThreadState, timeout: OpenCase) -> None:
        """Fire the passed deadline now if the timer has not, then refuse the late event."""
        wait = target.at  # firing moves the thread into the timeout's branch
        self.runner.wake(work, self._now())
        raise AlreadyDecided(
            f"'{wait}' was already decided: {timeout.event} by the timer at "
            f"{timeout.due_at:%Y-%m-%d %H:%M:%S} UTC (its deadline passed before this event)"
        )

    def _keyed_thread(self, work: Working, event: str, wait_key: str) -> ThreadState:
        for t in work.state.threads.values():
            if t.status == ThreadStatus.WAITING and t.wait_key == wait_key:
                if any(c.event == event for c in t.cases):
                    return t
                raise NotWaiting(
                    f"the wait {wait_key} of instance {work.id} has no event '{event}'"
                )
        for decided in reversed(work.state.decided):
            if decided.key == wait_key:
                raise _already(decided)
        raise AlreadyDecided(
            f"the wait {wait_key} of instance {work.id} is no longer open "
            f"(instance status: {work.row.status})"
        )


def _new_id() -> str:
    """`uuid.uuid4().hex`, made without a `UUID` object (its checks cost more than the random
    bytes): 16 random bytes with the version (4) and variant (RFC 4122) bits set."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def _already(decided: Decided) -> AlreadyDecided:
    what = decided.event
    if decided.approved is not None:
        what = "approved" if decided.approved else "denied"
    who = decided.actor or ("the timer" if decided.via == "timer" else "someone")
    return AlreadyDecided(
        f"'{decided.wait}' was already decided: {what} by {who} "
        f"at {decided.at:%Y-%m-%d %H:%M:%S} UTC"
    )
