"""The workflows `bench/scale.py` measures, importable by the worker processes it starts
(`signoff worker --workflows bench.scale_flows`)."""

from __future__ import annotations

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
