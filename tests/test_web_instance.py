"""The instance page and its actions (web/instance.py)."""

from __future__ import annotations

from typing import Any

from signoff.engine import Engine, Return, S, Statement, Step, Workflow
from signoff.web.instance import InstancePage
from web_support import (
    HX,
    ORIGIN,
    TRACE,
    WORKFLOWS,
    Rounds,
    TestClient,
    Trip,
    form_data,
    make_app,
    parse,
    sign_in,
)

pytest_plugins = ["web_fixtures"]


def test_page_and_fragment(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {"who": "bob"}, id="trip-7")
    full = alice.get(f"/instances/{iid}")
    assert full.status_code == 200
    assert full.template.name == "pages/instance.html"
    assert full.headers["vary"].startswith("HX-Request")
    page: InstancePage = full.context["page"]
    assert page.view.status == "waiting"
    assert page.marks == {"approval": ["main (waiting)"]}
    assert [w.view.event for w in page.threads[0].waits] == ["decision", "timeout", "note"]
    assert page.threads[0].waits[0].may_decide  # alice is the approver
    assert page.threads[0].goto_targets == ["ask", "approval", "noted", "book"]
    assert [h.kind for h in page.history] == ["waiting", "step", "started"]
    doc = parse(full.text)
    assert doc.find_all("html") and doc.by_id("instance") is not None
    part = alice.get(f"/instances/{iid}", headers=HX)
    assert part.template.name == "partials/instance.html"
    frag = parse(part.text)
    assert not frag.find_all("html")
    roots = [n for n in frag.children if not isinstance(n, str)]
    assert [r.attrs.get("id") for r in roots] == ["instance"]
    assert roots[0].attrs["hx-trigger"] == "signoff:changed from:body"  # pushed, not polled
    assert roots[0].attrs["hx-swap"] == "outerMorph"


def test_live_refresh_answers_204_while_nothing_changed(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    version = engine.get(iid).version
    same = alice.get(f"/instances/{iid}?since={version}", headers=HX)
    assert same.status_code == 204
    engine.send(iid, "note", {}, actor="bob")
    changed = alice.get(f"/instances/{iid}?since={version}", headers=HX)
    assert changed.status_code == 200
    assert changed.context["page"].view.version > version
    # a full load ignores `since`
    assert alice.get(f"/instances/{iid}?since={engine.get(iid).version}").status_code == 200


def test_finished_instance_stops_polling(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    engine.cancel(iid)
    root = parse(alice.get(f"/instances/{iid}", headers=HX).text).by_id("instance")
    assert root is not None and "hx-trigger" not in root.attrs


def test_unknown_instance(alice: TestClient) -> None:
    response = alice.get("/instances/nope")
    assert response.status_code == 404
    assert response.template.name == "pages/error.html"
    assert "no instance with id" in response.text
    hx = alice.get("/instances/nope", headers=HX)
    assert hx.status_code == 404 and hx.headers["HX-Retarget"] == "#flash"
    act = alice.post("/instances/nope/retry", data={}, headers=HX)
    assert act.status_code == 404 and act.headers["HX-Retarget"] == "#flash"


def test_approve_in_place_records_the_signed_in_user_via_web(
    alice: TestClient, engine: Engine
) -> None:
    iid = engine.start("Trip", {"days": 3})
    response = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "decision", "mode": "approve", "thread": "main"},
    )
    assert response.status_code == 200
    assert response.template.name == "partials/instance.html"
    page = response.context["page"]
    assert page.flash.kind == "ok" and "Approved" in page.flash.message
    assert page.view.status == "completed" and page.view.result == {"booked": 3}
    assert TRACE == ["ask bob", "approved by alice via web", "book"]
    decision = next(h for h in engine.history(iid) if h.kind == "decision")
    assert (decision.actor, decision.via, decision.message) == ("alice", "web", "approved")


def test_deny_needs_a_reason_and_records_it(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    refused = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "decision", "mode": "deny", "reason": "  "},
    )
    assert refused.status_code == 422
    assert "reason is required" in refused.context["page"].flash.message
    assert engine.get(iid).status == "waiting"
    ok = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "decision", "mode": "deny", "reason": "too expensive"},
    )
    assert ok.status_code == 200
    assert engine.get(iid).error == "denied: too expensive"
    assert TRACE == ["ask bob", "denied by alice: too expensive"]


def test_stale_decision_says_who_decided_when(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    engine.send(iid, "decision", {"approved": True}, actor="alice", via="slack")
    before = engine.get(iid).version
    response = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "decision", "mode": "deny", "reason": "late"},
    )
    assert response.status_code == 409
    message = response.context["page"].flash.message
    assert "already decided: approved by alice at 2026-01-05 09:00:00 UTC" in message
    assert engine.get(iid).version == before


def test_only_named_approvers_may_decide(client: TestClient, engine: Engine) -> None:
    client.headers["X-CSRF-Token"] = sign_in(client, "bob")
    iid = engine.start("Trip", {})
    page = client.get(f"/instances/{iid}").context["page"]
    assert not page.threads[0].waits[0].may_decide
    response = client.post(
        f"/instances/{iid}/send",
        headers={**HX, "Origin": ORIGIN},
        data={"event": "decision", "mode": "approve"},
    )
    assert response.status_code == 403
    assert "bob may not decide this: only alice may" in response.context["page"].flash.message
    assert engine.get(iid).status == "waiting"


