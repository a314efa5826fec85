"""The in-memory working copy of one instance between two commits, and how it merges with a
change another writer committed meanwhile (optimistic concurrency with a three-way merge).

Pure: no I/O; the engine loads and saves `Stored` rows through the store.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from signoff.engine.core.enums import HistoryKind, Status, ThreadStatus
from signoff.engine.core.handover import handovers, routed
from signoff.engine.core.outbound import Outbound
from signoff.engine.core.records import Record, Stored, WaitRecord
from signoff.engine.core.state import Decided, InstanceState, Teardown, ThreadState
from signoff.engine.core.stored import data_unreadable, read_state
from signoff.engine.core.tree import Statement, walk
from signoff.engine.core.validate import validate
from signoff.engine.core.waits import Wait
from signoff.engine.core.workflow import Workflow

TERMINAL = (Status.COMPLETED, Status.CANCELLED)
KEEP_DECIDED = 20


@dataclass
class Working:
    row: Stored
    cls: type[Workflow] | None
    state: InstanceState
    base_state: str  # the state JSON as last committed
    base_data: str  # the data JSON as last committed
    model: Workflow | None = None
    history: list[Record] = field(default_factory=list)
    outbox: list[Outbound] = field(default_factory=list)  # messages to write with the commit
    waits_dirty: bool = False
    no_waits: bool = False  # known to have no wait rows as last committed
    validated: str | None = None  # the data the definition was last checked with
    built: tuple[Workflow, str, Statement] | None = None  # model, data, the tree they built
    waits_of: tuple[Statement, dict[str, Wait]] | None = None  # a tree and its waits by name
    walked: tuple[Statement, list[Statement]] | None = None  # a tree and its statements
    base_marks: tuple[Any, ...] = ()  # `marks(row)` as last committed
    reply: Any = None  # what the handler of the event applied here answered its sender

    @classmethod
    def of(cls, row: Stored, workflow: type[Workflow] | None) -> Working:
        state = read_state(row.id, row.state)
        return cls(row, workflow, state, row.state, row.data, base_marks=marks(row))

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def terminal(self) -> bool:
        return self.row.status in TERMINAL

    def workflow(self) -> Workflow:
        """The workflow model, built from the stored data on first use."""
        if self.model is None:
            assert self.cls is not None, "transitions need a registered workflow class"
            try:
                self.model = self.cls.model_validate_json(self.row.data)
            except ValidationError as exc:
                corrupt = data_unreadable(self.id, self.row.data, exc)
                if corrupt is not None:
                    raise corrupt from None
                raise
        return self.model

    def check_data(self) -> None:
        """Raise `CorruptState` when the stored data cannot be read at all; data that only no
        longer fits the model is left to whatever builds the definition. Builds the model the
        transition builds anyway, so a valid row costs nothing more."""
        with contextlib.suppress(ValidationError):
            self.workflow()

    def tree(self) -> Statement:
        """The definition built from the data as it is now. Kept while neither the model nor
        the stored data changed, so one transition does not build the same tree twice."""
        model = self.workflow()
        built = self.built
        # a step stores a new string each time, most often equal to the last
        if built is not None and built[0] is model and built[1] == self.row.data:
            return built[2]
        tree = model.definition()
        self.built = (model, self.row.data, tree)
        return tree

    def definition(self) -> Statement:
        """The tree built from the data as it is now; checked again whenever the data changed
        since the last check (a step can make a name a duplicate), not at every rebuild."""
        tree = self.tree()
        if self.validated != self.row.data:
            validate(tree, self.row.workflow)
            self.validated = self.row.data
        return tree

    def statements(self) -> list[Statement]:
        """Every statement of `tree()`, in `walk`'s order: walked once per tree, as both the
        renames a load carries over and the index of waits are read from it."""
        tree = self.tree()
        walked = self.walked
        if walked is None or walked[0] is not tree:
            walked = self.walked = (tree, list(walk(tree)))
        return walked[1]

    def wait_named(self, name: str) -> Wait | None:
        """The first Wait named `name` in the definition as it is now (depth first, as a walk
        finds it); the waits of a tree are indexed once, as handlers look them up many times
        per transition."""
        tree = self.definition()
        found = self.waits_of
        if found is None or found[0] is not tree:
            index: dict[str, Wait] = {}
            for stmt in self.statements():  # of `tree`: `definition()` is `tree()` checked
                if isinstance(stmt, Wait):
                    index.setdefault(stmt.name, stmt)
            found = self.waits_of = (tree, index)
        return found[1].get(name)

    def reset_data(self, data_json: str) -> None:
        self.row.data = data_json
        self.model = None

    def thread(self, thread_id: str) -> ThreadState:
        return self.state.threads[thread_id]

    def note(self, record: Record) -> None:
        self.history.append(record)

    def decided(self, entry: Decided) -> None:
        self.state.decided = [*self.state.decided[-(KEEP_DECIDED - 1) :], entry]

    def fail(self, thread: ThreadState, message: str, now: datetime, tb: str | None = None) -> None:
        """Mark `thread` failed with `message`: the instance then needs an operator."""
        thread.status, thread.error, thread.traceback, thread.retry_at = (
            ThreadStatus.FAILED,
            message,
            tb,
            None,
        )
        self.waits_dirty = True  # a failed thread's wait leaves the inbox
        self.note(
            Record(now, HistoryKind.FAILED, thread=thread.id, name=thread.at, message=message)
        )
        self.refresh_status()

    def refresh_status(self) -> None:
        """Derive the instance's status from its threads (completed and cancelled stay put)."""
        if self.terminal:
            return
        row = self.row
        moving = False  # one walk over the threads: this runs at every commit
        for thread in self.state.threads.values():
            status = thread.status
            if status == ThreadStatus.FAILED:  # the first failed thread names the error
                row.status, row.error = Status.FAILED, thread.error
                return
            if status == ThreadStatus.RUNNING or status == ThreadStatus.RETRYING:
                moving = True
        row.status, row.error = (Status.RUNNING if moving else Status.WAITING), None

    def wait_records(self) -> list[WaitRecord]:
        records = []
        for thread in self.state.threads.values():
            if thread.status != ThreadStatus.WAITING or thread.at is None:
                continue
            for case in thread.cases:
                approvers = case.info.get("approvers")
                if approvers is not None and (case.stored or {}).get("escalated"):
                    approvers = [*approvers, *(case.info.get("escalate_to") or [])]
                approvers, _ = routed(approvers, handovers(case.stored))  # reassigned parts
                records.append(
                    WaitRecord(
                        thread=thread.id,
                        wait=thread.at,
                        event=case.event,
                        kind=case.kind,
                        began_at=case.began_at,
                        due_at=case.due_at if case.setup == "done" else case.retry_at,
                        approvers=approvers,
                        title=case.info.get("title"),
                        wait_key=thread.wait_key,
                    )
                )
        return records

    def committed(self, version: int, updated_at: datetime) -> None:
        self.row.version = version
        self.row.updated_at = updated_at
        self.base_state = self.row.state
        self.base_data = self.row.data
        self.history = []
        self.outbox = []
        self.waits_dirty = False
        self.base_marks = marks(self.row)

    def progress_only(self) -> bool:
        """Whether, of the row's columns, only data, state and version differ from what was
        last committed: a step's commit in the middle of a drive. Such a write leaves the
        indexed columns alone, so PostgreSQL can update the row in place (HOT) and SQLite
        rewrites no index page."""
        return marks(self.row) == self.base_marks


