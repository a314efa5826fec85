"""The approvals inbox (web/approvals.py)."""

from __future__ import annotations

from typing import Any

from signoff.engine import Engine
from signoff.engine.storage.placement import open_approvals
from signoff.web.approvals import ApprovalsPage, row_id
from web_support import (
    HX,
    ORIGIN,
    TRACE,
    Rounds,
    TestClient,
    form_data,
    parse,
    sign_in,
)

pytest_plugins = ["web_fixtures"]


def _form(iid: str, decision: str, reason: str = "") -> dict[str, str]:
    return {
        "instance": iid,
        "thread": "main",
        "event": "decision",
        "decision": decision,
        "reason": reason,
    }


def test_inbox_lists_what_the_user_may_decide_oldest_first(
    alice: TestClient, engine: Engine, clock: Any
) -> None:
    first = engine.start("Trip", {"who": "a"}, id="first")
    clock.advance(minutes=5)
    second = engine.start("Trip", {"who": "b"}, id="second")
    clock.advance(minutes=5)
    anyone = engine.start("NightlyReport", {}, id="report")  # approvers: anyone
    clock.advance(minutes=5)
    carol = engine.start("Expense", {"amount": 5}, id="expense")  # approvers: alice
    response = alice.get("/approvals")
    assert response.template.name == "pages/approvals.html"
    page: ApprovalsPage = response.context["page"]
    assert [i.instance_id for i in page.mine] == [first, second, anyone, carol]
    assert page.mine[0].title == "Trip for a" and page.mine[0].workflow == "Trip"
    assert page.total == 4 and page.shown == "1\u20134 of 4"
    part = alice.get("/approvals", headers=HX)
    assert part.template.name == "partials/approvals.html"
    roots = [n for n in parse(part.text).children if not isinstance(n, str)]
    assert [r.attrs["id"] for r in roots] == ["approvals"]


def test_others_approvals_are_not_in_my_inbox(client: TestClient, engine: Engine) -> None:
    sign_in(client, "bob")
    iid = engine.start("Trip", {})
    page: ApprovalsPage = client.get("/approvals").context["page"]
    assert page.mine == [] and page.total == 0
    doc = parse(client.get("/approvals").text)
    assert doc.by_id(row_id(iid, "main", "decision")) is None
    assert "Nothing waits for you." in client.get("/approvals").text