def test_send_event_with_json_payload(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "note", "mode": "json", "payload": '{"text": "hi"}'},
    )
    assert response.status_code == 200
    event = next(h for h in engine.history(iid) if h.kind == "event")
    assert (event.name, event.actor, event.via, event.detail["payload"]) == (
        "note",
        "alice",
        "web",
        {"text": "hi"},
    )


def test_malformed_payloads_change_nothing(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    before = engine.get(iid).version
    for payload, words in (
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
    ):
        response = alice.post(
            f"/instances/{iid}/send",
            headers=HX,
            data={"event": "note", "mode": "json", "payload": payload},
        )
        assert response.status_code == 422
        assert words in response.context["page"].flash.message
    unknown = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "nothing", "mode": "json", "payload": "{}"},
    )
    assert unknown.status_code == 409
    assert "not waiting for 'nothing'" in unknown.context["page"].flash.message
    no_event = alice.post(f"/instances/{iid}/send", headers=HX, data={"mode": "json"})
    assert no_event.status_code == 422
    assert engine.get(iid).version == before


def test_input_form_is_generated_and_validated(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Form", {})
    page = alice.get(f"/instances/{iid}")
    fields = page.context["page"].threads[0].waits[0].fields
    assert [(f.name, f.kind, f.required) for f in fields] == [
        ("size", "integer", True),
        ("colour", "text", False),
    ]
    doc = parse(page.text)
    assert doc.find_all("input", name="f.size", type="number")[0].attrs["max"] == "10"
    bad = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "details", "mode": "input", "f.size": "99"},
    )
    assert bad.status_code == 422
    assert "less than or equal to 10" in bad.context["page"].flash.message
    worse = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "details", "mode": "input", "f.size": "big"},
    )
    assert worse.status_code == 422 and "whole number" in worse.context["page"].flash.message
    good = alice.post(
        f"/instances/{iid}/send",
        headers=HX,
        data={"event": "details", "mode": "input", "f.size": "4", "f.colour": "red"},
    )
    assert good.status_code == 200
    assert engine.get(iid).result == {"size": 4, "colour": "red"}


def test_retry_a_failed_step(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {"fail_booking": True})
    engine.send(iid, "decision", {"approved": True}, actor="alice")
    page = alice.get(f"/instances/{iid}").context["page"]
    thread = page.threads[0]
    assert thread.view.status == "failed" and thread.retryable
    assert "RuntimeError: booking system down" in thread.view.error
    assert "Traceback" in thread.view.traceback
    doc = parse(alice.get(f"/instances/{iid}").text)
    assert doc.find_all("form", hx_post=f"/instances/{iid}/retry")
    response = alice.post(f"/instances/{iid}/retry", headers=HX, data={"thread": "main"})
    assert response.status_code == 200
    assert response.context["page"].view.status == "failed"  # still down: fails again, visibly
    assert TRACE.count("book") == 2
    retry = next(h for h in engine.history(iid) if h.kind == "retry")
    assert (retry.actor, retry.via) == ("alice", "web")


