"""The workflows `bench/scale.py` measures, importable by the worker processes it starts
(`signoff worker --workflows bench.scale_flows`)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from signoff.engine import Approval, On, Return, S, Step, Timeout, Wait, Workflow

STEPS = 20


class Twenty(Workflow):
    """Twenty steps in a row, each bumping a counter."""

    count: int = 0

    def definition(self) -> S:
        return S(*(Step(f"s{i}", self.bump) for i in range(STEPS)))

    def bump(self) -> None:
        self.count += 1


class Expense(Workflow):
    """A step, an approval, a step: the approval workflow DBOS runs as step, recv, step."""

    amount: int = 0
    approved: bool = False

    def definition(self) -> S:
        return S(
            Step("notify", self.noop),
            Wait("approval", On("decided", Approval(approve=self.on_approve))),
            Step("pay", self.noop),
            Return(self.approved),
        )

    def noop(self) -> None:
        pass

    def on_approve(self, _decision: object) -> None:
        self.approved = True


class Parked(Workflow):
    """Waits for an approval for a week: what the 100k waiting instances are."""

    amount: int = 0

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decided", Approval()),
                On("expired", Timeout(after=timedelta(days=7)), Return(error="expired")),
            ),
            Return(),
        )


class Chaser(Workflow):
    """Timer-driven work: wait `after_ms`, then call a service (a step that waits `call_ms`
    for its answer) and record it."""

    after_ms: int = 1000
    call_ms: int = 100
    calls: int = 0

    def definition(self) -> S:
        return S(
            Wait("pause", On("timeout", Timeout(after=timedelta(milliseconds=self.after_ms)))),
            Step("call", self.call),
            Step("record", self.record),
        )

    def call(self) -> None:
        time.sleep(self.call_ms / 1000)  # a request to another service
        self.calls += 1

    def record(self) -> None:
        self.calls += 1


class Held(Workflow):
    """What bench/takeover.py kills a worker in the middle of: a step, a timer, then a step
    that hangs in a process with $SIGNOFF_BENCH_HANG set (the worker to be killed) and returns
    at once elsewhere, and a last step. Each run of a step appends "<pid> <label> <step>" to
    the file $SIGNOFF_BENCH_FIRED names, committed or not."""

    label: str = ""
    after_ms: int = 1000

    def definition(self) -> S:
        return S(
            Step("before", lambda: self.ran("before")),
            Wait("pause", On("timeout", Timeout(after=timedelta(milliseconds=self.after_ms)))),
            Step("work", self.work),
            Step("after", lambda: self.ran("after")),
        )

    def ran(self, step: str) -> None:
        path = os.environ.get("SIGNOFF_BENCH_FIRED")
        if path:
            with open(path, "a") as out:
                out.write(f"{os.getpid()} {self.label} {step}\n")

    def work(self) -> None:
        self.ran("work")
        if os.environ.get("SIGNOFF_BENCH_HANG"):
            time.sleep(600)
