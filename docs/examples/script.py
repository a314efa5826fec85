"""signoff in a plain script: start an expense, decide it, read the outcome.

python docs/examples/script.py
"""

from __future__ import annotations

import sys
from datetime import timedelta

from signoff.engine import (
    Approval,
    Decision,
    Engine,
    If,
    On,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
)


class Expense(Workflow):
    amount: int = 0
    approved: bool = False
    reason: str = ""
    paid: bool = False

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decided",
                    Approval(
                        approve=self.on_approve,
                        deny=self.on_deny,
                        title=f"Expense of {self.amount} EUR",
                        approvers=["alice"],
                    ),
                ),
                On("timeout", Timeout(after=timedelta(days=3)), Return(error="timed out")),
            ),
            If(self.approved, Step("pay", self.pay), Return("paid")),
            Return(error=f"denied: {self.reason}"),
        )

    def on_approve(self, decision: Decision) -> None:
        self.approved = True

    def on_deny(self, decision: Decision) -> None:
        self.reason = decision.reason

    def pay(self) -> None:
        self.paid = True  # call the payment service here: a step may run again after a crash


def main(url: str) -> None:
    engine = Engine(url, workflows=[Expense])
    iid = engine.start(Expense, data={"amount": 120})
    print(engine.get(iid).status)  # waiting
    engine.send(iid, "decided", {"approved": True}, actor="alice")
    view = engine.get(iid)
    print(view.status, view.result)  # completed paid
    for entry in engine.history(iid):
        print(
            entry.at.isoformat(timespec="seconds"), entry.kind, entry.name or "", entry.actor or ""
        )
    engine.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///expenses.db")
