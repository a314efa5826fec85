"""Handlers: Approval (who may decide, deny needs a reason, the Decision it hands over,
reminders and escalation), Input (a validated payload), and a handler of one's own."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    EventRejected,
    Handler,
    Input,
    NotAllowed,
    On,
    Return,
    S,
    Step,
    Wait,
    WaitInfo,
    Workflow,
)
from signoff.engine import Vote as Ballot

from tests.conftest import Clock

DECISIONS: list[Decision] = []


class Expense(Workflow):
    amount: int = 0
    approved: bool = False
    reason: str = ""

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "approval",
                    Approval(
                        approve=self.on_approve,
                        deny=self.on_deny,
                        title=f"Expense of {self.amount}",
                        approvers=["alice", "U-CAROL"],
                        remind_every=timedelta(hours=4),
                        escalate_after=timedelta(hours=6),
                        escalate_to=["boss"],
                    ),
                ),
            ),
            outcome(self),
        )

    def on_approve(self, decision: Decision) -> None:
        DECISIONS.append(decision)
        self.approved = True

    def on_deny(self, decision: Decision) -> None:
        DECISIONS.append(decision)
        self.reason = decision.reason


def outcome(wf: Expense) -> Return:
    return Return("approved") if wf.approved else Return(error=f"denied: {wf.reason}")


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Engine:
    DECISIONS.clear()
    return Engine(
        sqlite_url, [Expense], clock=clock, slack_users={"carol": "U-CAROL", "alice": "U-ALICE"}
    )


def test_an_approver_approves_and_the_workflow_gets_the_whole_decision(
    engine: Engine, clock: Clock
) -> None:
    iid = engine.start(Expense, {"amount": 120})
    wait = engine.get(iid).thread("main").waits[0]
    assert (wait.kind, wait.info["title"], wait.info["approvers"]) == (
        "approval",
        "Expense of 120",
        ["alice", "U-CAROL"],
    )

    clock.advance(minutes=5)
    got = engine.send(
        iid, "approval", {"approved": True, "reason": " fine "}, actor="alice", via="web"
    )
    assert (got.status, got.result) == ("completed", "approved")
    vote = Ballot(actor="alice", approved=True, reason="fine", via="web", at=clock.now)
    expected = Decision(
        approved=True, actor="alice", reason="fine", via="web", at=clock.now, votes=(vote,)
    )
    assert list(DECISIONS) == [expected]
    entry = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (entry.name, entry.actor, entry.via, entry.message, entry.at) == (
        "approval",
        "alice",
        "web",
        "approved: fine",
        clock.now,
    )


def test_deny_needs_a_reason_and_the_reason_reaches_the_workflow(engine: Engine) -> None:
    iid = engine.start(Expense)
    before = engine.get(iid)
    for payload in ({"approved": False}, {"approved": False, "reason": "   "}):
        with pytest.raises(EventRejected, match="reason is required to deny"):
            engine.send(iid, "approval", payload, actor="alice")
    with pytest.raises(EventRejected, match='"approved": true or false'):
        engine.send(iid, "approval", {"approved": "yes"}, actor="alice")
    assert engine.get(iid) == before

    got = engine.send(
        iid, "approval", {"approved": False, "reason": "over budget"}, actor="alice", via="slack"
    )
    assert (got.status, got.error) == ("completed", "denied: over budget")
    assert [(d.approved, d.actor, d.reason, d.via) for d in DECISIONS] == [
        (False, "alice", "over budget", "slack")
    ]


@pytest.mark.parametrize("actor", ["alice", "U-ALICE", "carol", "U-CAROL"])
def test_approvers_may_be_named_by_user_name_or_slack_id(engine: Engine, actor: str) -> None:
    iid = engine.start(Expense)
    assert engine.send(iid, "approval", {"approved": True}, actor=actor).result == "approved"


@pytest.mark.parametrize("actor", ["mallory", "U-MALLORY"])
def test_anyone_else_is_refused_and_nothing_changes(engine: Engine, actor: str | None) -> None:
    iid = engine.start(Expense)
    before, history = engine.get(iid), engine.history(iid)
    with pytest.raises(NotAllowed, match="may not decide this: only alice, U-CAROL may"):
        engine.send(iid, "approval", {"approved": True}, actor=actor)
    assert engine.get(iid) == before
    assert engine.history(iid) == history
    assert DECISIONS == []


def test_reminders_and_escalation_widen_who_may_decide(engine: Engine, clock: Clock) -> None:
    iid = engine.start(Expense)
    start = clock.now
    assert engine.get(iid).due_at == start + timedelta(hours=4)

    engine.run_due(clock.advance(hours=4))
    wait = engine.get(iid).thread("main").waits[0]
    assert wait.stored is not None and wait.stored["reminders"] == 1
    assert wait.due_at == start + timedelta(hours=6)
    with pytest.raises(NotAllowed):
        engine.send(iid, "approval", {"approved": True}, actor="boss")

    engine.run_due(clock.advance(hours=2))
    wait = engine.get(iid).thread("main").waits[0]
    assert wait.stored is not None and wait.stored["escalated"] is True
    kinds = [(h.kind, h.via) for h in engine.history(iid) if h.kind in ("reminder", "escalated")]
    assert kinds == [("reminder", "timer"), ("escalated", "timer")]
    waiting = engine.open_approvals()
    assert [w["approvers"] for w in waiting] == [["alice", "U-CAROL", "boss"]]

    got = engine.send(iid, "approval", {"approved": True}, actor="boss")
    assert got.result == "approved"


# --- Input -----------------------------------------------------------------------------------


class Address(BaseModel):
    street: str = Field(min_length=1)
    number: int = Field(gt=0)


class Onboarding(Workflow):
    street: str = ""
    number: int = 0
    log: str = ""

    def definition(self) -> S:
        return S(
            Wait("address", On("address", Input(Address, self.took))),
            Step("confirm", self.confirm),
            Return(f"{self.street} {self.number}"),
        )

    def took(self, value: Address) -> None:
        self.street, self.number = value.street, value.number
        self.log += "took "

    def confirm(self) -> None:
        self.log += "confirmed"


def test_input_applies_a_validated_payload(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Onboarding])
    iid = engine.start(Onboarding)
    schema = engine.get(iid).thread("main").waits[0].info["schema"]
    assert schema["required"] == ["street", "number"]
    got = engine.send(iid, "address", {"street": "Main St", "number": "12"})
    assert (got.status, got.result, got.data["log"]) == (
        "completed",
        "Main St 12",
        "took confirmed",
    )


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"street": "Main St"}, "number: Field required"),
        ({"street": "", "number": 3}, "street: String should have at least 1 character"),
        ({"street": "Main St", "number": -1}, "number: Input should be greater than 0"),
        ({"street": "Main St", "number": "twelve"}, "number: Input should be a valid integer"),
    ],
)
def test_a_bad_input_is_rejected_and_changes_nothing(
    sqlite_url: str, payload: dict[str, Any], problem: str
) -> None:
    engine = Engine(sqlite_url, [Onboarding])
    iid = engine.start(Onboarding)
    before, history = engine.get(iid), engine.history(iid)
    with pytest.raises(EventRejected) as rejected:
        engine.send(iid, "address", payload)
    assert str(rejected.value).startswith("invalid input: ")
    assert problem in str(rejected.value)
    assert engine.get(iid) == before
    assert engine.history(iid) == history


def test_a_payload_that_is_not_a_json_object_is_rejected(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Onboarding])
    iid = engine.start(Onboarding)
    with pytest.raises(EventRejected, match="JSON object"):
        engine.send(iid, "address", ["Main St"])  # type: ignore[arg-type]
    with pytest.raises(EventRejected, match="not JSON"):
        engine.send(iid, "address", {"when": datetime(2026, 1, 1)})


# --- a handler of one's own ------------------------------------------------------------------


class Vote(Handler):
    """Accepts a ballot only when it names `needed` distinct voters; setup stores the quorum."""

    kind = "vote"

    def __init__(self, needed: int, on_vote: Any) -> None:
        self.needed, self.on_vote = needed, on_vote

    def setup(self, wait: WaitInfo) -> dict[str, Any]:
        return {"needed": self.needed, "opened": wait.began_at.isoformat()}

    def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        voters = payload.get("voters")
        if not isinstance(voters, list) or len(set(voters)) < (wait.stored or {})["needed"]:
            raise EventRejected(f"needs {self.needed} distinct voters")
        self.on_vote(sorted(set(voters)), actor)

    def describe(self) -> dict[str, Any]:
        return {"needed": self.needed}


def test_a_custom_handler_sets_up_validates_and_applies(sqlite_url: str) -> None:
    class Board(Workflow):
        voters: list[str] = []
        log: str = ""

        def definition(self) -> S:
            return S(Wait("vote", On("vote", Vote(2, self.voted))), Return(self.log))

        def voted(self, voters: list[str], actor: str | None) -> None:
            self.voters = voters
            self.log = f"{','.join(voters)} via {actor}"

    engine = Engine(sqlite_url, [Board], operators=["clerk"])
    iid = engine.start(Board)
    wait = engine.get(iid).thread("main").waits[0]
    assert (wait.kind, wait.info, wait.stored and wait.stored["needed"]) == (
        "vote",
        {"needed": 2},
        2,
    )
    with pytest.raises(EventRejected, match="needs 2 distinct voters"):
        engine.send(iid, "vote", {"voters": ["a", "a"]})
    got = engine.send(iid, "vote", {"voters": ["b", "a"]}, actor="clerk")
    assert (got.status, got.result, got.data["voters"]) == (
        "completed",
        "a,b via clerk",
        ["a", "b"],
    )


def test_a_handler_that_raises_an_unexpected_error_rejects_the_event(sqlite_url: str) -> None:
    class Buggy(Handler):
        def handle(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
            raise KeyError("oops")

    class UsesBuggy(Workflow):
        def definition(self) -> S:
            return S(Wait("w", On("e", Buggy())))

    engine = Engine(sqlite_url, [UsesBuggy])
    iid = engine.start(UsesBuggy)
    before = engine.get(iid)
    with pytest.raises(EventRejected, match="refused the event: KeyError"):
        engine.send(iid, "e", {})
    assert engine.get(iid) == before
