"""Property: interrupting and reloading never changes the outcome.

Hypothesis builds random workflow trees (Steps, If/ElseIf/Else and Switch/Case/Default with bool
and callable conditions, For loops with Break and Continue, Go threads, Waits on input events and
timeouts) and a random choice of which event to deliver at each point. One instance is driven to
the end three ways, each on its own SQLite file:

- by one uninterrupted Engine;
- by a fresh Engine at every transition (every start, send and run_due);
- by a fresh Engine after *every step*: each step's first run "crashes" the process between
  the step and its commit, and a new Engine recovers the instance once its lease has run out.

All three must produce the same data (whose trace records every committed step and event), the
same result and the same history; the crashing run re-runs steps but commits each one once.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from signoff.engine import (
    Break,
    Case,
    Continue,
    Default,
    Engine,
    For,
    Go,
    If,
    Input,
    On,
    Return,
    S,
    Statement,
    Step,
    Switch,
    Timeout,
    Wait,
    Workflow,
)

from tests.conftest import Clock

LEASE = timedelta(seconds=1)
TIMEOUT = timedelta(days=1)
MAX_TRANSITIONS = 200

# Steps run, in order, by the current drive (what actually executed, not what was committed).
EXECUTED: list[str] = []


class Crash(BaseException):
    """The process dies between a step and its commit (nothing in the engine catches it)."""


class Crasher:
    """When on, every step occurrence crashes on its first run and succeeds on its second."""

    def __init__(self) -> None:
        self.on = False
        self.seen: set[tuple[int, str]] = set()

    def maybe(self, occurrence: tuple[int, str]) -> None:
        if self.on and occurrence not in self.seen:
            self.seen.add(occurrence)
            raise Crash(occurrence)


CRASHER = Crasher()


class Value(BaseModel):
    value: int


class Tree(Workflow):
    """A workflow whose definition is the tree described by its own data (`spec`)."""

    spec: list[Any] = []
    trace: list[str] = []
    counters: dict[str, int] = {}

    def definition(self) -> S:
        return S(*self.build(self.spec))

    def build(self, nodes: list[Any]) -> list[Statement]:
        return [self.node(n) for n in nodes]

    def node(self, n: list[Any]) -> Statement:
        match n:
            case ["step", name]:
                return Step(name, self.record(name))
            case ["if", cond, then, elif_, else_]:
                stmt = If(self.cond(cond), *self.build(then))
                if elif_ is not None:
                    stmt = stmt.ElseIf(self.cond(elif_[0]), *self.build(elif_[1]))
                if else_ is not None:
                    stmt = stmt.Else(*self.build(else_))
                return stmt
            case ["switch", cases, default]:
                built = [Case(self.cond(cond), *self.build(body)) for cond, body in cases]
                if default is not None:
                    built.append(Default(*self.build(default)))
                return Switch(*built)
            case ["for", name, is_callable, limit, body]:

                def more(name: str = name, limit: int = limit) -> bool:
                    return self.counters.get(name, 0) < limit

                return For(
                    name,
                    more if is_callable else more(),
                    Step(f"{name}+", self.count(name)),
                    *self.build(body),
                )
            case ["break", cond]:
                return Break() if cond is None else If(self.cond(cond), Break())
            case ["continue", cond]:
                return Continue() if cond is None else If(self.cond(cond), Continue())
            case ["go", name, thread_id, body]:
                return Go(name, S(*self.build(body)), id=thread_id)
            case ["wait", name, events, timeout]:
                cases = [
                    On(event, Input(Value, self.receive(name, event)), *self.build(body))
                    for event, body in events
                ]
                if timeout is not None:
                    cases.append(On("timeout", Timeout(after=TIMEOUT), *self.build(timeout)))
                return Wait(name, *cases)
            case ["return"]:
                return Return(len(self.trace))
        raise AssertionError(f"unknown node {n!r}")

    def cond(self, spec: list[Any]) -> bool | Callable[[], bool]:
        is_callable, modulo, remainder = spec

        def holds() -> bool:
            return (len(self.trace) + sum(self.counters.values())) % modulo == remainder

        return holds if is_callable else holds()

    def record(self, name: str) -> Callable[[], None]:
        def action() -> None:
            EXECUTED.append(name)
            self.trace.append(name)
            CRASHER.maybe((len(self.trace), name))

        return action

    def count(self, loop: str) -> Callable[[], None]:
        def action() -> None:
            EXECUTED.append(f"{loop}+")
            self.counters[loop] = self.counters.get(loop, 0) + 1
            CRASHER.maybe((len(self.trace) * 1000 + sum(self.counters.values()), loop))

        return action

    def receive(self, wait: str, event: str) -> Callable[[Value], None]:
        def apply(payload: Value) -> None:
            self.trace.append(f"{wait}:{event}={payload.value}")

        return apply


# --- the random trees --------------------------------------------------------------------------

conditions = st.tuples(st.booleans(), st.integers(2, 3), st.integers(0, 1)).map(list)


@st.composite
def section(
    draw: st.DrawFn, names: itertools.count[int], depth: int, in_loop: bool, may_go: bool
) -> list[Any]:
    kinds = ["step", "step"]  # repeated kinds are drawn more often
    if depth < 3:
        kinds += ["wait", "wait", "if", "switch"]
    if depth < 2:
        kinds.append("for")
    if in_loop:
        kinds += ["break", "continue"]
    if may_go and depth < 2:
        kinds.append("go")
    if depth > 0:
        kinds.append("return")
    nodes: list[Any] = []
    for _ in range(draw(st.integers(1, 5 if depth == 0 else 3))):
        kind = draw(st.sampled_from(kinds))
        n = next(names)
        inner = {"names": names, "depth": depth + 1, "in_loop": in_loop, "may_go": may_go}
        match kind:
            case "step":
                nodes.append(["step", f"s{n}"])
            case "if":
                then = draw(section(**inner))
                elif_ = [draw(conditions), draw(section(**inner))] if draw(st.booleans()) else None
                else_ = draw(section(**inner)) if draw(st.booleans()) else None
                nodes.append(["if", draw(conditions), then, elif_, else_])
            case "switch":
                cases = [
                    [draw(conditions), draw(section(**inner))]
                    for _ in range(draw(st.integers(1, 3)))
                ]
                default = draw(section(**inner)) if draw(st.booleans()) else None
                nodes.append(["switch", cases, default])
            case "for":
                body = draw(section(**{**inner, "in_loop": True, "may_go": False}))
                nodes.append(["for", f"f{n}", draw(st.booleans()), draw(st.integers(1, 3)), body])
            case "break" | "continue":
                nodes.append([kind, draw(conditions) if draw(st.booleans()) else None])
            case "go":
                body = draw(section(**{**inner, "in_loop": False}))
                nodes.append(["go", f"g{n}", f"t{n}" if draw(st.booleans()) else None, body])
            case "wait":
                events = draw(
                    st.lists(
                        st.sampled_from(["yes", "no", "more"]), min_size=1, max_size=2, unique=True
                    )
                )
                cases = [[event, draw(section(**inner))] for event in events]
                timeout = draw(section(**inner)) if draw(st.booleans()) else None
                nodes.append(["wait", f"w{n}", cases, timeout])
            case "return":
                nodes.append(["return"])
    return nodes


@st.composite
def trees(draw: st.DrawFn) -> list[Any]:
    main = draw(section(names=itertools.count(1), depth=0, in_loop=False, may_go=True))
    return main + draw(st.sampled_from([[], [["return"]]]))


# --- driving an instance -------------------------------------------------------------------


class Drive:
    """Drives one instance to its end, choosing what to deliver from `choices`."""

    def __init__(
        self, path: Path, spec: list[Any], choices: list[int], *, fresh: bool, crash: bool
    ) -> None:
        self.url = f"sqlite:///{path}/{uuid.uuid4().hex}.db"
        self.clock = Clock()
        self.fresh, self.crash = fresh, crash
        self.spec, self.choices = spec, choices
        self.engine = self.new_engine()
        self.crashes = 0

    def new_engine(self) -> Engine:
        return Engine(self.url, [Tree], clock=self.clock, lease=LEASE, synchronous="NORMAL")

    def transition(self, action: Callable[[Engine], object]) -> None:
        if self.fresh:
            self.engine.close()
            self.engine = self.new_engine()
        try:
            action(self.engine)
        except Crash:
            self.recover()

    def recover(self) -> None:
        """The process died mid-transition: a new one finds the instance once the lease ends."""
        while True:
            self.crashes += 1
            self.engine.close()
            self.engine = self.new_engine()
            self.clock.advance(seconds=LEASE.total_seconds() + 1)
            try:
                assert self.engine.run_due() == 1
                return
            except Crash:
                continue

    def options(self) -> list[tuple[str, str | None]]:
        view = self.engine.get("p")
        options: list[tuple[str, str | None]] = []
        timer = False
        for thread in view.threads:
            if thread.status != "waiting":
                continue
            for wait in thread.waits:
                if wait.kind == "timeout":
                    timer = True
                else:
                    options.append((wait.event, thread.id))
        options.sort(key=str)
        if timer:
            options.append(("tick", None))
        return options

    def run(self) -> dict[str, Any]:
        CRASHER.on, CRASHER.seen = self.crash, set()
        EXECUTED.clear()
        self.transition(lambda e: e.start(Tree, {"spec": self.spec}, id="p"))
        for i in range(MAX_TRANSITIONS):
            view = self.engine.get("p")
            if view.status != "waiting":
                break
            options = self.options()
            assert options, f"instance waits for nothing: {view.threads}"
            event, thread = options[self.choices[i % len(self.choices)] % len(options)]
            if event == "tick":
                self.clock.advance(days=2)
                self.transition(lambda e: e.run_due())
            else:
                self.transition(
                    lambda e, ev=event, th=thread, v=i: e.send("p", ev, {"value": v}, thread=th)
                )
        CRASHER.on = False
        view = self.engine.get("p")
        history = [(h.kind, h.thread, h.name, h.message) for h in self.engine.history("p")]
        self.engine.close()
        return {
            "status": view.status,
            "error": view.error,
            "result": view.result,
            "data": view.data,
            "history": history,
            "executed": list(EXECUTED),
        }


@pytest.mark.slow
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=trees(), choices=st.lists(st.integers(0, 5), min_size=1, max_size=8))
def test_reloading_at_every_transition_or_crashing_at_every_step_changes_nothing(
    tmp_path: Path, spec: list[Any], choices: list[int]
) -> None:
    straight = Drive(tmp_path, spec, choices, fresh=False, crash=False).run()
    assert straight["status"] == "completed", straight
    committed_steps = [name for kind, _, name, _ in straight["history"] if kind == "step"]
    assert straight["executed"] == committed_steps  # nothing ran twice

    reloaded = Drive(tmp_path, spec, choices, fresh=True, crash=False).run()
    assert reloaded == straight

    crashing = Drive(tmp_path, spec, choices, fresh=True, crash=True)
    crashed = crashing.run()
    assert crashing.crashes == len(committed_steps)  # every step crashed once, then committed
    assert {**crashed, "executed": None} == {**straight, "executed": None}
    assert crashed["executed"] == [s for s in committed_steps for _ in (1, 2)]

    kinds = {kind for kind, *_ in straight["history"]}
    event(f"steps committed: {len(committed_steps) // 10 * 10}+")
    event(f"transitions: {len([k for k in straight['history'] if k[0] in ('event', 'decision')])}")
    for kind in ("thread started", "waiting", "event"):
        event(f"history has {kind!r}: {kind in kinds}")