def test_approve_from_the_inbox(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post("/approvals/decide", data=_form(iid, "approve"), headers=HX)
    assert response.status_code == 200
    assert response.template.name == "partials/approval_row.html"
    roots = [n for n in parse(response.text).children if not isinstance(n, str)]
    assert [r.attrs["id"] for r in roots] == [row_id(iid, "main", "decision")]
    assert "Approved by you · now completed" in response.text
    assert engine.get(iid).status == "completed"
    assert TRACE[-2:] == ["approved by alice via web", "book"]


def test_deny_needs_a_reason(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post("/approvals/decide", data=_form(iid, "deny"), headers=HX)
    assert response.status_code == 422
    assert "a reason is required" in response.text
    row = parse(response.text).by_id(row_id(iid, "main", "decision"))
    assert row is not None and row.find_all("form")  # still decidable
    assert engine.get(iid).status == "waiting"
    ok = alice.post("/approvals/decide", data=_form(iid, "deny", "not now"), headers=HX)
    assert ok.status_code == 200 and "Denied by you" in ok.text
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via, decision.message) == ("alice", "web", "denied: not now")


def test_stale_decision_in_the_inbox(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    engine.send(iid, "decision", {"approved": False, "reason": "no"}, actor="alice", via="api")
    response = alice.post("/approvals/decide", data=_form(iid, "approve"), headers=HX)
    assert response.status_code == 409
    assert "already decided: denied by alice at 2026-01-05 09:00:00 UTC" in response.text
    assert engine.get(iid).error == "denied: no"


def test_a_double_submit_from_the_inbox_decides_once(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    row = parse(alice.get("/approvals").text).by_id(row_id(iid, "main", "decision"))
    assert row is not None
    # Approve, then the reason and Deny: the order they are seen; Enter in the reason denies
    form, deny_form = [
        f for f in row.find_all("form") if (f.attrs.get("action") or "").endswith("/decide")
    ]
    buttons = [b.attrs.get("value") for b in form.find_all("button") + deny_form.find_all("button")]
    assert buttons == ["approve", "deny"]
    assert [i.attrs.get("name") for i in deny_form.find_all("input")][-1] == "reason"
    assert not any(n.attrs.get("data-confirm") for n in row.iter())  # no question asked
    approve = {**form_data(form), "decision": "approve"}
    assert approve["key"] == engine.get(iid).threads[0].waits[0].key != ""
    first = alice.post("/approvals/decide", data=approve, headers=HX)
    assert first.status_code == 200 and "Approved by you" in first.text
    second = alice.post("/approvals/decide", data=approve, headers=HX)
    assert second.status_code == 409
    assert "already decided: approved by alice at 2026-01-05 09:00:00 UTC" in second.text
    assert [h.kind for h in engine.history(iid)].count("decision") == 1
    assert TRACE.count("approved by alice via web") == 1


def test_not_an_approver_is_refused(client: TestClient, engine: Engine) -> None:
    client.headers.update({"X-CSRF-Token": sign_in(client, "bob"), "Origin": ORIGIN})
    iid = engine.start("Trip", {})
    response = client.post("/approvals/decide", data=_form(iid, "approve"), headers=HX)
    assert response.status_code == 403
    assert "bob may not decide this" in response.text
    assert engine.get(iid).status == "waiting"


def test_incomplete_or_unknown(alice: TestClient, engine: Engine) -> None:
    assert (
        alice.post("/approvals/decide", data={"decision": "approve"}, headers=HX).status_code == 400
    )
    assert (
        alice.post("/approvals/decide", data=_form("nope", "approve"), headers=HX).status_code
        == 404
    )
    iid = engine.start("Trip", {})
    assert alice.post("/approvals/decide", data=_form(iid, "maybe"), headers=HX).status_code == 400
    assert engine.get(iid).status == "waiting"


def test_without_htmx_redirects_back_with_flash(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post("/approvals/decide", data=_form(iid, "approve"))
    assert response.status_code == 303 and response.headers["location"] == "/approvals"
    assert alice.get("/approvals").context["chrome"].flash.message.startswith("Approved")


def test_escalation_widens_who_sees_it(client: TestClient, engine: Engine, clock: Any) -> None:
    sign_in(client, "carol")
    iid = engine.start("Expense", {"amount": 10})
    assert client.get("/approvals").context["page"].mine == []
    clock.advance(days=1, minutes=1)
    engine.run_due()
    sign_in(client, "carol")  # a session lasts 12 hours, however it is used
    mine = client.get("/approvals").context["page"].mine
    assert [i.instance_id for i in mine] == [iid]


def test_inbox_rows_carry_the_key_of_the_current_round(any_url: str, clock: Any) -> None:
    """The key is read inside the database (SQLite's and PostgreSQL's JSON functions)."""
    engine = Engine(any_url, workflows=[Rounds], clock=clock)
    try:
        iid = engine.start("Rounds", {})
        for _ in range(2):
            [row] = open_approvals(engine.store)
            assert row["key"] == engine.get(iid).threads[0].waits[0].key != ""
            engine.send(iid, "decision", {"approved": False, "reason": "again"}, actor="alice")
        [row] = open_approvals(engine.store)
        assert row["key"] == engine.get(iid).threads[0].waits[0].key
        assert row["title"] == "Round 2"
    finally:
        engine.close()


def test_the_inbox_pages_oldest_first_with_true_counts(
    alice: TestClient, engine: Engine, clock: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("signoff.web.approvals.PAGE_SIZE", 2)
    ids = []
    for n in range(5):
        ids.append(engine.start("Trip", {"who": f"p{n}"}, id=f"t{n}"))
        if n != 1:  # t1 and t2 began at the same moment: their row ids order them
            clock.advance(minutes=1)
    pages, shown, path = [], [], "/approvals"
    while True:
        response = alice.get(path)
        page: ApprovalsPage = response.context["page"]
        pages.append([i.instance_id for i in page.mine])
        shown.append(page.shown)
        assert page.total == 5
        if page.next_query is None:
            break
        path = "/approvals" + page.next_query
        assert f'href="{path.replace("&", "&amp;")}" rel="next"' in response.text
    assert pages == [ids[:2], ids[2:4], ids[4:]]
    assert shown == ["1\u20132 of 5", "3\u20134 of 5", "5\u20135 of 5"]
    # an approval beyond the first page is decided from its own row
    response = alice.post("/approvals/decide", data=_form(ids[4], "deny"), headers=HX)
    assert response.status_code == 422
    assert parse(response.text).by_id(row_id(ids[4], "main", "decision")).find_all("form")