def marks(row: Stored) -> tuple[Any, ...]:
    """The columns other than data, state and version: what the lists, the indexes and the
    schedulers read."""
    return (
        row.status,
        row.result,
        row.error,
        row.due_at,
        row.lease_owner,
        row.lease_until,
        row.updated_at,
    )


def rebase(ours: Working, theirs: Working) -> bool:
    """Carry our uncommitted progress onto the version another writer committed, in place.

    Per thread, whatever only one side changed is kept; where both sides changed a thread,
    theirs wins and our progress on it is lost. Our data changes come from the one step run
    since our last commit (a transition commits after every step): they are merged field by
    field when that step's thread kept our progress, and dropped when it did not, so a step is
    never marked done without its effect nor its effect kept without the step being done; it
    runs again if its thread comes back to it. Our history records of lost threads go too: the
    audit trail holds one "step" row per committed step. A finished (completed or cancelled)
    instance is taken as it is. When our progress ended the instance but some of it was lost,
    all of it goes, so the end is walked again on the state as it now is. Returns whether all
    of ours survived.
    """
    base = read_state(ours.id, ours.base_state)
    mine, others = ours.state, theirs.state
    order = [*others.threads, *(t for t in mine.threads if t not in others.threads)]
    changed = {tid for tid in order if mine.threads.get(tid) != base.threads.get(tid)}
    lost = {
        tid
        for tid in changed
        if theirs.terminal or others.threads.get(tid) != base.threads.get(tid)
    }
    stepped = {
        r.thread for r in ours.history if r.kind == HistoryKind.STEP and r.thread is not None
    }
    if _conflicting_fields(ours.base_data, ours.row.data, theirs.row.data):
        # both sides set a field differently (an event's handler and our step): the event was
        # acknowledged first, so it stands and our step runs again on the data as it now is
        lost |= stepped & changed
    if lost and ours.terminal:
        lost = changed
    threads: dict[str, ThreadState] = {}
    for tid in order:
        chosen = mine.threads.get(tid) if tid in changed - lost else others.threads.get(tid)
        if chosen is not None:
            threads[tid] = chosen
    state = others
    state.threads = threads
    if not theirs.terminal:
        # what we added for a lost thread goes with it; what we finished (a teardown) stays done
        teardowns = [t for t in mine.teardowns if t in base.teardowns or t.thread not in lost]
        decided = [d for d in mine.decided if d in base.decided or d.thread not in lost]
        state.teardowns = _merge_list(base.teardowns, teardowns, state.teardowns)
        state.decided = _merge_list(base.decided, decided, state.decided)
        state.inbox = _merge_list(base.inbox, mine.inbox, state.inbox)
        _keep_setup_results(mine.threads, state.teardowns)
    row = theirs.row
    if not theirs.terminal and not stepped & lost:
        row.data = _merge_fields(ours.base_data, ours.row.data, row.data)
    if ours.terminal and not lost:
        row.status, row.result, row.error = ours.row.status, ours.row.result, ours.row.error
    ours.history = [r for r in ours.history if r.thread not in lost]
    ours.outbox = [o for o in ours.outbox if o.thread not in lost]
    ours.row, ours.state, ours.model = row, state, None
    ours.base_state, ours.base_data = theirs.base_state, theirs.base_data
    ours.base_marks = theirs.base_marks
    ours.waits_dirty = True
    return not lost


