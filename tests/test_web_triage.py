"""Issue 24 through the real app (TestClient): the instances list says what each waiting
instance waits for, flags overdue and deadline-less waits, filters by "waits for me" and
overdue, compares in its search and says how to write a comparison it cannot read."""

from __future__ import annotations

from typing import Any

from signoff.engine import Engine
from web_support import HX, Node, TestClient, parse

pytest_plugins = ["web_fixtures"]


def _rows(html: str) -> dict[str, Node]:
    return {
        (n.attrs.get("id") or "")[2:]: n
        for n in parse(html).find_all("tr")
        if (n.attrs.get("id") or "").startswith("i-")
    }


def _why(row: Node) -> str:
    cell = next(n for n in row.find_all("td") if "why" in (n.attrs.get("class") or ""))
    return " ".join(cell.text.split())


def test_the_list_says_what_each_instance_waits_for(
    alice: TestClient, engine: Engine, clock: Any
) -> None:
    expense = engine.start("Expense", {"employee": "ann", "amount": 50})
    purchase = engine.start("Purchase", {"item": "GPU", "cost": 900})
    onboarding = engine.start("Onboarding", {"person": "dana"})
    report = engine.start("NightlyReport", {"day": "2026-01-04"})
    clock.advance(hours=3)
    rows = _rows(alice.get("/").text)
    assert _why(rows[expense]).startswith("Waits 3 h for alice to decide")
    assert "decided by a timeout in 2d 21h" in _why(rows[expense])
    assert "Waits 3 h for alice, carol, dave to decide" in _why(rows[purchase])
    assert "no deadline" in _why(rows[purchase])
    assert "Waits 3 h for a form, equipment" in _why(rows[onboarding])
    # the report's two hours are up, and no scheduler fired its timer
    assert "overdue 1 h" in _why(rows[report])
    assert list(_rows(alice.get("/?overdue=1").text)) == [report]


def test_waits_for_me(client: TestClient, engine: Engine) -> None:
    from web_support import ORIGIN, sign_in

    client.headers.update({"X-CSRF-Token": sign_in(client, "carol"), "Origin": ORIGIN})
    expense = engine.start("Expense", {"employee": "ann", "amount": 50})  # alice decides
    purchase = engine.start("Purchase", {"item": "GPU", "cost": 900})  # carol among three
    engine.send(expense, "decision", {"approved": True}, actor="alice")
    mine = client.get("/?mine=1")
    assert list(_rows(mine.text)) == [purchase]
    assert mine.context["page"].counts == {"waiting": 1}
    # the filter stays in the live refresh and in the status chips
    assert "mine=1" in mine.context["page"].self_query


def test_comparisons_and_a_hint_for_what_cannot_be_read(alice: TestClient, engine: Engine) -> None:
    small = engine.start("Expense", {"employee": "ann", "amount": 50})
    big = engine.start("Expense", {"employee": "ben", "amount": 250})
    assert list(_rows(alice.get("/?q=amount>200").text)) == [big]
    assert set(_rows(alice.get("/?q=amount<=250").text)) == {small, big}
    wrong = alice.get("/?q=amount>lots", headers=HX)
    assert wrong.status_code == 200
    hint = next(n for n in parse(wrong.text).find_all("p") if n.attrs.get("data-testid"))
    assert "cannot be read" in hint.text and "amount>200" in hint.text
    assert _rows(wrong.text) == {}
    inbox = alice.get("/approvals?q=amount>200")
    assert [i.instance_id for i in inbox.context["page"].mine] == [big]
