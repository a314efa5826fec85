"""Hot updates: a new definition deployed while instances run is picked up at their next
transition; an instance whose statement vanished fails with a message naming it, others carry
on, and after a fix `retry` or `goto` continues it. Malformed definitions are refused when they
are registered."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from signoff.engine import (
    Break,
    Continue,
    DefinitionError,
    Engine,
    For,
    Go,
    If,
    Input,
    On,
    Return,
    S,
    StatementMissing,
    Step,
    Timeout,
    Wait,
    WaitFor,
    Workflow,
)
from signoff.engine.core.validate import MAX_DEPTH, validate

from tests.conftest import Clock


class Ok(BaseModel):
    pass


class OrderV1(Workflow):
    workflow_name = "Order"
    log: str = ""
    fast: bool = False

    def definition(self) -> S:
        return S(
            Step("reserve", self.w("r")),
            If(self.fast, Wait("quick check", On("ok", Input(Ok, lambda _: None)))).Else(
                Wait(
                    "approval",
                    On("approve", Input(Ok, lambda _: None)),
                    On("expire", Timeout(after=timedelta(hours=1))),
                )
            ),
            Step("ship", self.w("s")),
            Return(self.log),
        )

    def w(self, letter: str):  # type: ignore[no-untyped-def]
        def act() -> None:
            self.log += letter

        return act


class OrderV2(OrderV1):
    """The deployment renamed the slow path's wait: instances standing in it are lost."""

    def definition(self) -> S:
        return S(
            Step("reserve", self.w("r")),
            If(self.fast, Wait("quick check", On("ok", Input(Ok, lambda _: None)))).Else(
                Wait("manager approval", On("approve", Input(Ok, lambda _: None)))
            ),
            Step("ship", self.w("S")),
            Return(self.log),
        )


class OrderV3(OrderV1):
    """The fix: the old wait is back, and shipping is a new step."""

    def definition(self) -> S:
        return S(
            Step("reserve", self.w("r")),
            If(self.fast, Wait("quick check", On("ok", Input(Ok, lambda _: None)))).Else(
                Wait("approval", On("approve", Input(Ok, lambda _: None)))
            ),
            Step("ship v3", self.w("3")),
            Return(self.log),
        )


def test_a_vanished_wait_fails_only_its_instance_and_a_fix_plus_retry_continues_it(
    sqlite_url: str,
) -> None:
    v1 = Engine(sqlite_url, [OrderV1])
    slow = v1.start("Order", id="slow")
    quick = v1.start("Order", {"fast": True}, id="quick")
    assert v1.get(slow).thread("main").step == "approval"

    v2 = Engine(sqlite_url, [OrderV2])  # the deployment
    with pytest.raises(StatementMissing) as missing:
        v2.send(slow, "approve", {})
    message = str(missing.value)
    assert "wait 'approval'" in message
    assert "workflow Order" in message
    assert "retry" in message and "goto" in message
    got = v2.get(slow)
    assert got.status == "failed"
    assert got.error is not None and "'approval'" in got.error and "Order" in got.error
    assert got.data["log"] == "r"

    # the other instance is untouched and runs the new code
    assert v2.send(quick, "ok", {}).result == "rS"

    # a second event to the failed instance says what is wrong
    with pytest.raises(Exception, match="failed and needs an operator"):
        v2.send(slow, "approve", {})

    v3 = Engine(sqlite_url, [OrderV3], operators=["ops"])  # the fix
    got = v3.retry(slow, actor="ops")
    assert (got.status, got.thread("main").step) == ("waiting", "approval")  # set up again
    got = v3.send(slow, "approve", {})
    assert (got.status, got.result) == ("completed", "r3")


def test_goto_moves_a_thread_lost_by_a_deployment_to_a_named_step(sqlite_url: str) -> None:
    v1 = Engine(sqlite_url, [OrderV1])
    iid = v1.start("Order")
    v2 = Engine(sqlite_url, [OrderV2], operators=["ops"])
    with pytest.raises(StatementMissing):
        v2.send(iid, "approve", {})
    got = v2.goto(iid, "main", "ship", actor="ops")
    assert (got.status, got.result) == ("completed", "rS")
    moves = [(h.kind, h.thread, h.name, h.actor) for h in v2.history(iid) if h.kind == "goto"]
    assert moves == [("goto", "main", "ship", "ops")]


def test_a_due_timer_of_a_vanished_wait_fails_the_instance(sqlite_url: str, clock: Clock) -> None:
    v1 = Engine(sqlite_url, [OrderV1], clock=clock)
    iid = v1.start("Order")
    v2 = Engine(sqlite_url, [OrderV2], clock=clock)
    v2.run_due(clock.advance(hours=1))
    got = v2.get(iid)
    assert got.status == "failed"
    assert got.error is not None and "'approval'" in got.error and "Order" in got.error


