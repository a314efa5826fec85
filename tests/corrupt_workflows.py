"""The workflow tests/test_corrupt.py drives (and `signoff check --workflows
tests.corrupt_workflows` reads): an expense alice approves within the hour."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from signoff.engine import Approval, Decision, On, Return, S, Timeout, Wait, Workflow


class Expense(Workflow):
    amount: int = 0
    approved: bool = False
    summary_fields: ClassVar[list[str]] = ["amount"]

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decision", Approval(approve=self.yes, deny=self.no, approvers=["alice"])),
                On("timeout", Timeout(after=timedelta(hours=1)), Return(error="timed out")),
            ),
            Return("approved" if self.approved else "denied"),
        )

    def yes(self, decision: Decision) -> None:
        self.approved = True

    def no(self, decision: Decision) -> None:
        self.approved = False


WORKFLOWS = [Expense]
