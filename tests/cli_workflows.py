"""Workflows the command-line tests drive (`--workflows tests.cli_workflows`)."""

from __future__ import annotations

from datetime import timedelta

from signoff.engine import Approval, Decision, On, Retry, Return, S, Step, Timeout, Wait, Workflow

BROKEN = {"upstream": True}  # the tests repair the upstream between two commands


class Purchase(Workflow):
    amount: int = 0
    approved: bool = False

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        approve=self.on_approve,
                        deny=self.on_deny,
                        approvers=["alice"],
                        remind_every=timedelta(hours=4),
                    ),
                ),
                On("timeout", Timeout(after=timedelta(days=1)), Return(error="timed out")),
            ),
            Return("approved" if self.approved else "denied"),
        )

    def on_approve(self, decision: Decision) -> None:
        self.approved = True

    def on_deny(self, decision: Decision) -> None:
        self.approved = False


class Fragile(Workflow):
    fetched: bool = False

    def definition(self) -> S:
        return S(Step("fetch", self.fetch, retry=Retry(attempts=1)), Return("fetched"))

    def fetch(self) -> None:
        if BROKEN["upstream"]:
            raise ConnectionError("upstream is down")
        self.fetched = True


WORKFLOWS = [Purchase, Fragile]