def test_a_vanished_step_fails_at_the_retry_that_would_run_it(
    sqlite_url: str, clock: Clock
) -> None:
    broken = {"on": True}

    class FlakyV1(Workflow):
        workflow_name = "Flaky"
        log: str = ""

        def definition(self) -> S:
            return S(Step("call", self.call, retry=2), Return(self.log))

        def call(self) -> None:
            if broken["on"]:
                raise TimeoutError("remote")
            self.log += "c"

    class FlakyV2(FlakyV1):
        def definition(self) -> S:
            return S(Step("call remote", self.call), Return(self.log))

    iid = Engine(sqlite_url, [FlakyV1], clock=clock).start("Flaky")
    v2 = Engine(sqlite_url, [FlakyV2], clock=clock)
    broken["on"] = False
    v2.run_due(clock.advance(minutes=1))
    got = v2.get(iid)
    assert got.status == "failed"
    assert got.error == "statement 'call' no longer exists in workflow Flaky"
    assert v2.goto(iid, "main", "call remote").result == "c"


def test_the_definition_is_checked_again_with_the_instance_s_own_data(sqlite_url: str) -> None:
    """Registration checks the tree built from the defaults; an instance's data may build
    another one, and that is checked when the instance runs."""

    class Shifty(Workflow):
        twice: bool = False

        def definition(self) -> S:
            second = "a" if self.twice else "b"
            return S(Step("a", lambda: None), Step(second, lambda: None))

    engine = Engine(sqlite_url, [Shifty])
    assert engine.get(engine.start(Shifty)).status == "completed"
    got = engine.get(engine.start(Shifty, {"twice": True}))
    assert got.status == "failed"
    assert got.error == (
        "workflow Shifty: the name 'a' is used twice (Step and Step); "
        "statement names must be unique"
    )


# --- malformed definitions are refused at registration -----------------------------------------


def _register(tree: Any, sqlite_url: str) -> None:
    class Bad(Workflow):
        def definition(self) -> Any:
            return tree

    Engine(sqlite_url, [Bad])


def _nothing() -> None:
    pass


@pytest.mark.parametrize(
    ("tree", "problem"),
    [
        (
            S(Step("a", _nothing), Step("a", _nothing)),
            "workflow Bad: the name 'a' is used twice (Step and Step)",
        ),
        (
            S(Step("x", _nothing), Wait("x", On("e", Input(Ok, _nothing)))),
            "the name 'x' is used twice (Step and Wait)",
        ),
        (
            S(For("loop", True, Step("s", _nothing)), Go("loop", S())),
            "the name 'loop' is used twice (For and Go)",
        ),
        (
            S(Go("g", S(Step("w", _nothing))), WaitFor("w", True)),
            "the name 'w' is used twice (Step and WaitFor)",
        ),
        (
            S(Wait("w", On("e", Input(Ok, _nothing)), On("e", Timeout(after=timedelta(1))))),
            "event 'e' appears twice in wait 'w'",
        ),
        (S(Wait("w")), "wait 'w' has no On(...) cases"),
        (
            S(Wait("w", On("e", lambda: None))),  # type: ignore[arg-type]
            "event 'e' of wait 'w' needs a Handler, not function",
        ),
        (S(Break()), "Break() outside a For"),
        (S(If(True, Continue())), "Continue() outside a For"),
        (S(For("f", True, Go("g", S(Break())))), "Break() outside a For"),
        (S(On("e", Input(Ok, _nothing))), "On('e') must be placed inside a Wait"),
        (S(Go("a", S(), id="t"), Go("b", S(), id="t")), "thread id 't' is used twice"),
        (S(Go("main", S())), "thread id 'main' is used twice"),
        (S(Step("", _nothing)), "a Step needs a non-empty name"),
        (S(Step("s", "not callable")), "step 's' needs a callable action"),  # type: ignore[arg-type]
        (S("just text"), "'just text' is not a statement"),  # type: ignore[arg-type]
        (Step("s", _nothing), None),  # a single statement is fine
        ([Step("s", _nothing)], "must return a statement such as S(...), not list"),
    ],
)
def test_a_malformed_definition_is_refused_with_a_message_naming_the_problem(
    sqlite_url: str, tree: Any, problem: str | None
) -> None:
    if problem is None:
        _register(tree, sqlite_url)
        return
    with pytest.raises(DefinitionError) as refused:
        _register(tree, sqlite_url)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("valid", "invalid", "problem"),
    [
        (
            S(Step("a", _nothing), Step("b", _nothing)),
            S(Step("a", _nothing), Step("b", "text")),  # type: ignore[arg-type]
            "step 'b' needs a callable action",
        ),
        (
            S(Step("a", _nothing), Step("b", _nothing)),
            S(Step("a", _nothing), Step("b", _nothing, renamed_from=["a"])),
            "'a' is still the name of a Step",
        ),
        (
            S(For("loop", True, Step("a", _nothing), Break())),
            S(For("loop", True, Step("a", _nothing)), Break()),
            "Break() outside a For",
        ),
        (
            S(Step("a", _nothing), S(Step("b", _nothing))),
            S(Step("a", _nothing), S(Step("a", _nothing))),
            "the name 'a' is used twice",
        ),
        (
            S(Step("a", _nothing), Go("g", S(Step("b", _nothing)), id="t")),
            S(Step("a", _nothing), Go("g", S(Step("b", _nothing)), id="t"), Go("h", S(), id="t")),
            "thread id 't' is used twice",
        ),
        (
            S(If(True, Step("a", _nothing)).Else(Step("b", _nothing))),
            S(If(True, Step("a", _nothing)).Else(Step("b", _nothing), Step("a", _nothing))),
            "the name 'a' is used twice",
        ),
    ],
)
def test_a_tree_checked_once_is_not_taken_for_another_of_the_same_names(
    valid: Any, invalid: Any, problem: str
) -> None:
    """After every step the rebuilt tree is checked by its shape, and a shape found valid is
    not checked again: two trees that differ only where the shape is most compact (a step
    shown by its name alone, the nesting) must still have different shapes."""
    validate(valid, "Twins")
    validate(valid, "Twins")  # known now
    with pytest.raises(DefinitionError) as refused:
        validate(invalid, "Twins")
    assert problem in str(refused.value)


