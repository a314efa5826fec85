"""Issue 12, row by row, in a real headless Chromium against a real uvicorn: the dashboard as
people use it for their daily work, on a laptop (1280x800) and a phone (390x844).

Every page visited is checked the same way (`look`): axe-core finds no serious or critical
violation in the light and the dark colour scheme, the page never scrolls sideways, and no
script error or CSP violation happened. Screenshots go to a temporary folder, or to
$SIGNOFF_SCREENSHOTS (`make screenshots`). Skipped, saying why, without Chromium or Playwright.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web.examples import UPSTREAM, WORKFLOWS, seed
from signoff.web.links import approval_link
from web_support import PASSWORDS, make_app, user_hashes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
SECRET = "browser-secret"


def _axe_source() -> str:
    try:
        import axe_playwright_python
    except ImportError:
        pytest.skip("axe-playwright-python (which ships axe-core) is not installed")
    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


@pytest.fixture(scope="module")
def site(tmp_path_factory: Any) -> Iterator[tuple[str, Engine, dict[str, str]]]:
    """A server with the demo's instances, plus enough of them to page through."""
    import uvicorn

    folder = tmp_path_factory.mktemp("dash")
    engine = Engine(
        f"sqlite:///{folder}/dash.db", workflows=WORKFLOWS, synchronous="NORMAL",
        operators=["alice"],
    )  # fmt: skip
    rate, UPSTREAM.failure_rate = UPSTREAM.failure_rate, 0.0
    seed(engine)
    ids: dict[str, str] = {}
    for s in engine.list(limit=50):
        ids.setdefault(s.outcome, s.id)
    for n in range(60):  # alice has more than a page of requests
        engine.start("Expense", {"employee": f"e{n:02}", "amount": 10 + n})
    ids["long"] = engine.start(
        "Expense", {"employee": "zoe", "amount": 7, "description": "x" * 3000}
    )
    ids["cancelled"] = engine.start("Expense", {"employee": "yan", "amount": 9})
    engine.cancel(ids["cancelled"], "duplicate of another claim", actor="alice")
    ids["fresh"] = engine.start("Expense", {"employee": "quinn", "amount": 33})
    app = make_app(engine, users=user_hashes(), secret_key=SECRET)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", engine, ids
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()
        UPSTREAM.failure_rate, UPSTREAM.fail_next = rate, 0


