"""What a deployment would do to the instances already running: which it would strand, which
it would carry over to renamed statements, and which would see their timers or approvers change.

Pure: `assess` holds one instance's state against the definition built from that instance's
own data with the code about to be deployed; `DeploymentReport` adds the findings up, keeping
counts and a few example ids only, so checking any number of instances takes flat memory.
`Engine.check_deployment` feeds it the stored instances page by page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from signoff.engine.core.enums import ThreadStatus
from signoff.engine.core.handlers import Services, WaitInfo
from signoff.engine.core.renames import PARKED, Move, moves, renames_among
from signoff.engine.core.state import InstanceState, OpenCase, ThreadState
from signoff.engine.core.steps import Step
from signoff.engine.core.threads import Go
from signoff.engine.core.tree import Entry, Statement, walk
from signoff.engine.core.waits import Wait, WaitFor

UNFINISHED = ("running", "waiting", "failed")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing about one instance. `kind` says what `name` is:

    stranded: "statement" (a step, wait or WaitFor the thread stands on), "thread" (the Go
    statement a thread runs), "event" (an open case of `wait`, or the case a thread resumes
    after), "workflow" (no longer registered), "definition" (cannot be built from the
    instance's data, or is malformed for it; `name` says why);
    warnings: "timer" (an open case's due time would change), "approvers", "handler" (the
    case is now answered by another kind of handler).
    """

    kind: str
    name: str
    wait: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class Assessment:
    stranded: list[Finding] = field(default_factory=list)
    carried: list[Move] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    # what this (older) code lacks and a newer release recorded has: left for that release
    held: list[Finding] = field(default_factory=list)
    # "stored state unreadable: ..." (or data): the instance cannot be held against any code
    unreadable: str | None = None


def assess(
    definition: Statement, state: InstanceState, services: Services | None = None
) -> Assessment:
    """Hold one instance's state (as stored) against `definition`, the tree the new code
    builds from that instance's data. Renames are applied first, to `state` itself, exactly as
    the engine applies them at the next transition; what they cannot place is stranded."""
    everything = statements(definition)
    found = Assessment(carried=moves(state, renames_among(everything)))
    gos = {s.name: s for s in everything if isinstance(s, Go)}
    positions: dict[str, Statement] | None = None  # of the main thread's body, made once
    for thread in state.threads.values():
        if thread.status not in PARKED:
            continue
        body: Statement = definition
        if thread.root is not None:
            go = gos.get(thread.root)
            if go is None:
                found.stranded.append(Finding("thread", thread.root))
                continue
            body = go.body
        if thread.at is None or thread.entry is Entry.START:
            continue
        if body is definition:
            if positions is None:
                positions = {}
                for s in everything:
                    if isinstance(s, Step | Wait | WaitFor):
                        positions.setdefault(s.name, s)  # the first, as a walk finds it
            here = positions.get(thread.at)
        else:
            here = next(
                (
                    s
                    for s in walk(body)
                    if isinstance(s, Step | Wait | WaitFor) and s.name == thread.at
                ),
                None,
            )
        if here is None:
            found.stranded.append(Finding("statement", thread.at))
            continue
        if not isinstance(here, Wait):
            if thread.status == ThreadStatus.WAITING or (
                thread.entry is Entry.EVENT and not isinstance(here, WaitFor)  # its `then`
            ):
                found.stranded.append(
                    Finding("statement", thread.at, detail=f"is now a {type(here).__name__}")
                )
            continue
        if thread.entry is Entry.EVENT and thread.event and here.case(thread.event) is None:
            found.stranded.append(Finding("event", thread.event, wait=here.name))
        if thread.status == ThreadStatus.WAITING:
            for case in thread.cases:
                _open_case(found, here, thread, case, services)
    return found


def statements(root: Statement) -> list[Statement]:
    """Every statement below `root`, depth first, itself first: `walk`'s, as one list, which
    costs a fraction of the generators' chain. For a definition already validated (each child
    a statement)."""
    found: list[Statement] = []
    _gather(root, found)
    return found


def _gather(stmt: Statement, found: list[Statement]) -> None:
    found.append(stmt)
    for child in stmt.children():
        _gather(child, found)


def _open_case(
    found: Assessment,
    wait: Wait,
    thread: ThreadState,
    case: OpenCase,
    services: Services | None,
) -> None:
    on = wait.case(case.event)
    if on is None:
        found.stranded.append(Finding("event", case.event, wait=wait.name))
        return
    handler = on.handler
    if handler.kind != case.kind:
        found.warnings.append(
            Finding(
                "handler", case.event, wait.name, f"a {case.kind} case becomes a {handler.kind}"
            )
        )
        return
    # describe() may be costly (an Input's JSON schema): only handlers with approvers matter
    before = case.info.get("approvers")
    after = handler.describe().get("approvers") if handler.kind == "approval" else before
    if before != after:
        found.warnings.append(
            Finding("approvers", case.event, wait.name, f"{_who(before)} -> {_who(after)}")
        )
    if case.setup != "done" or services is None:
        return
    info = WaitInfo("", "", thread.id, wait.name, case.event, case.began_at, case.stored, services)
    try:
        due = handler.due_at(info)
    except Exception as exc:  # the handler's own code
        found.warnings.append(
            Finding("timer", case.event, wait.name, f"its due time cannot be computed: {exc}")
        )
        return
    if due != case.due_at:
        found.warnings.append(
            Finding("timer", case.event, wait.name, f"due {_when(case.due_at)} -> {_when(due)}")
        )


def _who(approvers: Any) -> str:
    return "anyone" if approvers is None else ", ".join(map(str, approvers)) or "nobody"


