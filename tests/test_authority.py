"""Who may do what, asked of the engine directly: operators, approvers (groups, quorums,
separation of duties, escalation), start data, hard deadlines, busy instances, runtime mistakes
and hot updates. Every refusal leaves the instance, its data and its history as they were."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import BaseModel, Field
from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    Engine,
    EventRejected,
    For,
    Go,
    Handler,
    Input,
    InvalidData,
    NotAllowed,
    NotWaiting,
    On,
    ReadOnly,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
)
from signoff.engine.core.authority import Authority, checked_reason, read_only_fields

from tests.conftest import Clock

DECISIONS: list[Decision] = []
TRACE: list[str] = []
OPERATORS = ["carol", "group:ops"]
GROUPS = {"ops": ["dave"], "finance": ["erin", "frank"]}


class Note(BaseModel):
    text: str


class Claim(Workflow):
    """Two of alice, bob and the finance group approve; the starter may not; an hour's deadline."""

    amount: int = 0
    approved: Annotated[bool, ReadOnly] = False
    paid_to: str = Field("", json_schema_extra={"readOnly": True})
    note: str = ""

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        approve=self.yes,
                        deny=self.no,
                        approvers=["alice", "bob", "group:finance"],
                        required=2,
                        allow_self=False,
                        escalate_after=timedelta(minutes=30),
                        escalate_to=["zoe"],
                    ),
                ),
                On("note", Input(Note, self.take)),
                On("poke", Handler()),
                On("timeout", Timeout(after=timedelta(hours=1)), Return(error="timed out")),
            ),
            Step("pay", self.pay),
            Return("paid" if self.approved else "not paid"),
        )

    def yes(self, decision: Decision) -> None:
        DECISIONS.append(decision)
        self.approved = True

    def no(self, decision: Decision) -> None:
        DECISIONS.append(decision)

    def take(self, note: Note) -> None:
        self.note = note.text

    def pay(self) -> None:
        TRACE.append("pay")
        if self.approved:
            self.paid_to = "claimant"


class Restricted(Workflow):
    starters: ClassVar[list[str]] = ["alice", "group:finance"]

    def definition(self) -> S:
        return S(Return("ok"))


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Engine:
    DECISIONS.clear()
    TRACE.clear()
    return Engine(sqlite_url, [Claim, Restricted], clock=clock, operators=OPERATORS, groups=GROUPS)


def snapshot(engine: Engine, iid: str) -> tuple[dict[str, Any], list[Any]]:
    return engine.get(iid).to_dict(), engine.history(iid)


# --- the rules themselves ------------------------------------------------------------------------


def test_an_actor_is_known_by_name_slack_id_and_groups() -> None:
    rules = Authority.of(["group:ops"], {"ops": ["U-DAVE"]}, {"dave": "U-DAVE"})
    assert rules.identities("dave") == {"dave", "U-DAVE", "group:ops"}
    assert rules.is_operator("dave") and rules.is_operator("U-DAVE") and rules.is_operator(None)
    assert not rules.is_operator("mallory")
    assert Authority.of(["*"]).is_operator("anyone")
    with pytest.raises(NotAllowed, match="mallory may not retry x: only operators may"):
        rules.require_operator("mallory", "retry x")


def test_one_rule_for_reasons() -> None:
    assert checked_reason(False, "  too much  ", required=True) == "too much"
    assert checked_reason(False, None, required=False) == ""
    with pytest.raises(EventRejected, match="a reason is required to deny"):
        checked_reason(False, " ", required=True)
    with pytest.raises(EventRejected, match="longer than 2000"):
        checked_reason(True, "x" * 2001, required=False)
    with pytest.raises(EventRejected, match="must be text"):
        checked_reason(True, 7, required=False)


def test_read_only_fields_by_marker_or_schema() -> None:
    assert read_only_fields(Claim) == ["approved", "paid_to"]
    properties = Claim.model_json_schema()["properties"]
    assert properties["approved"]["readOnly"] is True  # the start form skips it too


