"""Bulk actions: select many rows and decide, retry or cancel them; each row on its own (one
refusal does not stop the rest), each reported, each only where the engine allows it."""

from __future__ import annotations

from typing import Any

from signoff.engine import Engine
from signoff.web.approvals import MAX_BULK, ApprovalsPage
from web_support import HX, ORIGIN, TestClient, sign_in

pytest_plugins = ["web_fixtures"]


def _pick(iid: str, key: str) -> str:
    return "\x1f".join((iid, "main", "decision", key))


def test_approve_200_rows_with_refusals_mixed_in(alice: TestClient, engine: Engine) -> None:
    ids = [engine.start("Trip", {"who": f"p{n}"}, id=f"trip-{n:03}") for n in range(200)]
    keys = {iid: engine.get(iid).threads[0].waits[0].key for iid in ids}
    stale = ids[::10]  # decided elsewhere meanwhile: 20 of them
    for iid in stale:
        engine.send(iid, "decision", {"approved": False, "reason": "no"}, actor="alice")
    picks = [_pick(iid, keys[iid]) for iid in ids] + ["garbage", _pick("nope", "k")]
    response = alice.post("/approvals/bulk", data={"action": "approve", "pick": picks}, headers=HX)
    assert response.status_code == 200
    page: ApprovalsPage = response.context["page"]
    assert page.report_title == "Approved 180 of 202; 22 refused (below, with why)."
    by_label = {r.label: r for r in page.report}
    for iid in ids:
        if iid in stale:
            assert not by_label[iid].ok and "already decided" in by_label[iid].message
            assert engine.get(iid).data["approved"] is False
        else:
            assert by_label[iid].ok and by_label[iid].message == "approved; now completed"
            assert engine.get(iid).status == "completed"
    assert not by_label["garbage"].ok and "not a request" in by_label["garbage"].message
    assert not by_label["nope"].ok and "no instance" in by_label["nope"].message
    assert page.total == 0  # nothing left to decide


def test_deny_many_with_one_reason(alice: TestClient, engine: Engine) -> None:
    ids = [engine.start("Trip", {}) for _ in range(3)]
    picks = [_pick(i, engine.get(i).threads[0].waits[0].key) for i in ids]
    without = alice.post("/approvals/bulk", data={"action": "deny", "pick": picks}, headers=HX)
    assert without.status_code == 422 and "Say why" in without.text
    assert all(engine.get(i).status == "waiting" for i in ids)
    done = alice.post(
        "/approvals/bulk", data={"action": "deny", "pick": picks, "reason": "budget"}, headers=HX
    )
    assert done.status_code == 200
    assert [engine.get(i).data["note"] for i in ids] == ["budget"] * 3


def test_bulk_refusals_change_nothing(client: TestClient, engine: Engine) -> None:
    client.headers.update({"X-CSRF-Token": sign_in(client, "carol"), "Origin": ORIGIN})
    ids = [engine.start("Trip", {}) for _ in range(3)]
    picks = [_pick(i, "") for i in ids]
    response = client.post("/approvals/bulk", data={"action": "approve", "pick": picks})
    assert response.status_code == 409  # carol is no approver of trips: every row refused
    # carol takes no part in them: she is told no such instance, not who may decide
    assert all("no instance with id" in r.message for r in response.context["page"].report)
    assert all(engine.get(i).status == "waiting" for i in ids)
    too_many = client.post(
        "/approvals/bulk", data={"action": "approve", "pick": picks * (MAX_BULK // 3 + 1)}
    )
    assert too_many.status_code == 413
    assert client.post("/approvals/bulk", data={"action": "eat", "pick": picks}).status_code == 400
    assert client.post("/approvals/bulk", data={"action": "approve"}).status_code == 422
    # without the CSRF token nothing happens
    client.headers.pop("X-CSRF-Token")
    assert (
        client.post("/approvals/bulk", data={"action": "approve", "pick": picks}).status_code == 403
    )


def test_operators_retry_and_cancel_in_bulk(alice: TestClient, engine: Engine, client: Any) -> None:
    failed = []
    for n in range(4):
        iid = engine.start("Trip", {"fail_booking": True}, id=f"f{n}")
        engine.send(iid, "decision", {"approved": True}, actor="alice")
        failed.append(iid)
    waiting = engine.start("Trip", {}, id="w0")
    response = alice.post(
        "/instances-bulk", data={"action": "retry", "pick": [*failed, waiting]}, headers=HX
    )
    assert response.status_code == 200
    page = response.context["page"]
    assert page.report_title == "Retried 4 of 5; 1 refused (below, with why)."
    assert [r.ok for r in page.report] == [True] * 4 + [False]
    cancel = alice.post(
        "/instances-bulk",
        data={"action": "cancel", "pick": [waiting, *failed], "reason": "clean up"},
        headers=HX,
    )
    assert cancel.status_code == 200
    assert all(engine.get(i).status == "cancelled" for i in [waiting, *failed])
    assert engine.outcome(waiting).cancel_reason == "clean up"


def test_only_operators_retry_or_cancel(client: TestClient, engine: Engine) -> None:
    client.headers.update({"X-CSRF-Token": sign_in(client, "carol"), "Origin": ORIGIN})
    iid = engine.start("Trip", {}, actor="carol")  # her own request: she sees it
    page = client.get("/")
    assert 'id="bulk-instances"' not in page.text  # no controls for carol
    response = client.post("/instances-bulk", data={"action": "cancel", "pick": [iid]})
    assert response.status_code == 409 and "operator" in response.text
    assert engine.get(iid).status == "waiting"


def test_bulk_controls_show_only_when_a_row_can_be_selected(
    alice: TestClient, engine: Engine
) -> None:
    """An empty inbox or a list of finished instances offers nothing to select, so it shows no
    "Approve selected" or "Cancel selected" bar (on a phone it took a screen for nothing)."""
    empty = alice.get("/approvals")
    assert "Nothing waits for you." in empty.text and 'id="bulk"' not in empty.text
    iid = engine.start("Trip", {}, id="t1")
    assert 'id="bulk"' in alice.get("/approvals").text
    assert 'id="bulk-instances"' in alice.get("/").text  # a waiting instance: cancel it
    engine.cancel(iid, actor="alice")
    assert 'id="bulk"' not in alice.get("/approvals").text
    listed = alice.get("/")
    assert "t1" in listed.text and 'id="bulk-instances"' not in listed.text
