"""What people call an instance (DESIGN, "The instance's name"): `Workflow.instance_title()`,
else the title of its open approval, else the workflow's name; in the engine's views and
everywhere the dashboard names an instance, with the id kept in the URL and small print."""

from __future__ import annotations

from signoff.engine import Approval, Engine, On, S, Statement, Step, Wait, Workflow
from web_support import HX, Node, TestClient, parse

pytest_plugins = ["web_fixtures"]


class Named(Workflow):
    who: str = "bob"
    amount: int = 1

    def instance_title(self) -> str | None:
        return f"Claim of {self.amount} EUR by {self.who}" if self.who else None

    def definition(self) -> Statement:
        return S(
            Step("record", lambda: None),
            Wait("ok", On("decision", Approval(title=f"Approve {self.who}", approvers=["alice"]))),
        )


class Unnamed(Workflow):
    who: str = "bob"

    def definition(self) -> Statement:
        return S(Wait("ok", On("decision", Approval(title=f"Approve {self.who}"))))


class Broken(Workflow):
    def instance_title(self) -> str | None:
        raise RuntimeError("a bug in the workflow's own code")

    def definition(self) -> Statement:
        return S(Wait("ok", On("decision", Approval(title="The request"))))


class Wordy(Workflow):
    def instance_title(self) -> str | None:
        return "word " * 200

    def definition(self) -> Statement:
        return S(Step("done", lambda: None))


def _engine(url: str) -> Engine:
    return Engine(url, workflows=[Named, Unnamed, Broken, Wordy], operators=["alice"])


def test_every_view_names_the_instance(any_url: str) -> None:
    engine = _engine(any_url)
    try:
        named = engine.start("Named", {"who": "erin", "amount": 12})
        nameless = engine.start("Named", {"who": ""})  # answers None: its approval's title
        unnamed = engine.start("Unnamed", {"who": "gina"})
        broken = engine.start("Broken", {})
        wordy = engine.start("Wordy", {})
        assert engine.get(named).title == "Claim of 12 EUR by erin"
        assert engine.get(nameless).title == "Approve"
        assert engine.get(unnamed).title == "Approve gina"
        assert engine.get(broken).title == "The request"  # its fallback, never an error
        assert len(engine.get(wordy).title) == 300 and engine.get(wordy).title.endswith("…")
        listed = {s.id: s.title for s in engine.list()}
        assert listed[named] == "Claim of 12 EUR by erin"
        assert listed[unnamed] == "Approve gina" and listed[broken] == "The request"
        assert listed[wordy] == engine.get(wordy).title
        inbox = {r["instance_id"]: r for r in engine.inbox("alice")}
        assert inbox[named]["instance_title"] == "Claim of 12 EUR by erin"
        assert inbox[named]["title"] == "Approve erin"  # the request's own title stays
        assert inbox[unnamed]["instance_title"] == "Approve gina"
        # once nothing is open, a workflow without a title of its own is called by its name
        engine.send(unnamed, "decision", {"approved": True}, actor="alice")
        assert engine.get(unnamed).title == "Unnamed"
        assert {s.id: s.title for s in engine.list()}[unnamed] == "Unnamed"
        assert engine.get(unnamed).to_dict()["title"] == "Unnamed"
    finally:
        engine.close()


def test_the_example_workflows_name_their_instances(engine: Engine) -> None:
    expense = engine.start("Expense", {"employee": "bob", "amount": 120})
    report = engine.start("Onboarding", {"person": "dana", "team": "platform"})
    engine.send(expense, "decision", {"approved": True}, actor="alice")
    assert engine.get(expense).title == "Expense: 120 EUR for bob"  # after it ended, too
    assert engine.get(report).title == "Onboarding dana (platform)"


def _first(node: Node, tag: str, cls: str) -> Node:
    return next(n for n in node.find_all(tag) if cls in (n.attrs.get("class") or "").split())


def test_the_dashboard_shows_titles_and_keeps_ids_in_small_print(
    alice: TestClient, engine: Engine
) -> None:
    iid = engine.start("Expense", {"employee": "bob", "amount": 120})
    html = parse(alice.get(f"/instances/{iid}").text)
    assert html.find_all("title")[0].text.startswith("Expense: 120 EUR for bob")
    heading = html.find_all("h1")[0].text
    assert heading.startswith("Expense: 120 EUR for bob") and iid not in heading
    assert "Expense: 120 EUR for bob" in _first(html, "nav", "crumbs").text
    assert iid in _first(html, "dl", "facts").text  # the id, in small print
    listed = parse(alice.get("/").text).by_id(f"i-{iid}")
    assert listed is not None and _first(listed, "a", "title").text == "Expense: 120 EUR for bob"
    inbox = parse(alice.get("/approvals").text).by_id("approvals")
    assert inbox is not None and _first(inbox, "a", "title").text == "Expense: 120 EUR for bob"


def test_bulk_reports_name_instances_by_title(alice: TestClient, engine: Engine) -> None:
    ids = [engine.start("Expense", {"employee": f"p{n}", "amount": n}) for n in range(2)]
    engine.cancel(ids[1], actor="alice")
    response = alice.post("/instances-bulk", data={"action": "cancel", "pick": ids}, headers=HX)
    report = parse(response.text).by_id("bulk-report")
    assert report is not None
    assert "Expense: 0 EUR for p0: cancelled" in " ".join(report.text.split())
    assert "Expense: 1 EUR for p1:" in report.text  # refused, and still named by its title