def test_groups_remembered_at_sign_in_count_beside_the_configured_ones(engine: Engine) -> None:
    """What an identity provider vouched for (`Engine.remember_groups`): each call replaces the
    last, an empty one forgets, and the configured groups stay."""
    engine.remember_groups("erin", ["ops", "audit"])
    assert engine.identities("erin") == {"erin", "group:finance", "group:ops", "group:audit"}
    assert engine.is_operator("erin")  # group:ops operates
    engine.remember_groups("erin", ["audit"])
    assert engine.identities("erin") == {"erin", "group:finance", "group:audit"}
    assert not engine.is_operator("erin")
    engine.remember_groups("erin", [])
    assert engine.identities("erin") == {"erin", "group:finance"}
    for user, groups, words in (
        ("group:ops", ["x"], "may not begin with 'group:'"),
        ("", ["x"], "non-empty"),
        ("erin", ["group:ops"], "may not begin with 'group:'"),
        ("erin", ["ok", "bad\x00"], "control character"),
        ("erin", [" "], "non-empty"),
    ):
        with pytest.raises(InvalidData, match=words):
            engine.remember_groups(user, groups)
    with pytest.raises(TypeError):
        engine.remember_groups("erin", "ops")
    assert engine.identities("erin") == {"erin", "group:finance"}


# --- operators -----------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["alice", "erin", "mallory"])
def test_only_operators_retry_cancel_goto_and_send_other_events(engine: Engine, actor: str) -> None:
    iid = engine.start(Claim, {"amount": 5})
    before = snapshot(engine, iid)
    for action in (
        lambda: engine.cancel(iid, "no", actor=actor),
        lambda: engine.goto(iid, "main", "pay", actor=actor),
        lambda: engine.retry(iid, actor=actor),
        lambda: engine.send(iid, "poke", {}, actor=actor),
    ):
        with pytest.raises(NotAllowed, match=f"{actor} may not .*only operators may"):
            action()
        assert snapshot(engine, iid) == before
    assert TRACE == []


def test_an_operator_by_name_or_group_and_the_program_may(engine: Engine) -> None:
    poked = engine.start(Claim)
    assert engine.send(poked, "poke", {}, actor="dave").result == "not paid"  # group:ops
    moved = engine.start(Claim)
    got = engine.goto(moved, "main", "pay", actor="carol")
    assert (got.status, got.result, got.data["paid_to"]) == ("completed", "not paid", "")
    cancelled = engine.start(Claim)
    assert engine.cancel(cancelled, "dup", actor=None).status == "cancelled"
    entry = next(h for h in engine.history(moved) if h.kind == "goto")
    assert entry.actor == "carol"