def _nested(depth: int) -> S:
    tree = S(Step("bottom", _nothing))
    for _ in range(depth):
        tree = S(tree)
    return tree


def test_a_tree_nested_deeper_than_the_limit_is_refused_not_overflowing_the_stack(
    sqlite_url: str,
) -> None:
    """The walks recurse: compiled (setup.py), recursing without end would crash the process
    where Python raises RecursionError, so depth is bounded and said so."""
    for depth in (MAX_DEPTH, 10_000):
        with pytest.raises(DefinitionError, match=f"nested more than {MAX_DEPTH} deep"):
            _register(_nested(depth), sqlite_url)


def test_a_tree_nested_as_deep_as_the_limit_runs(sqlite_url: str) -> None:
    tree = _nested(MAX_DEPTH - 1)

    class Deep(Workflow):
        def definition(self) -> S:
            return tree

    engine = Engine(sqlite_url, [Deep])
    got = engine.get(engine.start(Deep))
    assert (got.status, got.error) == ("completed", None)
    validate(tree, "Deep")  # known now: compared with the last shape, as deep
    with pytest.raises(DefinitionError, match="nested more than"):
        validate(S(tree), "Deep")


def test_a_definition_that_cannot_be_built_from_defaults_is_refused(sqlite_url: str) -> None:
    class Crashes(Workflow):
        def definition(self) -> S:
            raise RuntimeError("needs a database")

    with pytest.raises(
        DefinitionError,
        match="workflow Crashes: building the definition from "
        "its defaults failed: RuntimeError: needs a database",
    ):
        Engine(sqlite_url, [Crashes])


def test_only_workflow_classes_can_be_registered(sqlite_url: str) -> None:
    with pytest.raises(DefinitionError, match="is not a Workflow subclass"):
        Engine(sqlite_url, [dict])  # type: ignore[list-item]


def test_retry_after_a_fix_never_runs_a_committed_step_again(sqlite_url: str) -> None:
    runs: list[str] = []

    class BrokenV1(Workflow):
        workflow_name = "Cond"
        limit: int = 0

        def definition(self) -> S:
            return S(
                Step("charge", lambda: runs.append("charge")),
                If(lambda: 100 / self.limit > 1, Step("big", lambda: runs.append("big"))),
                Step("receipt", lambda: runs.append("receipt")),
            )

    class FixedV2(BrokenV1):
        def definition(self) -> S:
            return S(
                Step("charge", lambda: runs.append("charge")),
                If(
                    lambda: self.limit and 100 / self.limit > 1,
                    Step("big", lambda: runs.append("big")),
                ),
                Step("receipt", lambda: runs.append("receipt")),
            )

    iid = Engine(sqlite_url, [BrokenV1]).start("Cond")
    v1 = Engine(sqlite_url, [BrokenV1])
    got = v1.get(iid)
    assert got.status == "failed"
    assert got.error == "building the definition failed: ZeroDivisionError: division by zero"
    assert runs == ["charge"]

    got = Engine(sqlite_url, [FixedV2]).retry(iid)
    assert got.status == "completed"
    assert runs == ["charge", "receipt"]  # the charge was committed: it does not run twice
