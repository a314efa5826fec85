"""One workflow, "Order", in the versions a team deploys over time, and "Legacy", which a later
deployment drops. Used by tests/test_deploy.py and the `signoff check` tests of tests/test_cli.py.

v1: reserve, wait "approval" (approve | expire after 1h), wait "shipping" (shipped | lost), ship.
v2: renames "approval" to "manager approval" and its event "approve" to "sign", both declared;
    adds a step "audit" before shipping.
v3 (bad): renames "manager approval" to "sign-off" without renamed_from, drops the "lost" case
    and the Legacy workflow.
v3 (good): the same rename declared for both old names; keeps "lost" and Legacy; approvers and
    the timeout change (warnings, not failures).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    Input,
    On,
    Return,
    S,
    Statement,
    Step,
    Timeout,
    Wait,
    Workflow,
)


class Note(BaseModel):
    note: str = ""


class OrderV1(Workflow):
    workflow_name = "Order"
    log: str = ""
    broken: bool = False

    def definition(self) -> Statement:
        return S(
            Step("reserve", self.reserve, retry=1),
            Wait(
                "approval",
                On("approve", Approval(approve=self.approved, approvers=["alice"])),
                On("expire", Timeout(after=timedelta(hours=1)), Return(error="expired")),
            ),
            Wait(
                "shipping",
                On("shipped", Input(Note, self.noted)),
                On("lost", Input(Note, self.noted), Return(error="lost")),
            ),
            Step("ship", self.mark("s")),
            Return(self.log),
        )

    def reserve(self) -> None:
        if self.broken:
            raise RuntimeError("the warehouse is down")
        self.log += "r"

    def approved(self, decision: Decision) -> None:
        self.log += "a"

    def noted(self, note: Any) -> None:
        self.log += "n"

    def mark(self, letter: str) -> Any:
        def act() -> None:
            self.log += letter

        return act


class OrderV2(OrderV1):
    def definition(self) -> Statement:
        return S(
            Step("reserve", self.reserve, retry=1),
            Wait(
                "manager approval",
                On(
                    "sign",
                    Approval(approve=self.approved, approvers=["alice"]),
                    renamed_from=["approve"],
                ),
                On("expire", Timeout(after=timedelta(hours=1)), Return(error="expired")),
                renamed_from=["approval"],
            ),
            Step("audit", self.mark("u")),
            Wait(
                "shipping",
                On("shipped", Input(Note, self.noted)),
                On("lost", Input(Note, self.noted), Return(error="lost")),
            ),
            Step("ship", self.mark("s")),
            Return(self.log),
        )


class OrderV3Bad(OrderV1):
    def definition(self) -> Statement:
        return S(
            Step("reserve", self.reserve, retry=1),
            Wait(
                "sign-off",
                On(
                    "sign",
                    Approval(approve=self.approved, approvers=["alice"]),
                    renamed_from=["approve"],
                ),
                On("expire", Timeout(after=timedelta(hours=1)), Return(error="expired")),
            ),
            Step("audit", self.mark("u")),
            Wait("shipping", On("shipped", Input(Note, self.noted))),
            Step("ship", self.mark("s")),
            Return(self.log),
        )


class OrderV3(OrderV1):
    def definition(self) -> Statement:
        return S(
            Step("reserve", self.reserve, retry=1),
            Wait(
                "sign-off",
                On(
                    "sign",
                    Approval(approve=self.approved, approvers=["alice", "bob"]),
                    renamed_from=["approve"],
                ),
                On("expire", Timeout(after=timedelta(hours=2)), Return(error="expired")),
                renamed_from=["manager approval", "approval"],
            ),
            Step("audit", self.mark("u")),
            Wait(
                "shipping",
                On("shipped", Input(Note, self.noted)),
                On("lost", Input(Note, self.noted), Return(error="lost")),
            ),
            Step("ship", self.mark("s")),
            Return(self.log),
        )


class Legacy(Workflow):
    def definition(self) -> Statement:
        return S(Wait("forever", On("poke", Input(Note, lambda _: None))))


def seed(url: str, clock: Any) -> None:
    """Instances spread over v1 and v2 of Order, and one of Legacy:

    a1, a2  waiting at "approval" (v1; untouched since, so stored under the old name)
    a3      approved under v2 through the old event name, so carried over: at "shipping"
    s1      approved under v1: at "shipping"
    n1      started under v2: at "manager approval"
    f1      failed at "reserve" (v1)
    l1      Legacy, waiting at "forever"
    done1   completed (v1): never checked
    """
    v1 = Engine(url, [OrderV1, Legacy], clock=clock)
    try:
        for iid in ("a1", "a2", "a3", "s1", "done1"):
            v1.start("Order", id=iid)
        v1.start("Order", {"broken": True}, id="f1")
        v1.start("Legacy", id="l1")
        v1.send("s1", "approve", {"approved": True}, actor="alice")
        v1.send("done1", "approve", {"approved": True}, actor="alice")
        v1.send("done1", "shipped", {})
    finally:
        v1.close()
    clock.advance(minutes=10)
    v2 = Engine(url, [OrderV2, Legacy], clock=clock)
    try:
        v2.start("Order", id="n1")
        v2.send("a3", "approve", {"approved": True}, actor="alice")
    finally:
        v2.close()
