"""Workflows the permission tests drive on every surface
(`--workflows tests.authority_workflows`)."""

from __future__ import annotations

from signoff.engine import (
    Approval,
    Decision,
    Handler,
    On,
    Retry,
    Return,
    S,
    Step,
    Wait,
    Workflow,
)


class Spend(Workflow):
    """alice or bob approves, but not the one who started it (bob, in the tests); "note" is
    an event only operators send."""

    amount: int = 0
    approved: bool = False

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(approve=self.yes, approvers=["alice", "bob"], allow_self=False),
                ),
                On("note", Handler()),
            ),
            Step("pay", lambda: None),
            Return("paid" if self.approved else "not paid"),
        )

    def yes(self, decision: Decision) -> None:
        self.approved = True


class Broken(Workflow):
    """Fails at once: something for an operator to retry."""

    def definition(self) -> S:
        return S(Step("fetch", self.fetch, retry=Retry(attempts=1)), Return("ok"))

    def fetch(self) -> None:
        raise ConnectionError("upstream down")


WORKFLOWS = [Spend, Broken]