class Visit:
    """One person in one browser window of one size; `look` checks the page it is on."""

    def __init__(
        self, browser: Any, base: str, size: str, shots: Path, user: str, **options: Any
    ) -> None:
        width, height = SIZES[size]
        self.context = browser.new_context(viewport={"width": width, "height": height}, **options)
        self.page = self.context.new_page()
        self.base, self.size, self.shots = base, size, shots
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.axe = _axe_source()
        self.page.on("dialog", self._dialog)
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        if user:
            self.page.goto(base + "/login")
            self.page.fill("input[name=username]", user)
            self.page.fill("input[name=password]", PASSWORDS[user])
            self.page.click("button:has-text('Sign in')")
            self.page.wait_for_url(base + "/")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept()

    def go(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def look(self, name: str, *, errors_expected: bool = False) -> None:
        page = self.page
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.evaluate(self.axe)
            found = page.evaluate(
                "axe.run(document, {resultTypes: ['violations']})"
                ".then(r => r.violations.filter(v => ['serious', 'critical'].includes(v.impact))"
                ".map(v => v.id + ': ' + v.nodes.slice(0, 3)"
                ".map(n => n.target.join(' ')).join(' | ')))"
            )
            assert found == [], f"{name} ({scheme}, {self.size}): {found}"
        page.emulate_media(color_scheme="light")
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{name} ({self.size}) scrolls sideways by {wide}px"
        width, height = SIZES[self.size]
        tall = page.evaluate("document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": width, "height": min(tall, height * 2)}
        shot = str(self.shots / f"{name}-{self.size}.png")
        page.screenshot(path=shot, full_page=True, clip=clip)
        if not errors_expected:
            self.assert_quiet()

    def assert_quiet(self) -> None:
        assert not self.problems, self.problems

    def close(self) -> None:
        self.context.close()


@pytest.fixture(params=list(SIZES))
def alice(request: Any, browser: Any, site: Any, shots: Path) -> Iterator[Visit]:
    visit = Visit(browser, site[0], request.param, shots, "alice")
    yield visit
    visit.close()


def test_every_page_is_accessible_fits_and_says_what_happened(alice: Visit, site: Any) -> None:
    _, _, ids = site
    page = alice.go("/")
    # counts honour every filter; "1-50 of N"; summary fields, not hex ids, lead each row
    assert page.locator("[data-testid=shown]").text_content().startswith("1\u201350 of ")
    assert page.locator("#instances tbody tr").first.locator("a.title").text_content() != ""
    alice.look("instances")
    page = alice.go("/?status=failed&workflow=NightlyReport")
    chip = page.locator(".chip-failed b").text_content()
    rows = page.locator("#instances tbody tr.row-failed").count()
    assert chip == str(rows) == "1"
    page = alice.go("/?workflow=Expense&sort=oldest")
    assert page.locator("thead th", has_text="amount").count() == 1  # the summary fields
    # an id prefix finds the instance; field:value searches the data
    page = alice.go(f"/?q={ids['denied'][:6]}")
    assert page.locator(f"#i-{ids['denied']}").count() == 1
    page = alice.go("/?q=employee:quinn")
    assert page.locator("#instances tbody tr").count() == 1

    # outcomes: a denied expense is not a green "completed"; a cancel reason is no error box
    page = alice.go(f"/instances/{ids['denied']}")
    assert page.locator("h1 .badge").text_content() == "denied by alice"
    assert (
        page.locator(".instance-head .status-completed, .instance-head .outcome-completed").count()
        == 0
    )
    decisions = page.locator(".decisions").text_content()
    assert "alice" in decisions and "over the conference budget" in decisions and "web" in decisions
    alice.look("instance-denied")
    page = alice.go(f"/instances/{ids['cancelled']}")
    assert page.locator(".error-box").count() == 0
    assert "duplicate of another claim" in page.locator(".note-box").text_content()
    page = alice.go(f"/instances/{ids['timed out']}")
    assert page.locator("h1 .badge").text_content() == "timed out"
    page = alice.go(f"/instances/{ids['failed']}")
    assert "failed at 'fetch figures'" in page.locator("h1 .badge").text_content()
    alice.look("failed-instance")

    # times: exact, rounded the right way, the absolute time on screen without hover
    page = alice.go(f"/instances/{ids['fresh']}")
    nexts = page.locator("td[data-label=Next]").first.text_content()
    # started when the module began: on a busy machine a minute or two may have gone by
    assert re.search(r"reminder in (4h|3h 5\dm)", " ".join(nexts.split())), nexts
    timeout = page.locator("tr", has_text="timeout").locator("td[data-label=Next]")
    assert "in 3d" in timeout.text_content()
    assert page.locator(".abs").first.is_visible()
    # Escape closes the Cancel menu
    page.click("summary:has-text('Cancel')")
    assert page.locator("details.menu[open]").count() == 1
    page.keyboard.press("Escape")
    assert page.locator("details.menu[open]").count() == 0
    alice.look("instance")

    # long unbroken text wraps inside its panel
    alice.go(f"/instances/{ids['long']}")
    alice.look("instance-long-text")

    # the tree reads "Then", not "Then then"; the Workflows page shows JSON, not Python reprs
    page = alice.go("/workflows")
    assert "Then then" not in page.locator("main").text_content()
    assert "{'" not in page.locator("main").text_content()
    alice.look("workflows")
    page = alice.go("/api/docs")
    assert page.locator("code", has_text="/api/approvals").count() >= 1
    alice.look("api-docs")
    # a 404 says so once
    page = alice.go("/instances/no-such-thing")
    assert page.locator("text=no instance with id 'no-such-thing'").count() == 1
    alice.look("not-found", errors_expected=True)  # the browser logs the 404 itself


def test_the_inbox_a_person_can_trust(alice: Visit, site: Any) -> None:
    _, engine, ids = site
    page = alice.go("/approvals")
    total = engine.inbox_count("alice")
    assert page.locator("[data-testid=inbox-count]").text_content() == str(total)
    assert total > 25 and page.locator("[data-testid=shown]").text_content() == (
        f"1\u201325 of {total}"
    )
    first = page.locator("#approvals tbody tr").first
    assert first.locator("dl.summary").text_content().split() != []  # amount, employee
    alice.look("approvals")
    # phones: Approve and Deny are within reach, not off to the right
    approve = first.locator("button:has-text('Approve')")
    box = approve.bounding_box()
    assert box is not None and box["x"] + box["width"] <= SIZES[alice.size][0]
    # Sign out is on screen and the name readable
    assert page.locator("button:has-text('Sign out')").first.is_visible()

    # filtered by workflow and searched
    page = alice.go("/approvals?workflow=Purchase")
    assert page.locator("#approvals tbody tr").count() == 1
    page = alice.go("/approvals?q=employee:quinn")
    row = page.locator("#approvals tbody tr").first
    assert "quinn" in row.text_content()
    # a deny without a reason is refused by the browser; nothing asks in a dialog
    alice.dialogs.clear()
    row.locator("button:has-text('Deny')").click()
    assert alice.dialogs == []
    assert engine.get(ids["fresh"]).status == "waiting"
    # Enter in the reason field denies, with that reason, and the row keeps its title
    row.locator("input[name=reason]").fill("numbers look wrong")
    row.locator("input[name=reason]").press("Enter")
    page.wait_for_selector("tr.decided")
    assert alice.dialogs == []
    assert "Expense: 33 EUR for quinn" in page.locator("tr.decided").text_content()
    decision = next(h for h in engine.history(ids["fresh"]) if h.kind == "decision")
    assert decision.message == "denied: numbers look wrong"
    ids["fresh"] = engine.start("Expense", {"employee": "quinn", "amount": 33})
    alice.look("approvals-decided")


def test_bulk_from_the_inbox_reports_each_row(alice: Visit, site: Any) -> None:
    _, engine, _ = site
    mine = [
        engine.start("Expense", {"employee": f"bulk-{alice.size}", "amount": n}) for n in range(3)
    ]
    page = alice.go(f"/approvals?q=employee:bulk-{alice.size}")
    page.locator(".bulk-bar input.pick-all").check()
    waiting = int(page.locator("[data-testid=inbox-count]").text_content() or "0")
    engine.send(mine[0], "decision", {"approved": True}, actor="alice")  # decided meanwhile
    # the page hears of it (the count drops), yet the rows the person ticked stay as they are
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=inbox-count]').textContent === '{waiting - 1}'"
    )
    assert page.locator('#approvals input[name="pick"]:checked').count() == 3
    page.click("button:has-text('Approve 3')")
    page.wait_for_selector("#bulk-report")
    report = page.locator("#bulk-report").text_content()
    assert "Approved 2 of 3" in report and "already decided" in report
    assert [engine.get(i).status for i in mine] == ["completed"] * 3
    alice.look("approvals-bulk")


