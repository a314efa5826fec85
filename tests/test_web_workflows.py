"""The workflows page and the start form (web/workflows.py, web/forms.py)."""

from __future__ import annotations

from typing import Any

from signoff.engine import Engine
from signoff.web.workflows import Orphans, Parked, WorkflowsPage, slug
from web_support import (
    HX,
    ORIGIN,
    TestClient,
    make_app,
    parse,
    sign_in,
)

from tests.deploy_workflows import Legacy, OrderV2, OrderV3Bad, seed

pytest_plugins = ["web_fixtures"]


def test_cards_trees_and_counts(alice: TestClient, engine: Engine) -> None:
    engine.start("Trip", {})
    engine.start("Trip", {})
    failed = engine.start("Trip", {"fail_booking": True})
    engine.send(failed, "decision", {"approved": True}, actor="alice")
    response = alice.get("/workflows")
    assert response.template.name == "pages/workflows.html"
    page: WorkflowsPage = response.context["page"]
    names = [c.name for c in page.cards]
    names_shown = ["Trip", "Form", "Expense", "Onboarding", "NightlyReport", "Purchase", "ToolCall"]
    assert names == sorted(names_shown)
    trip = next(c for c in page.cards if c.name == "Trip")
    assert trip.counts == {"approval": 2, "book": 1}
    assert [n["label"] for n in trip.tree["children"]][:2] == ["ask", "approval"]
    assert "alice approves" in trip.doc
    part = alice.get("/workflows", headers=HX)
    assert part.template.name == "partials/workflows.html"


def test_start_form_fields_come_from_the_model(alice: TestClient) -> None:
    page: WorkflowsPage = alice.get("/workflows").context["page"]
    trip = next(c for c in page.cards if c.name == "Trip")
    assert [(f.name, f.kind) for f in trip.form.fields] == [
        ("who", "text"),
        ("days", "integer"),
        ("approved", "checkbox"),
        ("note", "text"),
        ("fail_booking", "checkbox"),
    ]
    expense = next(c for c in page.cards if c.name == "Expense")
    assert [f.name for f in expense.form.fields] == ["employee", "amount", "description"]


def test_start_redirects_to_the_new_instance(alice: TestClient, engine: Engine) -> None:
    response = alice.post(
        "/workflows/Trip/start",
        headers=HX,
        data={"f.who": "zoe", "f.days": "4", "instance_id": "zoe-trip"},
    )
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/instances/zoe-trip"
    view = engine.get("zoe-trip")
    assert view.data["who"] == "zoe" and view.data["days"] == 4
    assert engine.history("zoe-trip")[0].actor == "alice"
    plain = alice.post("/workflows/Trip/start", data={"f.who": "yan"})
    assert plain.status_code == 303 and plain.headers["location"].startswith("/instances/")


def test_invalid_start_shows_the_form_again(alice: TestClient, engine: Engine) -> None:
    response = alice.post(
        "/workflows/Expense/start", headers=HX, data={"f.employee": "x", "f.amount": "-5"}
    )
    assert response.status_code == 422
    assert response.template.name == "partials/start_form.html"
    form = response.context["page"]
    assert "greater than or equal to 0" in form.message
    assert next(f for f in form.fields if f.name == "amount").value == "-5"
    roots = [n for n in parse(response.text).children if not isinstance(n, str)]
    assert [r.attrs["id"] for r in roots] == [slug("Expense")]
    bad_number = alice.post("/workflows/Expense/start", headers=HX, data={"f.amount": "ten"})
    assert bad_number.status_code == 422
    assert bad_number.context["page"].errors == {"amount": "must be a whole number"}
    bad_id = alice.post("/workflows/Trip/start", headers=HX, data={"instance_id": "../etc"})
    assert bad_id.status_code == 422
    dup = alice.post("/workflows/Trip/start", headers=HX, data={"instance_id": "same"})
    assert dup.status_code == 200
    again = alice.post("/workflows/Trip/start", headers=HX, data={"instance_id": "same"})
    assert again.status_code == 409 and "already exists" in again.context["page"].message
    full = alice.post("/workflows/Expense/start", data={"f.amount": "-1"})
    assert full.status_code == 422 and full.template.name == "pages/workflows.html"
    assert [s.id for s in engine.list()] == ["same"]


def test_unknown_workflow(alice: TestClient) -> None:
    assert alice.post("/workflows/Nope/start", data={}).status_code == 404


def test_parked_instances_of_a_deployment_are_listed_with_links(tmp_path: Any, clock: Any) -> None:
    """After a careless deployment (see tests/deploy_workflows.py): each workflow lists the
    statements its instances stand on that the code lacks, linked to examples; a declared
    rename is shown as such; a workflow no longer registered is listed apart."""
    url = f"sqlite:///{tmp_path}/deployed.db"
    seed(url, clock)
    # v2 declares approval -> manager approval; bob views every instance
    deployed = Engine(url, [OrderV2], clock=clock, viewers=["bob"])
    with TestClient(make_app(deployed), base_url=ORIGIN, follow_redirects=False) as c:
        sign_in(c, "bob")
        response = c.get("/workflows")
        page: WorkflowsPage = response.context["page"]
        order = next(card for card in page.cards if card.name == "Order")
        assert order.parked == [
            Parked(statement="approval", count=2, renamed_to="manager approval", examples=[])
        ]
        assert page.orphans == [Orphans("Legacy", 1)]
        doc = parse(response.text)
        orphans = doc.by_id("orphans")
        assert orphans is not None and "Legacy" in orphans.text
        assert [a.attrs["href"] for a in orphans.find_all("a")] == ["/?workflow=Legacy"]
        # the instance page says where a carried-over instance is going, and raises no alarm
        shown = c.get("/instances/a1")
        assert shown.context["page"].moving == [("main", "approval", "manager approval")]
        assert shown.context["page"].missing == []
        assert "renamed to manager approval" in " ".join(parse(shown.text).text.split())
    deployed.close()

    careless = Engine(url, [OrderV3Bad, Legacy], clock=clock, viewers=["bob"])
    with TestClient(make_app(careless), base_url=ORIGIN, follow_redirects=False) as c:
        sign_in(c, "bob")
        response = c.get("/workflows")
        page = response.context["page"]
        order = next(card for card in page.cards if card.name == "Order")
        assert order.parked == [
            Parked(statement="approval", count=2, renamed_to=None, examples=["a1", "a2"]),
            Parked(statement="manager approval", count=1, renamed_to=None, examples=["n1"]),
        ]
        assert page.orphans == []
        box = parse(response.text).by_id(f"parked-{slug('Order')}")
        assert box is not None
        links = [a.attrs["href"] for a in box.find_all("a")]
        assert links == ["/instances/a1", "/instances/a2", "/instances/n1"]
        assert "renamed_from" in box.text and "goto" in box.text
        assert c.get("/instances/a1").status_code == 200
    careless.close()