def test_retry_without_failure_is_a_conflict(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post(f"/instances/{iid}/retry", headers=HX, data={})
    assert response.status_code == 409
    assert "has no failed thread to retry" in response.context["page"].flash.message


def test_cancel_with_reason(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post(f"/instances/{iid}/cancel", headers=HX, data={"reason": "duplicate"})
    assert response.status_code == 200
    view = engine.get(iid)
    assert (view.status, view.error) == ("cancelled", "duplicate")
    entry = engine.history(iid)[-1]
    assert (entry.kind, entry.actor, entry.via) == ("cancelled", "alice", "web")
    again = alice.post(f"/instances/{iid}/cancel", headers=HX, data={})
    assert again.status_code == 409 and "already cancelled" in again.context["page"].flash.message


def test_goto_moves_a_thread(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {"fail_booking": False})
    response = alice.post(
        f"/instances/{iid}/goto", headers=HX, data={"thread": "main", "step": "book"}
    )
    assert response.status_code == 200
    assert engine.get(iid).status == "completed"
    entry = next(h for h in engine.history(iid) if h.kind == "goto")
    assert (entry.name, entry.actor, entry.via) == ("book", "alice", "web")
    assert TRACE == ["ask bob", "book"]


def test_goto_unknown_step(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post(
        f"/instances/{iid}/goto", headers=HX, data={"thread": "main", "step": "nowhere"}
    )
    assert response.status_code == 409
    assert "no step or wait named 'nowhere'" in response.context["page"].flash.message
    missing = alice.post(f"/instances/{iid}/goto", headers=HX, data={"thread": "main"})
    assert missing.status_code == 422


def test_without_htmx_actions_redirect_with_a_flash(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    response = alice.post(f"/instances/{iid}/send", data={"event": "decision", "mode": "approve"})
    assert response.status_code == 303 and response.headers["location"] == f"/instances/{iid}"
    landed = alice.get(f"/instances/{iid}")
    assert landed.context["chrome"].flash.message.startswith("Approved")
    assert alice.get(f"/instances/{iid}").context["chrome"].flash is None  # shown once


class TripV2(Workflow):
    """Trip after a deployment that renamed the approval wait."""

    workflow_name = "Trip"
    who: str = "bob"
    days: int = 1
    approved: bool = False
    note: str = ""
    fail_booking: bool = False

    def definition(self) -> Statement:
        return S(Step("ask", lambda: None), Step("book", lambda: None), Return("v2"))


def test_missing_statement_is_highlighted(engine: Engine, tmp_path: Any, clock: Any) -> None:
    iid = engine.start("Trip", {})
    deployed = Engine(
        engine.store.url, workflows=[TripV2, *WORKFLOWS[1:]], clock=clock, operators=["alice"]
    )
    app = make_app(deployed)
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        sign_in(c, "alice")
        page = c.get(f"/instances/{iid}").context["page"]
        assert page.missing == [("main", "approval")]
        assert page.threads[0].missing
        doc = parse(c.get(f"/instances/{iid}").text)
        warn = [n.text for n in doc.find_all("div", **{"class": "warn stranded"})]
        assert any("no longer has" in w and "approval" in w for w in warn)
        assert any("renamed_from" in w and "Retry" in w and "move the thread" in w for w in warn)
        assert "missing from the definition" in doc.text
    deployed.close()
    assert Trip  # the original class stays registered in `engine`


def test_go_threads_are_marked_in_the_tree(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Onboarding", {})
    page = alice.get(f"/instances/{iid}").context["page"]
    assert page.go_marks == {"accounts": ["it (waiting)"]}
    assert page.marks == {"security training": ["it (waiting)"], "equipment": ["main (waiting)"]}
    doc = parse(alice.get(f"/instances/{iid}").text)
    here = [n for n in doc.find_all("li") if "is-here" in n.attrs.get("class", "")]
    assert len(here) == 2


# --- stale clicks: every form names the opening of the wait it was drawn for ------------------


def _approve_form(html: str, iid: str) -> dict[str, str]:
    forms = [
        f
        for f in parse(html).find_all("form", hx_post=f"/instances/{iid}/send")
        if form_data(f).get("mode") == "approve"
    ]
    assert len(forms) == 1
    return form_data(forms[0])


def test_every_send_form_carries_the_wait_key(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    key = engine.get(iid).threads[0].waits[0].key
    doc = parse(alice.get(f"/instances/{iid}").text)
    sends = doc.find_all("form", hx_post=f"/instances/{iid}/send")
    assert {form_data(f)["mode"] for f in sends} == {"approve", "deny", "json"}
    assert all(form_data(f)["wait_key"] == key for f in sends) and key


def test_a_double_submit_decides_once(alice: TestClient, engine: Engine) -> None:
    iid = engine.start("Trip", {})
    form = _approve_form(alice.get(f"/instances/{iid}").text, iid)
    first = alice.post(f"/instances/{iid}/send", headers=HX, data=form)
    assert first.status_code == 200 and "Approved." in first.text
    second = alice.post(f"/instances/{iid}/send", headers=HX, data=form)
    assert second.status_code == 409
    assert "already decided: approved by alice at 2026-01-05 09:00:00 UTC" in second.text
    assert [h.kind for h in engine.history(iid)].count("decision") == 1
    assert TRACE.count("approved by alice via web") == 1 and engine.get(iid).status == "completed"
    # without htmx, the same refusal comes back on the page the redirect lands on
    again = alice.post(f"/instances/{iid}/send", data=form)
    assert again.status_code == 303
    assert "already decided" in alice.get(f"/instances/{iid}").context["chrome"].flash.message


def test_a_page_from_an_earlier_round_cannot_decide_the_next(tmp_path: Any, clock: Any) -> None:
    engine = Engine(f"sqlite:///{tmp_path}/rounds.db", workflows=[Rounds], clock=clock)
    with TestClient(make_app(engine), base_url=ORIGIN, follow_redirects=False) as alice:
        alice.headers.update({"X-CSRF-Token": sign_in(alice, "alice"), "Origin": ORIGIN})
        iid = engine.start("Rounds", {})
        stale = _approve_form(alice.get(f"/instances/{iid}").text, iid)
        engine.send(iid, "decision", {"approved": False, "reason": "again"}, actor="carol")
        assert engine.get(iid).status == "waiting"  # round 1 asks the same question
        refused = alice.post(f"/instances/{iid}/send", headers=HX, data=stale)
        assert refused.status_code == 409
        assert "already decided: denied by carol" in refused.text
        assert engine.get(iid).status == "waiting" and engine.get(iid).data["round"] == 1
        fresh = _approve_form(alice.get(f"/instances/{iid}").text, iid)
        assert fresh["wait_key"] != stale["wait_key"]
        done = alice.post(f"/instances/{iid}/send", headers=HX, data=fresh)
        assert done.status_code == 200 and engine.get(iid).result == {"rounds": 1}
    engine.close()
