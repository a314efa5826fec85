"""Deploy safety: `Engine.check_deployment` names the instances a deployment would strand, and
`renamed_from` carries instances parked on an old name over to the new one.

The story: Order v1 runs; v2 renames its approval wait (declared) and adds a step; a careless
v3 renames it again without declaring it, drops a case and a workflow; the fixed v3 declares
everything. Instances started under v1 and v2 meet each candidate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from signoff.engine import (
    AsyncEngine,
    DefinitionError,
    Engine,
    Go,
    Input,
    On,
    S,
    Step,
    Wait,
    WaitFor,
    Workflow,
)

from tests.conftest import Clock
from tests.deploy_workflows import Legacy, Note, OrderV1, OrderV2, OrderV3, OrderV3Bad, seed

Deploy = Callable[..., Engine]


@pytest.fixture
def deploy(clock: Clock) -> Iterator[Deploy]:
    """`deploy(url, [classes])`: an engine running that code on that database, closed after."""
    made: list[Engine] = []

    def make(url: str, workflows: list[type[Workflow]]) -> Engine:
        made.append(Engine(url, workflows, clock=clock))
        return made[-1]

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def fleet(any_url: str, clock: Clock) -> str:
    """Instances spread over v1 and v2 of Order, and one of Legacy (see `seed`)."""
    seed(any_url, clock)
    return any_url


def moved(engine: Engine, iid: str) -> list[str]:
    return [h.message or "" for h in engine.history(iid) if h.kind == "moved"]


def test_the_state_of_the_fleet(fleet: str, deploy: Deploy) -> None:
    engine = deploy(fleet, [OrderV2, Legacy])
    views = [engine.get(i.id) for i in engine.list(limit=20)]
    steps = {v.id: (v.status, v.thread("main").step) for v in views}
    assert steps == {
        "a1": ("waiting", "approval"),  # untouched since v1: still the old name in the database
        "a2": ("waiting", "approval"),
        "a3": ("waiting", "shipping"),
        "s1": ("waiting", "shipping"),
        "n1": ("waiting", "manager approval"),
        "f1": ("failed", "reserve"),
        "l1": ("waiting", "forever"),
        "done1": ("completed", "ship"),
    }
    assert moved(engine, "a3") == [
        "moved from 'approval' to 'manager approval' by a deployment",
        "moved from 'approve' to 'sign' by a deployment",
    ]
    got = engine.get("a3")
    assert got.data["log"] == "rau"  # v2's new step ran after the approval
    assert got.thread("main").waits[0].event == "shipped"


def test_check_reports_exactly_what_a_careless_deployment_strands(
    fleet: str, deploy: Deploy
) -> None:
    engine = deploy(fleet, [OrderV3Bad])
    report = engine.check_deployment(examples=5, page_size=2)  # keyset pages of two
    found = report.as_json()
    assert not report.ok and found["ok"] is False
    assert found["checked"] == 7  # done1 is finished: nothing to strand
    assert found["stranded_instances"] == 6
    assert found["carried_instances"] == 0
    assert found["workflows"] == {
        "Legacy": {"checked": 1, "stranded": 1, "carried": 0, "warnings": 0},
        "Order": {"checked": 6, "stranded": 5, "carried": 0, "warnings": 0},
    }
    assert found["stranded"] == [
        {"workflow": "Legacy", "kind": "workflow", "name": "Legacy", "wait": None,
         "count": 1, "examples": ["l1"]},
        {"workflow": "Order", "kind": "event", "name": "lost", "wait": "shipping",
         "count": 2, "examples": ["a3", "s1"]},
        {"workflow": "Order", "kind": "statement", "name": "approval", "wait": None,
         "count": 2, "examples": ["a1", "a2"]},
        {"workflow": "Order", "kind": "statement", "name": "manager approval", "wait": None,
         "count": 1, "examples": ["n1"]},
    ]  # fmt: skip
    assert found["carried"] == [] and found["warnings"] == []
    # the check reads only: nothing moved, nothing failed
    assert engine.get("a1").thread("main").step == "approval"
    assert moved(engine, "a1") == []


def test_examples_are_capped_but_counts_are_not(fleet: str, deploy: Deploy) -> None:
    found = deploy(fleet, [OrderV3Bad]).check_deployment(examples=1).as_json()
    approval = next(s for s in found["stranded"] if s["name"] == "approval")
    assert (approval["count"], approval["examples"]) == (2, ["a1"])


def test_check_counts_declared_renames_as_carried_over_and_changes_as_warnings(
    fleet: str, deploy: Deploy
) -> None:
    engine = deploy(fleet, [OrderV3, Legacy])
    report = engine.check_deployment()
    found = report.as_json()
    assert report.ok
    assert (found["checked"], found["stranded_instances"]) == (7, 0)
    assert found["carried_instances"] == 3
    assert found["carried"] == [
        {"workflow": "Order", "what": "event", "from": "approve", "to": "sign",
         "count": 2, "examples": ["a1", "a2"]},
        {"workflow": "Order", "what": "statement", "from": "approval", "to": "sign-off",
         "count": 2, "examples": ["a1", "a2"]},
        {"workflow": "Order", "what": "statement", "from": "manager approval",
         "to": "sign-off", "count": 1, "examples": ["n1"]},
    ]  # fmt: skip
    assert found["warned_instances"] == 3
    assert [(w["kind"], w["name"], w["wait"], w["count"], w["examples"], w["detail"])
            for w in found["warnings"]] == [
        ("approvers", "sign", "sign-off", 3, ["a1", "a2", "n1"], "alice -> alice, bob"),
        ("timer", "expire", "sign-off", 3, ["a1", "a2", "n1"],
         "due 2026-01-05 10:00:00 UTC -> 2026-01-05 11:00:00 UTC"),
    ]  # fmt: skip


def test_after_deploying_with_renamed_from_every_carried_instance_completes(
    fleet: str, clock: Clock, deploy: Deploy
) -> None:
    v3 = deploy(fleet, [OrderV3, Legacy])
    # old event name, new event name, and the timer armed by v1 for the old wait
    v3.send("a1", "approve", {"approved": True}, actor="alice")
    v3.send("n1", "sign", {"approved": True}, actor="bob")
    v3.run_due(clock.advance(hours=1))
    assert (v3.get("a2").status, v3.get("a2").error) == ("completed", "expired")
    for iid in ("a1", "n1", "a3", "s1"):
        assert v3.get(iid).thread("main").step == "shipping"
        got = v3.send(iid, "shipped", {})
        assert got.status == "completed", (iid, got.error)
    assert {i: v3.get(i).result for i in ("a1", "n1", "a3", "s1")} == {
        "a1": "rauns",
        "n1": "rauns",
        "a3": "rauns",
        "s1": "rans",  # approved under v1: shipped without the audit v2 added before shipping
    }
    assert moved(v3, "a1") == [
        "moved from 'approval' to 'sign-off' by a deployment",
        "moved from 'approve' to 'sign' by a deployment",
    ]
    assert moved(v3, "a2") == moved(v3, "a1")
    assert moved(v3, "n1") == ["moved from 'manager approval' to 'sign-off' by a deployment"]
    assert moved(v3, "s1") == []
    # once moved, nothing is left for a check to carry over
    assert v3.check_deployment().as_json()["carried"] == []


def test_without_renamed_from_the_instance_fails_at_its_next_transition(
    fleet: str, deploy: Deploy
) -> None:
    v3 = deploy(fleet, [OrderV3Bad])
    with pytest.raises(Exception, match="no longer exists"):
        v3.send("a1", "approve", {"approved": True}, actor="alice")
    assert v3.get("a1").status == "failed"


class Pinger(Workflow):
    workflow_name = "Pinger"
    pinged: bool = False
    log: str = ""

    def definition(self) -> Any:
        return S(
            Go("pings", S(Wait("ping", On("ping", Input(Note, self.ping))))),
            WaitFor("pinged", lambda: self.pinged),
            Step("done", self.done),
        )

    def ping(self, _: Any) -> None:
        self.pinged = True

    def done(self) -> None:
        self.log += "d"


class PingerRenamed(Pinger):
    def definition(self) -> Any:
        return S(
            Go(
                "pinging",
                S(Wait("awaiting ping", On("pong", Input(Note, self.ping), renamed_from="ping"),
                       renamed_from=["ping"])),
                renamed_from=["pings"],
            ),
            WaitFor("heard", lambda: self.pinged, renamed_from=["pinged"]),
            Step("done", self.done),
        )  # fmt: skip


def test_a_go_thread_and_a_wait_for_move_with_their_statements(
    sqlite_url: str, deploy: Deploy
) -> None:
    deploy(sqlite_url, [Pinger]).start("Pinger", id="p")
    engine = deploy(sqlite_url, [PingerRenamed])
    assert engine.check_deployment().as_json()["carried_instances"] == 1
    got = engine.send("p", "ping", {})  # the old event name
    assert (got.status, got.data["log"]) == ("completed", "d")
    assert sorted(moved(engine, "p")) == [
        "moved from 'ping' to 'awaiting ping' by a deployment",
        "moved from 'ping' to 'pong' by a deployment",
        "moved from 'pinged' to 'heard' by a deployment",
        "moved from 'pings' to 'pinging' by a deployment",
    ]


def make(*stmts: Any) -> type[Workflow]:
    class Made(Workflow):
        def definition(self) -> Any:
            return S(*stmts)

    return Made


def nothing(_: Any = None) -> None:
    pass


@pytest.mark.parametrize(
    ("stmts", "message"),
    [
        (
            (Step("a", nothing), Step("b", nothing, renamed_from=["a"])),
            "'b' is renamed_from 'a', but 'a' is still the name of a Step",
        ),
        (
            (Step("b", nothing, renamed_from=["x"]), Wait("c", On("e", Input(Note, nothing)),
                                                          renamed_from=["x"])),
            "'x' is in the renamed_from of both 'b' and 'c'",
        ),
        (
            (Step("b", nothing, renamed_from=["b"]),),
            "'b' is renamed_from 'b', but 'b' is still the name of a Step",
        ),
        (
            (Wait("w", On("yes", Input(Note, nothing), renamed_from=["no"]),
                  On("no", Input(Note, nothing))),),
            "event 'yes' of wait 'w' is renamed_from 'no', which is still an event of that wait",
        ),
        (
            (Step("b", nothing, renamed_from=[""]),),
            "Step 'b': renamed_from must be a list of non-empty names",
        ),
    ],
)  # fmt: skip
def test_a_clashing_renamed_from_is_refused_at_registration(
    sqlite_url: str, stmts: tuple[Any, ...], message: str, deploy: Deploy
) -> None:
    with pytest.raises(DefinitionError) as refused:
        deploy(sqlite_url, [make(*stmts)])
    assert message in str(refused.value)


def test_an_unregistered_or_broken_definition_strands_its_instances(
    sqlite_url: str, deploy: Deploy
) -> None:
    v1 = deploy(sqlite_url, [OrderV1, Legacy])
    v1.start("Order", id="o")
    v1.start("Legacy", id="l")

    class Exploding(OrderV1):
        def definition(self) -> Any:
            if self.log:  # fine from the defaults, as registration builds it; not for "o"
                raise KeyError("boom")
            return super().definition()

    found = deploy(sqlite_url, [Exploding]).check_deployment().as_json()
    assert [(s["kind"], s["name"], s["examples"]) for s in found["stranded"]] == [
        ("workflow", "Legacy", ["l"]),
        ("definition", "KeyError: 'boom'", ["o"]),
    ]


def test_the_async_engine_checks_too(fleet: str, clock: Clock) -> None:
    async def check() -> tuple[dict[str, Any], list[str]]:
        engine = AsyncEngine(fleet, [OrderV3Bad], clock=clock)
        try:
            report = await engine.check_deployment()
            return report.as_json(), await engine.parked_on("Order", "approval")
        finally:
            await engine.close()

    found, parked = asyncio.run(check())
    assert (found["stranded_instances"], parked) == (6, ["a1", "a2"])
