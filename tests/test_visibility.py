"""Who sees what: a person sees the instances they started, may decide or have decided;
operators and viewers see all; anyone else gets "not found", and the instance is absent from
their lists, counts and searches. `Engine.get/list/history/counts(actor=)` give an embedding
program the same rule, on SQLite and PostgreSQL; a refusal to an outsider says "not found" too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from signoff.engine import (
    Approval,
    Engine,
    Go,
    InstanceNotFound,
    NotAllowed,
    On,
    Return,
    S,
    Statement,
    Wait,
    Workflow,
)


class Ask(Workflow):
    approvers: list[str] | None = None
    subject: str = ""

    def definition(self) -> Statement:
        return S(
            Wait("approval", On("decided", Approval(approvers=self.approvers))),
            Return("done"),
        )


@pytest.fixture
def engine(any_url: str) -> Iterator[Engine]:
    eng = Engine(
        any_url,
        [Ask],
        operators=["carol"],
        viewers=["group:audit"],
        groups={"audit": ["vera"], "finance": ["erin"]},
    )
    eng.start(Ask, {"approvers": ["alice"], "subject": "laptop"}, id="a", actor="sam")
    eng.start(Ask, {"approvers": ["group:finance"], "subject": "laptop"}, id="b", actor="tom")
    eng.start(Ask, {"approvers": ["alice"], "subject": "desk"}, id="d", actor="sam")
    eng.send("d", "decided", {"approved": True}, actor="alice")
    eng.start(Ask, {"approvers": ["bob"], "subject": "laptop"}, id="e", actor="tom")
    yield eng
    eng.close()


SEES = {
    "sam": {"a", "d"},  # started them
    "alice": {"a", "d"},  # may decide one, decided the other
    "erin": {"b"},  # through her group
    "tom": {"b", "e"},
    "mallory": set(),
    "carol": {"a", "b", "d", "e"},  # an operator
    "vera": {"a", "b", "d", "e"},  # a viewer, through her group
}


def test_each_person_sees_what_they_take_part_in(engine: Engine) -> None:
    for who, seen in SEES.items():
        _sees_exactly(engine, who, seen)


def _sees_exactly(engine: Engine, who: str, seen: set[str]) -> None:
    assert {s.id for s in engine.list(actor=who)} == seen
    assert sum(engine.counts(actor=who).values()) == len(seen)
    assert {s.id for s in engine.list(search="laptop", actor=who)} == seen - {"d"}
    assert sum(engine.counts(search="subject:laptop", actor=who).values()) == len(seen - {"d"})
    for iid in "abde":
        if iid in seen:
            assert engine.get(iid, actor=who).id == iid
            assert engine.history(iid, actor=who)
        else:
            with pytest.raises(InstanceNotFound, match=f"no instance with id '{iid}'"):
                engine.get(iid, actor=who)
            with pytest.raises(InstanceNotFound):
                engine.history(iid, actor=who)


def test_the_program_sees_everything(engine: Engine) -> None:
    assert {s.id for s in engine.list()} == {"a", "b", "d", "e"}
    assert engine.sees_all(None) and engine.sees_all("carol") and engine.sees_all("vera")
    assert not engine.sees_all("sam")


def test_may_see_is_the_rule_a_surface_asks_before_it_explains_a_refusal(engine: Engine) -> None:
    """The engine tells its program why (NotAllowed); the dashboard and the API first ask
    `may_see`, and tell an outsider only that there is no such instance."""
    with pytest.raises(NotAllowed):
        engine.send("a", "decided", {"approved": True}, actor="mallory")
    assert not engine.may_see("a", "mallory") and not engine.may_see("nope", "carol")
    assert engine.may_see("a", "sam") and engine.may_see("a", "alice")
    assert engine.may_see("b", "erin") and engine.may_see("b", "vera")


def test_an_approver_of_a_wait_not_begun_yet_may_see_it(any_url: str) -> None:
    """The request is on its way to them: it opens by id (a link in a message sent early), though
    lists show it once the wait has begun."""
    import threading

    from tests.early_workflows import STEP_MAY_GO, STEP_RUNNING, Held

    driver = Engine(any_url, [Held])
    STEP_MAY_GO.clear()
    STEP_RUNNING.clear()
    started = threading.Thread(target=lambda: driver.start(Held, id="h1"))
    started.start()
    try:
        assert STEP_RUNNING.wait(10)
        assert driver.may_see("h1", "alice") and driver.get("h1", actor="bob").id == "h1"
        assert not driver.may_see("h1", "mallory")
        assert [s.id for s in driver.list(actor="alice")] == []
    finally:
        STEP_MAY_GO.set()
        started.join(10)
    assert [s.id for s in driver.list(actor="alice")] == ["h1"]
    driver.close()


def test_sight_follows_the_approvers_as_they_are_now(engine: Engine) -> None:
    """Someone who may decide an approval open now sees it; once another decided it, only
    those who took part keep sight."""
    assert "e" in {s.id for s in engine.list(actor="bob")}
    engine.send("e", "decided", {"approved": True}, actor="bob")
    assert engine.get("e", actor="bob").status == "completed"  # bob decided it


def test_a_persons_pages_are_the_same_whatever_window_they_are_looked_for_in(
    any_url: str,
) -> None:
    """A page of one person's instances is looked for first among the next few thousand
    instances in the page's order, then, when those hold too few of theirs, among their own:
    here a window of two or three instances takes both ways, page after page, in every order,
    and each page is what the rule says, in order."""
    engine = Engine(any_url, [Ask], operators=["carol"])
    for n in range(10):
        approvers = ["pat"] if n % 3 == 0 else ["quinn"] if n == 4 else ["olga"]
        engine.start(Ask, {"approvers": approvers}, id=f"i{n}", actor=f"u{n}")
    engine.send("i3", "decided", {"approved": True}, actor="pat")  # pat keeps sight of it
    sees = {"pat": {"i0", "i3", "i6", "i9"}, "quinn": {"i4"}, "u7": {"i7"}, "nobody": set()}
    decides = {**sees, "pat": {"i0", "i6", "i9"}, "u7": set()}
    everything = {o: engine.list(order=o, limit=100) for o in ("recent", "oldest", "id")}
    for window in (2, 3, 20_000):
        engine.store.pager.window = window
        for order, all_rows in everything.items():
            for who, seen in sees.items():
                expected = [r.id for r in all_rows if r.id in seen]
                assert _paged(engine, order, actor=who) == expected, (window, order, who)
                waiting = [r.id for r in all_rows if r.id in decides[who]]
                assert _paged(engine, order, decider=who) == waiting, (window, order, who)
                assert _paged(engine, order, actor=who, status="waiting") == [
                    i for i in expected if i != "i3"
                ]
    engine.close()


def _paged(engine: Engine, order: str, **kw: str) -> list[str]:
    """Every id the list gives, two a page, each page after the last one's row."""
    found: list[str] = []
    before = None
    while True:
        page = engine.list(order=order, limit=2, before=before, **kw)  # type: ignore[arg-type]
        found += [r.id for r in page]
        if len(page) < 2:
            return found
        before = (page[-1].updated_at, page[-1].id)