BAD_NAMES = ["group:finance", "Group:ops", "", "   ", " erin", "al\x07ice", "bob\u202egnp"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_group_an_empty_name_or_control_characters_are_never_an_actor(
    engine: Engine, name: str
) -> None:
    """`group:finance` as an actor would count as the finance group and could vote any number
    of times; `group:ops` would operate. Every call that takes an actor refuses such a name."""
    iid = engine.start(Claim, actor="erin")
    before = snapshot(engine, iid)
    calls = [
        lambda: engine.start(Claim, actor=name),
        lambda: engine.send(iid, "decision", {"approved": True}, actor=name),
        lambda: engine.check_event(iid, "decision", {"approved": True}, actor=name),
        lambda: engine.send(iid, "poke", {}, actor=name),
        lambda: engine.retry(iid, actor=name),
        lambda: engine.goto(iid, "main", "pay", actor=name),
        lambda: engine.cancel(iid, actor=name),
        lambda: engine.inbox(name),
        lambda: engine.inbox_count(name),
        lambda: engine.decision_refusals(iid, name),
    ]
    for call in calls:
        with pytest.raises(InvalidData):
            call()
    assert snapshot(engine, iid) == before
    assert not engine.authority.matches(name, ["group:finance", "group:ops"])
    assert not engine.is_operator(name)


def test_two_votes_as_a_group_name_do_not_make_a_quorum(engine: Engine) -> None:
    iid = engine.start(Claim)
    for _ in range(2):
        with pytest.raises(InvalidData, match="a group is never an actor"):
            engine.send(iid, "decision", {"approved": True}, actor="group:finance")
    engine.send(iid, "decision", {"approved": True}, actor="erin")
    with pytest.raises(NotAllowed, match="already voted"):
        engine.send(iid, "decision", {"approved": True}, actor="erin")
    assert engine.get(iid).status == "waiting"


def test_anyone_may_fill_in_a_form_but_the_payload_must_fit(engine: Engine) -> None:
    iid = engine.start(Claim)
    before = snapshot(engine, iid)
    with pytest.raises(EventRejected, match="invalid input"):
        engine.send(iid, "note", {"text": 3}, actor="mallory")
    assert snapshot(engine, iid) == before
    assert engine.send(iid, "note", {"text": "receipt"}, actor="mallory").data["note"] == "receipt"


# --- starting ------------------------------------------------------------------------------------


def test_start_data_may_not_set_read_only_fields(engine: Engine) -> None:
    for field in ("approved", "paid_to"):
        with pytest.raises(InvalidData, match=f"{field} is read-only"):
            engine.start(
                Claim, {"amount": 5, field: True if field == "approved" else "me"}, actor="bob"
            )
    assert engine.list() == []
    # the program itself may (a migration, a test)
    iid = engine.start(Claim, {"approved": True})
    assert engine.get(iid).data["approved"] is True


def test_starters_limit_who_may_start(engine: Engine) -> None:
    with pytest.raises(NotAllowed, match="bob may not start Restricted; who may: alice"):
        engine.start(Restricted, actor="bob")
    assert engine.list() == []
    assert engine.get(engine.start(Restricted, actor="frank")).result == "ok"  # group:finance
    assert engine.get(engine.start(Restricted, actor="alice")).result == "ok"


# --- approvers -----------------------------------------------------------------------------------


def test_a_quorum_of_two_with_a_repeated_vote_and_a_group_members_vote(
    engine: Engine, clock: Clock
) -> None:
    iid = engine.start(Claim, {"amount": 50}, actor="frank")
    got = engine.send(iid, "decision", {"approved": True, "reason": "ok"}, actor="alice")
    assert got.status == "waiting" and DECISIONS == []
    (wait,) = [w for w in got.thread("main").waits if w.event == "decision"]
    assert wait.info["deciders"] == ["alice", "bob", "group:finance"]
    assert [v["actor"] for v in wait.info["votes"]] == ["alice"]
    row = engine.open_approvals(actor="alice")[0]
    assert (row["required"], row["votes"], row["may_decide"]) == (2, 1, False)
    assert "already voted" in row["refusal"]

    before = snapshot(engine, iid)
    with pytest.raises(NotAllowed, match="alice has already voted"):
        engine.send(iid, "decision", {"approved": True}, actor="alice")
    with pytest.raises(NotAllowed, match="frank started this instance"):
        engine.send(iid, "decision", {"approved": True}, actor="frank")  # allow_self=False
    with pytest.raises(NotAllowed, match="mallory may not decide this"):
        engine.send(iid, "decision", {"approved": True}, actor="mallory")
    assert snapshot(engine, iid) == before

    clock.advance(minutes=1)
    got = engine.send(iid, "decision", {"approved": True}, actor="erin")  # group:finance
    assert (got.status, got.result) == ("completed", "paid")
    (decision,) = DECISIONS
    assert decision.actor == "erin"
    assert [(v.actor, v.approved, v.reason) for v in decision.votes] == [
        ("alice", True, "ok"),
        ("erin", True, ""),
    ]
    kinds = [(h.kind, h.actor, h.message) for h in engine.history(iid) if h.actor]
    assert ("vote", "alice", "approved (1 of 2)") in kinds
    assert ("decision", "erin", "approved") in kinds


def test_one_deny_decides_a_quorum(engine: Engine) -> None:
    iid = engine.start(Claim)
    engine.send(iid, "decision", {"approved": True}, actor="bob")
    got = engine.send(iid, "decision", {"approved": False, "reason": "dup"}, actor="alice")
    assert (got.status, got.result) == ("completed", "not paid")
    (decision,) = DECISIONS
    assert not decision.approved
    assert [(v.actor, v.approved) for v in decision.votes] == [("bob", True), ("alice", False)]


def test_escalation_widens_the_approvers_at_its_time_even_before_its_timer(
    engine: Engine, clock: Clock
) -> None:
    iid = engine.start(Claim)
    with pytest.raises(NotAllowed, match="zoe may not decide"):
        engine.send(iid, "decision", {"approved": True}, actor="zoe")
    clock.advance(minutes=31)  # the escalation timer has not run
    assert engine.send(iid, "decision", {"approved": True}, actor="zoe").status == "waiting"


# --- hard deadlines ------------------------------------------------------------------------------


def test_a_deadline_decides_at_its_due_time_before_the_timer_runs(
    engine: Engine, clock: Clock
) -> None:
    iid = engine.start(Claim)
    clock.advance(minutes=59)
    engine.send(iid, "decision", {"approved": True}, actor="alice")  # in time: counted
    clock.advance(minutes=2)  # due a minute ago; run_due has not run
    with pytest.raises(AlreadyDecided, match="timeout by the timer at 2026-01-05 10:00:00"):
        engine.send(iid, "decision", {"approved": True}, actor="bob")
    got = engine.get(iid)
    assert (got.status, got.error) == ("completed", "timed out")
    assert DECISIONS == [] and TRACE == []
    assert engine.run_due() == 0
    with pytest.raises(AlreadyDecided, match="timeout"):
        engine.send(iid, "decision", {"approved": True}, actor="bob")


def test_a_deadline_after_run_due(engine: Engine, clock: Clock) -> None:
    iid = engine.start(Claim)
    assert engine.run_due(clock.advance(hours=1)) == 1
    with pytest.raises(AlreadyDecided, match="already decided: timeout by the timer"):
        engine.send(iid, "decision", {"approved": True}, actor="alice")


# --- busy instances ------------------------------------------------------------------------------

STARTED, RELEASE = threading.Event(), threading.Event()


class Slow(Workflow):
    done: bool = False

    def definition(self) -> S:
        return S(
            Step("slow", self.slow),
            Wait(
                "approval",
                On("decision", Approval(approvers=["alice"], approve=self.yes)),
                On("poke", Handler()),
            ),
            Return(self.done),
        )

    def slow(self) -> None:
        STARTED.set()
        assert RELEASE.wait(30), "the test never released the step"

    def yes(self, decision: Decision) -> None:
        self.done = True


def test_send_to_a_busy_instance_refuses_at_once(sqlite_url: str) -> None:
    STARTED.clear()
    RELEASE.clear()
    engine = Engine(sqlite_url, [Slow], operators=["carol"])
    runner = threading.Thread(target=engine.start, args=(Slow,), kwargs={"id": "busy"})
    runner.start()
    try:
        assert STARTED.wait(30)
        before = snapshot(engine, "busy")
        with pytest.raises(NotAllowed, match="mallory may not decide this"):
            engine.send("busy", "decision", {"approved": True}, actor="mallory")
        with pytest.raises(EventRejected, match='"approved": true or false'):
            engine.send("busy", "decision", {"approved": "yes"}, actor="alice")
        with pytest.raises(NotAllowed, match="only operators may"):
            engine.send("busy", "poke", {}, actor="alice")
        with pytest.raises(NotWaiting, match="'approval' has not begun yet"):
            engine.send("busy", "decision", {"approved": True}, actor="alice")
        assert snapshot(engine, "busy") == before
        kept = engine.send("busy", "poke", {}, actor="carol")  # an operator's plain event
        assert (kept.status, kept.kept) == ("running", True)
    finally:
        RELEASE.set()
        runner.join(30)
    got = engine.get("busy")
    assert (got.status, got.result) == ("completed", False)  # the poke ended the wait
    assert "event refused" not in [h.kind for h in engine.history("busy")]


# --- runtime mistakes ----------------------------------------------------------------------------


class Spawner(Workflow):
    rounds: int = 0

    def definition(self) -> S:
        return S(
            For(
                "rounds",
                lambda: self.rounds < 3,
                Step("count", self.count),
                Go("worker", S(Wait("w", On("go", Handler()))), id="same"),
            ),
            Return(self.rounds),
        )

    def count(self) -> None:
        TRACE.append("count")
        self.rounds += 1


class Renamer(Workflow):
    clash: bool = False

    def definition(self) -> S:
        return S(
            Step("first", self.first),
            Step("first" if self.clash else "second", self.second),
            Return("done"),
        )

    def first(self) -> None:
        TRACE.append("first")
        self.clash = True

    def second(self) -> None:
        TRACE.append("second")


def test_a_live_duplicate_go_id_fails_at_once(sqlite_url: str) -> None:
    TRACE.clear()
    engine = Engine(sqlite_url, [Spawner])
    got = engine.get(engine.start(Spawner))
    assert got.status == "failed"
    assert "Go 'worker' started thread 'same' again while it is still" in (got.error or "")
    assert TRACE == ["count", "count"]  # the second round's step ran once, nothing after it


def test_a_name_that_becomes_a_duplicate_fails_at_once(sqlite_url: str) -> None:
    TRACE.clear()
    engine = Engine(sqlite_url, [Renamer])
    got = engine.get(engine.start(Renamer))
    assert got.status == "failed"
    assert "the name 'first' is used twice" in (got.error or "")
    assert "10,000" not in (got.error or "")
    assert TRACE == ["first"]


# --- hot updates ---------------------------------------------------------------------------------


class DocV1(Workflow):
    workflow_name: ClassVar[str] = "Doc"

    def definition(self) -> S:
        return S(
            Wait(
                "review",
                On("sign", Approval(approvers=["alice"])),
                On("withdraw", Input(Note, lambda _: None), Return("withdrawn")),
                On("expire", Timeout(after=timedelta(hours=1)), Return("expired")),
            ),
            Return("signed"),
        )


class DocV2(Workflow):
    """The deployment: withdrawing and expiring are gone, bob signs instead of alice."""

    workflow_name: ClassVar[str] = "Doc"

    def definition(self) -> S:
        return S(Wait("review", On("sign", Approval(approvers=["bob"]))), Return("signed"))


def test_a_removed_case_is_refused_and_the_instance_goes_on_waiting(
    sqlite_url: str, clock: Clock
) -> None:
    iid = Engine(sqlite_url, [DocV1], clock=clock).start(DocV1)
    v2 = Engine(sqlite_url, [DocV2], clock=clock)
    before = snapshot(v2, iid)
    with pytest.raises(NotWaiting, match="no longer has the event 'withdraw'"):
        v2.send(iid, "withdraw", {"text": "x"}, actor="alice")
    assert snapshot(v2, iid) == before
    # the removed timeout's timer is dropped, not fired, and does not fail the instance
    assert v2.run_due(clock.advance(hours=2)) == 1
    assert v2.get(iid).status == "waiting"
    assert "timer dropped" in [h.kind for h in v2.history(iid)]
    assert v2.send(iid, "sign", {"approved": True}, actor="bob").result == "signed"


def test_changed_approvers_show_and_apply_as_deployed_now(sqlite_url: str) -> None:
    iid = Engine(sqlite_url, [DocV1]).start(DocV1)
    v2 = Engine(sqlite_url, [DocV2])
    (sign,) = [w for w in v2.get(iid).thread("main").waits if w.event == "sign"]
    assert sign.info["approvers"] == sign.info["deciders"] == ["bob"]
    (row,) = v2.open_approvals(actor="alice")
    assert (row["approvers"], row["may_decide"]) == (["bob"], False)
    assert v2.decision_refusals(iid, "bob") == {("main", "sign"): None}
    with pytest.raises(NotAllowed, match="alice may not decide this: only bob may"):
        v2.send(iid, "sign", {"approved": True}, actor="alice")
    assert v2.send(iid, "sign", {"approved": True}, actor="bob").result == "signed"


def test_require_reason_false_is_one_rule_everywhere(sqlite_url: str) -> None:
    class Lenient(Workflow):
        def definition(self) -> S:
            return S(
                Wait("w", On("d", Approval(approvers=["alice"], require_reason=False))),
                Return("done"),
            )

    engine = Engine(sqlite_url, [Lenient])
    iid = engine.start(Lenient)
    assert engine.open_approvals()[0]["require_reason"] is False
    assert engine.send(iid, "d", {"approved": False}, actor="alice").status == "completed"
