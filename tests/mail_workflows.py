"""Workflows of tests/test_mail.py, importable by the subprocesses it starts."""

from __future__ import annotations

from datetime import timedelta

from signoff.engine import Approval, On, Return, S, Timeout, Wait, Workflow


class Purchase(Workflow):
    """One approval by alice, bob's address and the finance group, reminded hourly, escalated
    to dave after two hours, decided within a day."""

    item: str = "a <b>chair</b>"
    amount: int = 120
    note: str = "internal"
    summary_fields = ["item", "amount"]

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        title=f"Buy {self.item}",
                        text="For the new office.\nUrgent.",
                        approvers=["alice", "bob@example.com", "group:finance"],
                        remind_every=timedelta(hours=1),
                        escalate_after=timedelta(hours=2),
                        escalate_to=["dave"],
                    ),
                ),
                On("timeout", Timeout(after=timedelta(days=1)), Return(error="timed out")),
            ),
            Return("bought"),
        )


class TwoSteps(Workflow):
    """Two approvals by alice, one after the other."""

    def definition(self) -> S:
        return S(
            Wait("first", On("one", Approval(title="First", approvers=["alice"]))),
            Wait("second", On("two", Approval(title="Second", approvers=["alice"]))),
            Return("done"),
        )


WORKFLOWS = [Purchase, TwoSteps]


class Announced(Workflow):
    """One approval by alice or bob, announced in a Slack channel (tests/test_slack_outbox.py)."""

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        title="Announced",
                        approvers=["alice", "bob"],
                        required=2,
                        slack_channel="C0APPROVALS",
                    ),
                ),
            ),
            Return("done"),
        )