def test_a_persons_inbox_pages_are_the_same_whatever_window_they_are_looked_for_in(
    any_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of one person's inbox is looked for first among the next open approvals, oldest
    first, then among the person's own: with a window of two or three approvals, both ways
    give, page after page, the approvals that name them or nobody, oldest first; one of two
    approvals open in the same instance that names someone else is not theirs."""
    from signoff.engine.storage import placement

    class Two(Workflow):
        def definition(self) -> Statement:
            return S(
                Go("one", S(Wait("first", On("decided", Approval(approvers=["pat"]))))),
                Wait("second", On("decided", Approval(approvers=["olga"]))),
            )

    engine = Engine(any_url, [Ask, Two])
    for n in range(9):
        approvers = ["pat"] if n % 3 == 0 else None if n == 4 else ["olga"]
        engine.start(Ask, {"approvers": approvers}, id=f"i{n}")
    engine.start(Two, id="t")
    everyone = [(r["instance_id"], r["wait"]) for r in engine.inbox(None, limit=100)]
    assert len(everyone) == 11
    theirs = {
        "pat": [x for x in everyone if x[0] in ("i0", "i3", "i6", "i4") or x == ("t", "first")],
        "olga": [x for x in everyone if x[0] not in ("i0", "i3", "i6") and x != ("t", "first")],
        "nobody": [x for x in everyone if x[0] == "i4"],
    }
    for window in (2, 3, 20_000):
        monkeypatch.setattr(placement, "INBOX_WINDOW", window)
        for who, expected in theirs.items():
            found = []
            for start in range(0, 12, 2):
                page = engine.inbox(who, limit=2, offset=start)
                found += [(r["instance_id"], r["wait"]) for r in page]
            assert found == expected, (window, who)
            assert engine.inbox_count(who) == len(expected)
    engine.close()