def test_my_own_decision_s_answer_is_not_taken_over_by_the_live_refresh(
    alice: Visit, site: Any
) -> None:
    """The decision is committed, its answer is slow to come back, and the page hears meanwhile
    that the request left the inbox: the row waits for its own answer ("Approved by you"), not
    "No longer waiting for you", as if someone else had decided it."""
    _, engine, _ = site
    mine = engine.start("Expense", {"employee": f"slow-{alice.size}", "amount": 5})
    page = alice.go(f"/approvals?q=employee:slow-{alice.size}")
    waiting = int(page.locator("[data-testid=inbox-count]").text_content() or "0")

    def answer_late(route: Any) -> None:
        response = route.fetch()  # the server decides now
        time.sleep(2)  # ... and its answer takes a while (the page is live meanwhile)
        route.fulfill(response=response)

    page.route("**/approvals/decide", answer_late)
    page.locator("#approvals tbody tr[data-request]").first.locator("[data-approve]").click()
    page.wait_for_function(  # the refresh came first
        f"() => document.querySelector('[data-testid=inbox-count]').textContent === '{waiting - 1}'"
    )
    page.wait_for_selector("tr.decided:has-text('Approved by you')")
    assert page.locator("tr.decided:has-text('No longer waiting')").count() == 0
    # the answer is legible at every width: on a phone the row is a card, not a cut line
    said = page.locator("tr.decided:has-text('Approved by you') td").bounding_box()
    assert said is not None and said["width"] > 0.8 * SIZES[alice.size][0] - 60
    assert engine.get(mine).status == "completed"
    page.unroute("**/approvals/decide")


def test_a_dead_connection_is_said_out_loud(alice: Visit, site: Any) -> None:
    _, engine, ids = site
    page = alice.go("/approvals?q=employee:quinn")
    alice.context.set_offline(True)
    page.locator("#approvals tbody tr").first.locator("button:has-text('Approve')").click()
    page.wait_for_selector("#connection:not([hidden])")
    # the failed send says so, unless the browser's own "offline" news came just after it
    said = page.locator("#connection").text_content()
    assert "Could not reach the server" in said or "You are offline" in said, said
    alice.context.set_offline(False)
    assert engine.get(ids["fresh"]).status == "waiting"
    alice.problems.clear()  # the browser logs the failed fetch itself


def test_an_approval_link_on_a_phone(browser: Any, site: Any, shots: Path) -> None:
    base, engine, _ = site
    target = engine.start("Expense", {"employee": "link", "amount": 64})
    path = approval_link(engine, SECRET, target, "alice")
    visit = Visit(browser, base, "phone", shots, "")
    try:
        page = visit.go(path)
        assert "Expense: 64 EUR for link" in page.locator("h1").text_content()
        visit.look("approval-link")
        page.click("button:has-text('Approve')")
        page.wait_for_selector("text=This link cannot be used again")
        assert engine.get(target).status == "completed"
        visit.go(path)
        assert "already used" in page.locator("main").text_content()
        visit.look("approval-link-used", errors_expected=True)
    finally:
        visit.close()


def test_sign_in_page(browser: Any, site: Any, shots: Path) -> None:
    for size in SIZES:
        visit = Visit(browser, site[0], size, shots, "")
        try:
            page = visit.go("/login")
            assert page.locator("a.skip").count() == 1
            visit.look("login")
        finally:
            visit.close()
