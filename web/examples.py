"""Example workflows for `make run` / `signoff serve`: enough to see every part of the dashboard.

- `Expense`: an approval with reminders, escalation and a timeout.
- `Onboarding`: an `Input` form, a parallel `Go` thread, a `WaitFor` and a plain event.
- `NightlyReport`: a step that fails sometimes (a flaky upstream), so retry can be shown.
- `Purchase`: an approval that needs two approvers out of three (a quorum).
- `ToolCall`: a support "agent" proposes a refund; `gate` makes the call wait for a person,
  who may lower the amount before approving (`issue_refund`).

`seed(engine)` fills an empty demo database with instances in every interesting state.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import BaseModel, Field
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    Go,
    Handler,
    If,
    Input,
    On,
    Retry,
    Return,
    S,
    Statement,
    Step,
    Timeout,
    Wait,
    WaitFor,
    Workflow,
)
from signoff.engine.agents import ToolCall, gate, register


class Expense(Workflow):
    """An expense claim. Alice approves or denies; a reminder goes out every 4 hours, Carol
    may decide too after a day, and without a decision the claim lapses after three days."""

    summary_fields: ClassVar[list[str]] = ["amount", "employee"]

    employee: str = "bob"
    amount: int = Field(0, ge=0, description="in EUR")
    description: str = ""
    approved: bool = Field(False, json_schema_extra={"readOnly": True})
    decided_by: str = Field("", json_schema_extra={"readOnly": True})
    reason: str = Field("", json_schema_extra={"readOnly": True})
    paid: bool = Field(False, json_schema_extra={"readOnly": True})

    def instance_title(self) -> str:
        return f"Expense: {self.amount} EUR for {self.employee}"

    def definition(self) -> Statement:
        return S(
            Step("record claim", self.record),
            Wait(
                "manager approval",
                On(
                    "decision",
                    Approval(
                        approve=self.on_approve,
                        deny=self.on_deny,
                        title=f"Expense: {self.amount} EUR for {self.employee}",
                        text=self.description or None,
                        approvers=["alice"],
                        remind_every=timedelta(hours=4),
                        escalate_after=timedelta(days=1),
                        escalate_to=["carol"],
                        slack_channel="#approvals",
                    ),
                ),
                On(
                    "timeout",
                    Timeout(after=timedelta(days=3)),
                    Step("notify lapsed", self.record),
                    Return(error="no decision within 3 days"),
                ),
            ),
            If(not self.approved, Return(error=f"denied by {self.decided_by}: {self.reason}")),
            Step("pay out", self.pay),
            Return({"paid": self.amount, "to": self.employee}),
        )

    def record(self) -> None:
        pass

    def on_approve(self, decision: Decision) -> None:
        self.approved, self.decided_by = True, decision.actor or ""

    def on_deny(self, decision: Decision) -> None:
        self.decided_by, self.reason = decision.actor or "", decision.reason

    def pay(self) -> None:
        self.paid = True


class Equipment(BaseModel):
    laptop: Literal["MacBook Pro 14", "ThinkPad X1 Carbon", "Framework 13"]
    monitors: int = Field(1, ge=0, le=3)
    notes: str = ""


class Onboarding(Workflow):
    """A new colleague: IT sets up accounts in parallel while the manager picks equipment;
    the first day starts once both are done."""

    summary_fields: ClassVar[list[str]] = ["person", "team"]

    person: str = "dana"
    team: str = "platform"
    laptop: str = Field("", json_schema_extra={"readOnly": True})
    monitors: int = Field(0, json_schema_extra={"readOnly": True})
    accounts_ready: bool = Field(False, json_schema_extra={"readOnly": True})
    trained: bool = Field(False, json_schema_extra={"readOnly": True})

    def instance_title(self) -> str:
        return f"Onboarding {self.person} ({self.team})"

    def definition(self) -> Statement:
        return S(
            Go(
                "accounts",
                S(
                    Step("create accounts", self.create_accounts),
                    Wait(
                        "security training",
                        On("training done", Handler(), Step("mark trained", self.mark_trained)),
                    ),
                ),
                id="it",
            ),
            Wait("equipment", On("equipment", Input(Equipment, self.set_equipment))),
            Step("order equipment", self.order),
            WaitFor("accounts ready", lambda: self.accounts_ready and self.trained),
            Return({"person": self.person, "laptop": self.laptop}),
        )

    def create_accounts(self) -> None:
        self.accounts_ready = True

    def mark_trained(self) -> None:
        self.trained = True

    def set_equipment(self, equipment: Equipment) -> None:
        self.laptop, self.monitors = equipment.laptop, equipment.monitors

    def order(self) -> None:
        pass


class FlakyUpstream:
    """The data warehouse the report reads: it times out now and then. `fail_next` makes the
    next calls fail for sure (demos and tests), `failure_rate` the rest at random."""

    def __init__(self, failure_rate: float = 0.3) -> None:
        self.failure_rate = failure_rate
        self.fail_next = 0

    def fetch(self, day: str) -> int:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TimeoutError(f"warehouse did not answer for {day or 'today'} within 30 s")
        if random.random() < self.failure_rate:
            raise TimeoutError(f"warehouse did not answer for {day or 'today'} within 30 s")
        return 1000 + len(day) * 37


UPSTREAM = FlakyUpstream()


class NightlyReport(Workflow):
    """Fetches figures from a flaky warehouse (two tries, then an operator retries), renders
    the report and waits for someone to publish it, or publishes it by itself after 2 hours."""

    summary_fields: ClassVar[list[str]] = ["day"]

    day: str = "2026-01-05"
    rows: int = Field(0, json_schema_extra={"readOnly": True})
    published_by: str = Field("", json_schema_extra={"readOnly": True})
    rejected: str = Field("", json_schema_extra={"readOnly": True})

    def instance_title(self) -> str:
        return f"Nightly report of {self.day}"

    def definition(self) -> Statement:
        return S(
            Step(
                "fetch figures", self.fetch, retry=Retry(attempts=2, backoff=timedelta(seconds=30))
            ),
            Step("render report", self.render),
            Wait(
                "review",
                On(
                    "publish",
                    Approval(
                        approve=self.on_publish,
                        deny=self.on_reject,
                        title=f"Publish the report of {self.day}",
                        require_reason=True,
                    ),
                ),
                On("auto publish", Timeout(after=timedelta(hours=2))),
            ),
            If(bool(self.rejected), Return(error=f"not published: {self.rejected}")),
            Return({"rows": self.rows, "published_by": self.published_by or "timer"}),
        )

    def fetch(self) -> None:
        self.rows = UPSTREAM.fetch(self.day)

    def render(self) -> None:
        pass

    def on_publish(self, decision: Decision) -> None:
        self.published_by = decision.actor or ""

    def on_reject(self, decision: Decision) -> None:
        self.rejected = f"{decision.actor}: {decision.reason}"


class Purchase(Workflow):
    """A purchase over the team's budget: two of the three budget holders must approve it; a
    single denial stops it."""

    summary_fields: ClassVar[list[str]] = ["item", "cost"]

    item: str = "GPU server"
    cost: int = Field(18000, ge=0, description="in EUR")
    ordered: bool = Field(False, json_schema_extra={"readOnly": True})
    reason: str = Field("", json_schema_extra={"readOnly": True})

    def instance_title(self) -> str:
        return f"Buy {self.item} for {self.cost} EUR"

    def definition(self) -> Statement:
        return S(
            Wait(
                "budget approval",
                On(
                    "decision",
                    Approval(
                        approve=self.on_approve,
                        deny=self.on_deny,
                        title=f"Buy {self.item} for {self.cost} EUR",
                        approvers=["alice", "carol", "dave"],
                        required=2,
                    ),
                ),
            ),
            If(not self.ordered, Return(error=f"not bought: {self.reason}")),
            Return({"ordered": self.item}),
        )

    def on_approve(self, decision: Decision) -> None:
        self.ordered = True

    def on_deny(self, decision: Decision) -> None:
        self.reason = f"{decision.actor}: {decision.reason}"


def issue_refund(order: str, amount: int, note: str = "") -> dict[str, object]:
    """The support agent's tool: refund an order. Gated, it runs once a person approves."""
    return {"order": order, "refunded": amount, "note": note}


