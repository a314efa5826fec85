"""A workflow whose first step holds until the test lets it go, so events can arrive before
its waits have begun (tests/test_events.py; the CLI loads it with --workflows)."""

from __future__ import annotations

import threading

from signoff.engine import (
    Approval,
    Decision,
    Handler,
    If,
    On,
    Return,
    S,
    Statement,
    Step,
    Wait,
    Workflow,
)

STEP_RUNNING = threading.Event()
STEP_MAY_GO = threading.Event()


class Held(Workflow):
    skip: bool = False
    approved: bool = False

    def definition(self) -> Statement:
        return S(
            Step("prepare", self.prepare),
            If(self.skip, Return("skipped")),
            Wait(
                "approval",
                On("decided", Approval(approve=self.ok, approvers=["alice", "bob"])),
            ),
            Wait("ping", On("pinged", Handler())),
            Return(self.approved),
        )

    def prepare(self) -> None:
        STEP_RUNNING.set()
        STEP_MAY_GO.wait(10)

    def ok(self, decision: Decision) -> None:
        self.approved = True