def _when(at: datetime | None) -> str:
    return "never" if at is None else f"{at:%Y-%m-%d %H:%M:%S} UTC"


# --- adding it up ---------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """How many instances share one finding, and the first few of their ids."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    detail: str | None = None  # the first instance's detail (times differ between instances)

    def add(self, instance_id: str, keep: int, detail: str | None) -> None:
        self.count += 1
        if len(self.examples) < keep:
            self.examples.append(instance_id)
        if self.detail is None:
            self.detail = detail


@dataclass(slots=True)
class WorkflowTotals:
    checked: int = 0
    stranded: int = 0
    carried: int = 0
    warnings: int = 0


@dataclass
class DeploymentReport:
    """The findings of `Engine.check_deployment`: every count is of instances (an instance
    with two threads on one missing statement counts once). `ok` when nothing is stranded and
    every instance could be read (one whose stored state or data cannot be read is counted
    apart, in `unreadable`: no code can run it); warnings never make it fail. `as_json()` is
    the form `signoff check --json` prints."""

    examples: int = 5
    checked: int = 0
    stranded_instances: int = 0
    carried_instances: int = 0
    warned_instances: int = 0
    unreadable_instances: int = 0
    held_instances: int = 0  # left for a newer release: a rollback to this code strands them
    workflows: dict[str, WorkflowTotals] = field(default_factory=dict)
    # (workflow, kind, name, wait) -> tally
    stranded: dict[tuple[str, str, str, str | None], Tally] = field(default_factory=dict)
    # (workflow, what, old, new) -> tally
    carried: dict[tuple[str, str, str, str], Tally] = field(default_factory=dict)
    # (workflow, kind, name, wait) -> tally
    warnings: dict[tuple[str, str, str, str | None], Tally] = field(default_factory=dict)
    # (workflow, "state" or "data") -> tally, its detail the first instance's problem
    unreadable: dict[tuple[str, str], Tally] = field(default_factory=dict)
    # (workflow, kind, name, wait) -> tally: positions only a newer release has
    held: dict[tuple[str, str, str, str | None], Tally] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.stranded and not self.unreadable and not self.held

    def add(self, instance_id: str, workflow: str, found: Assessment) -> None:
        """Count one instance's findings."""
        self.checked += 1
        totals = self.workflows.setdefault(workflow, WorkflowTotals())
        totals.checked += 1
        if found.unreadable is not None:
            self.unreadable_instances += 1
            what = "data" if found.unreadable.startswith("stored data") else "state"
            tally = self.unreadable.setdefault((workflow, what), Tally())
            tally.add(instance_id, self.examples, found.unreadable)
            return
        if found.stranded:
            self.stranded_instances += 1
            totals.stranded += 1
        elif found.held:
            self.held_instances += 1
        elif found.carried:
            self.carried_instances += 1
            totals.carried += 1
        if found.warnings:
            self.warned_instances += 1
            totals.warnings += 1
        for key, detail in _unique(
            ((workflow, f.kind, f.name, f.wait), f.detail) for f in found.stranded
        ):
            self.stranded.setdefault(key, Tally()).add(instance_id, self.examples, detail)
        if not found.stranded:
            for key, detail in _unique(
                ((workflow, f.kind, f.name, f.wait), f.detail) for f in found.held
            ):
                self.held.setdefault(key, Tally()).add(instance_id, self.examples, detail)
        if not found.stranded:  # a stranded instance is not carried over, whatever else moves
            for mkey, _ in _unique(((workflow, m.what, m.old, m.new), None) for m in found.carried):
                self.carried.setdefault(mkey, Tally()).add(instance_id, self.examples, None)
        for key, detail in _unique(
            ((workflow, f.kind, f.name, f.wait), f.detail) for f in found.warnings
        ):
            self.warnings.setdefault(key, Tally()).add(instance_id, self.examples, detail)

    def as_json(self) -> dict[str, Any]:
        """Plain data, sorted (by workflow, then most instances first) so output is stable."""

        def rows(tallies: dict[Any, Tally], fields: tuple[str, ...]) -> list[dict[str, Any]]:
            ordered = sorted(tallies.items(), key=lambda kv: (kv[0][0], -kv[1].count, kv[0]))
            out = []
            for key, tally in ordered:
                row: dict[str, Any] = dict(zip(fields, key, strict=True))
                row.update(count=tally.count, examples=tally.examples)
                if tally.detail is not None:
                    row["detail"] = tally.detail
                out.append(row)
            return out

        return {
            "ok": self.ok,
            "checked": self.checked,
            "stranded_instances": self.stranded_instances,
            "carried_instances": self.carried_instances,
            "warned_instances": self.warned_instances,
            "workflows": {
                name: {
                    "checked": t.checked,
                    "stranded": t.stranded,
                    "carried": t.carried,
                    "warnings": t.warnings,
                }
                for name, t in sorted(self.workflows.items())
            },
            "stranded": rows(self.stranded, ("workflow", "kind", "name", "wait")),
            "carried": rows(self.carried, ("workflow", "what", "from", "to")),
            "warnings": rows(self.warnings, ("workflow", "kind", "name", "wait")),
            "unreadable_instances": self.unreadable_instances,
            "unreadable": rows(self.unreadable, ("workflow", "what")),
            "held_instances": self.held_instances,
            "held": rows(self.held, ("workflow", "kind", "name", "wait")),
        }


def _unique(items: Iterator[tuple[Any, str | None]]) -> list[tuple[Any, str | None]]:
    seen: dict[Any, str | None] = {}
    for key, detail in items:
        seen.setdefault(key, detail)
    return list(seen.items())