register(issue_refund)  # every process that loads the examples can run an approved refund


def agent_proposes_refund(engine: Engine) -> str:
    """The "agent" asks for a refund (the request, not waited on: the demo has no agent)."""
    refund = gate(engine, approvers=["alice"], timeout=timedelta(days=2))(issue_refund)
    door = refund.signoff_gate  # type: ignore[attr-defined]
    return str(door.request(("A-1042", 380), {"note": "parcel arrived broken"}, "demo-refund"))


WORKFLOWS: list[type[Workflow]] = [Expense, Onboarding, NightlyReport, Purchase, ToolCall]


def seed(engine: Engine) -> list[str]:
    """Fill an empty demo database with instances in every state worth seeing: an expense
    waiting for approval, a purchase with one of its two votes, a report whose step failed
    (to retry), an onboarding waiting for a form, an approved, a denied and a timed-out
    expense. Times are set back a little, so the pages read like a working day. Returns the
    ids; does nothing (and returns []) when the database has instances already."""
    if engine.counts():
        return []
    real = engine.clock
    now = real()
    rate, UPSTREAM.failure_rate = UPSTREAM.failure_rate, 0.0
    made: list[str] = []

    def at(ago: timedelta) -> None:
        engine.clock = lambda: now - ago

    try:
        at(timedelta(days=3, hours=2))  # lapses: its 3-day timeout has passed by now
        made.append(
            engine.start("Expense", {"employee": "gina", "amount": 15, "description": "Taxi"})
        )
        at(timedelta(hours=26))
        denied = engine.start(
            "Expense", {"employee": "frank", "amount": 2300, "description": "Conference"}
        )
        at(timedelta(hours=25))
        engine.send(
            denied,
            "decision",
            {"approved": False, "reason": "over the conference budget"},
            actor="alice",
            via="web",
        )
        at(timedelta(hours=6))
        approved = engine.start(
            "Expense", {"employee": "erin", "amount": 48, "description": "Team lunch"}
        )
        at(timedelta(hours=5, minutes=30))
        engine.send(approved, "decision", {"approved": True}, actor="alice", via="web")
        at(timedelta(hours=3))
        purchase = engine.start("Purchase", {"item": "GPU server", "cost": 18000})
        at(timedelta(hours=2))
        engine.send(purchase, "decision", {"approved": True}, actor="carol", via="web")
        at(timedelta(hours=1, minutes=10))
        UPSTREAM.fail_next = 2
        report = engine.start(
            "NightlyReport", {"day": (now - timedelta(days=1)).date().isoformat()}
        )
        at(timedelta(minutes=40))
        engine.run_due()  # its second try fails too: it waits for an operator's retry
        at(timedelta(minutes=30))
        onboarding = engine.start("Onboarding", {"person": "dana", "team": "platform"})
        at(timedelta(minutes=12))
        waiting = engine.start(
            "Expense", {"employee": "bob", "amount": 120, "description": "Train to Berlin"}
        )
        made += [denied, approved, purchase, report, onboarding, waiting]
        made.append(agent_proposes_refund(engine))
    finally:
        engine.clock = real
        UPSTREAM.failure_rate, UPSTREAM.fail_next = rate, 0
    engine.run_due()  # the lapsed expense times out now, at its deadline
    return made
