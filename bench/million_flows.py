"""The workflows `bench/million.py` loads a million of, importable by the `signoff worker` and
`signoff check` processes it starts (`--workflows bench.million_flows`)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from signoff.engine import Approval, On, Return, S, Step, Timeout, Wait, Workflow


class Claim(Workflow):
    """An expense claim: checked, then waits up to a week for the employee's manager."""

    summary_fields: ClassVar[list[str]] = ["amount", "employee"]

    amount: int = 0
    employee: str = ""
    manager: str = ""
    approved: bool = False

    def definition(self) -> S:
        return S(
            Step("check", self.check),
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(approvers=[self.manager], title=f"Claim of {self.employee}"),
                ),
                On("expired", Timeout(after=timedelta(days=7)), Return(error="expired")),
            ),
            Return(self.approved),
        )

    def check(self) -> None:
        if self.amount < 0:
            raise ValueError("a claim is never negative")