def _merge_list(base: list[Any], ours: list[Any], theirs: list[Any]) -> list[Any]:
    removed = [b for b in base if b not in ours]
    added = [o for o in ours if o not in base]
    return [t for t in theirs if t not in removed] + [a for a in added if a not in theirs]


def _keep_setup_results(mine: dict[str, ThreadState], teardowns: list[Teardown]) -> None:
    """A wait the other side ended while our setup ran still owes teardown what setup stored
    (the Slack message to edit), which only our side knows."""
    stored = {
        (tid, t.at, c.event, c.began_at): c.stored
        for tid, t in mine.items()
        for c in t.cases
        if c.stored is not None
    }
    for teardown in teardowns:
        if teardown.stored is None:
            teardown.stored = stored.get(
                (teardown.thread, teardown.wait, teardown.event, teardown.began_at)
            )


def _conflicting_fields(base: str, ours: str, theirs: str) -> bool:
    b, o, t = json.loads(base), json.loads(ours), json.loads(theirs)
    return any(
        b.get(key, _MISSING) != value
        and b.get(key, _MISSING) != t.get(key, _MISSING)
        and t.get(key, _MISSING) != value
        for key, value in o.items()
    )


def _merge_fields(base: str, ours: str, theirs: str) -> str:
    b, o, t = json.loads(base), json.loads(ours), json.loads(theirs)
    for key, value in o.items():
        if b.get(key, _MISSING) != value:
            t[key] = value
    return json.dumps(t, separators=(",", ":"))


_MISSING = object()
