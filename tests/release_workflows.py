""" "Shop" in three releases, for tests/test_releases.py (and, as `signoff worker --workflows
tests.release_workflows`, for its processes: SIGNOFF_TEST_RELEASE says which release a process
runs, 1 by default).

1: wait "approval" (approve | expire), then ship.
2: renames "approval" to "manager approval" and "approve" to "sign" (declared), and adds a wait
   "legal review" (cleared | lapse) before shipping.
3: like 2, but drops "legal review" (a removal that is meant).

Each timer's case runs a step that marks the log, and the wait is left for the next statement,
so an instance always ends completed; its log says what happened: a approved, d denied,
x approval expired, c cleared, l review lapsed, s shipped.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from signoff.engine import (
    Approval,
    Decision,
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


class ShopV1(Workflow):
    workflow_name = "Shop"
    log: str = ""
    approve_after: float = 3600.0  # seconds
    lapse_after: float = 3600.0

    def approval(self, event: str = "approve", **renamed: Any) -> On:
        return On(
            event,
            Approval(approve=self.decided, approvers=["alice"], slack_channel="C0APPROVALS"),
            **renamed,
        )

    def expiry(self) -> On:
        return On(
            "expire",
            Timeout(after=timedelta(seconds=self.approve_after)),
            Step("expired", self.mark("x")),
        )

    def definition(self) -> Statement:
        return S(
            Wait("approval", self.approval(), self.expiry()),
            Step("ship", self.mark("s")),
            Return(self.log),
        )

    def decided(self, decision: Decision) -> None:
        self.log += "a" if decision.approved else "d"

    def cleared(self, note: Any) -> None:
        self.log += "c"

    def mark(self, letter: str) -> Any:
        def act() -> None:
            self.log += letter

        return act


class ShopV2(ShopV1):
    def renamed_wait(self) -> Wait:
        return Wait(
            "manager approval",
            self.approval("sign", renamed_from=["approve"]),
            self.expiry(),
            renamed_from=["approval"],
        )

    def definition(self) -> Statement:
        return S(
            self.renamed_wait(),
            Wait(
                "legal review",
                On("cleared", Input(Note, self.cleared)),
                On(
                    "lapse",
                    Timeout(after=timedelta(seconds=self.lapse_after)),
                    Step("lapsed", self.mark("l")),
                ),
            ),
            Step("ship", self.mark("s")),
            Return(self.log),
        )


class ShopV3(ShopV2):
    def definition(self) -> Statement:
        return S(self.renamed_wait(), Step("ship", self.mark("s")), Return(self.log))


RELEASES: dict[str, type[Workflow]] = {"1": ShopV1, "2": ShopV2, "3": ShopV3}
WORKFLOWS = [RELEASES[os.environ.get("SIGNOFF_TEST_RELEASE", "1")]]
