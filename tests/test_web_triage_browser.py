"""Issue 24 in a real headless Chromium against a real uvicorn: triage in seconds, for the people
who decide. Ten approvals with the mouse in at most eleven clicks, no dialog and nothing moving
under the pointer, refreshes included; five with the keyboard in at most twenty keys; focus on
the next request after each decision; destructive bulk actions confirmed in the page, saying how
many. Pages are checked as test_web_dashboard_browser.py checks them (`Visit.look`: axe, no
sideways scroll, no script or CSP error) and photographed into $SIGNOFF_SCREENSHOTS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from signoff.engine import Engine
from signoff.web.examples import UPSTREAM, WORKFLOWS
from test_web_browser import CHROMIUM_ARGS, _chromium
from test_web_dashboard_browser import SIZES, Visit
from web_support import make_app, user_hashes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COUNT_CLICKS = """() => { window.__clicks = 0; window.__keys = 0;
  document.addEventListener('mousedown', () => { window.__clicks += 1; }, true);
  document.addEventListener('keydown', () => { window.__keys += 1; }, true); }"""
FOCUSED_ROW = "() => (document.activeElement.closest('tr') || {}).id"
FOCUSED = "() => document.activeElement.getAttribute('data-approve') !== null"


def _serve(app: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

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
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="module")
def site(tmp_path_factory: Any) -> Iterator[tuple[str, Engine]]:
    folder = tmp_path_factory.mktemp("triage")
    engine = Engine(
        f"sqlite:///{folder}/triage.db", workflows=WORKFLOWS, synchronous="NORMAL",
        operators=["carol"],
    )  # fmt: skip
    rate, UPSTREAM.failure_rate = UPSTREAM.failure_rate, 0.0
    base, server, thread = _serve(make_app(engine, users=user_hashes()))
    try:
        yield base, engine
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()
        UPSTREAM.failure_rate, UPSTREAM.fail_next = rate, 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("SIGNOFF_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _requests(engine: Engine, tag: str, n: int) -> list[str]:
    return [
        engine.start("Expense", {"employee": f"{tag}-{i:02}", "amount": 100 + i}) for i in range(n)
    ]


def _approve_boxes(page: Any) -> dict[str, tuple[float, float]]:
    """Where every row of the inbox stands now, by id."""
    found: dict[str, tuple[float, float]] = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#approvals tbody tr')]"
        ".map(r => { const b = r.getBoundingClientRect(); return [r.id, [b.top, b.height]]; }))"
    )
    return {k: (round(v[0]), round(v[1])) for k, v in found.items()}


def test_ten_approvals_by_mouse(browser: Any, site: Any, shots: Path) -> None:
    base, engine = site
    ids = _requests(engine, "mouse", 12)
    alice = Visit(browser, base, "desktop", shots, "alice")
    try:
        page = alice.go("/approvals?q=employee:mouse-")
        page.evaluate(COUNT_CLICKS)
        rows = page.locator("#approvals tbody tr[data-request]")
        assert rows.count() == 12
        for n in range(10):
            row = page.locator("#approvals tbody tr[data-request]").first
            rid = row.get_attribute("id")
            box = row.locator("[data-approve]").bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_selector(f"#{rid}.decided")
            # one line, saying what happened, in the row's place
            decided = page.locator(f"#{rid}")
            assert "Approved by you" in decided.text_content()
            assert decided.bounding_box()["height"] < 40
            # the next request's Approve has the focus
            page.wait_for_function(FOCUSED)
            if n < 9:
                following = page.locator("#approvals tbody tr[data-request]").first
                assert page.evaluate(FOCUSED_ROW) == following.get_attribute("id")
        assert page.evaluate("window.__clicks") == 10 <= 11
        assert alice.dialogs == []
        assert [engine.get(i).status for i in ids[:10]] == ["completed"] * 10
        assert [engine.get(i).status for i in ids[10:]] == ["waiting"] * 2
        before = _approve_boxes(page)
        # a decision made elsewhere, then the live refresh: nothing moves under the pointer
        engine.send(ids[11], "decision", {"approved": True}, actor="alice", via="api")
        page.wait_for_timeout(11_000)
        assert _approve_boxes(page) == before
        assert "No longer waiting" in page.locator("#approvals tbody tr").last.text_content()
        alice.look("approvals-ten-decided")
    finally:
        alice.close()


def test_five_approvals_by_keyboard(browser: Any, site: Any, shots: Path) -> None:
    base, engine = site
    ids = _requests(engine, "keys", 5)
    alice = Visit(browser, base, "desktop", shots, "alice")
    try:
        page = alice.go("/approvals?q=employee:keys-")
        page.evaluate(COUNT_CLICKS)
        page.keyboard.press("?")
        assert page.locator("#keys").is_visible()
        alice.look("approvals-keys")
        page.keyboard.press("?")
        assert not page.locator("#keys").is_visible()
        page.evaluate("window.__keys = 0")
        page.keyboard.press("j")
        first = page.locator("#approvals tbody tr[data-request]").first.get_attribute("id")
        assert page.evaluate(FOCUSED_ROW) == first and page.evaluate(FOCUSED)
        for n in range(5):
            row = page.evaluate(FOCUSED_ROW)
            page.keyboard.press("a")
            page.wait_for_selector(f"#{row}.decided")
            if n < 4:
                page.wait_for_function(f"() => ({FOCUSED_ROW})() !== {row!r}")
                assert page.evaluate(FOCUSED)
        assert page.evaluate("window.__keys") == 6 <= 20
        assert page.evaluate("window.__clicks") == 0
        assert [engine.get(i).status for i in ids] == ["completed"] * 5
        # d: the reason, then Enter denies; k goes back, o opens
        more = _requests(engine, "deny", 2)
        page = alice.go("/approvals?q=employee:deny-")
        page.keyboard.press("j")
        page.keyboard.press("j")
        page.keyboard.press("k")
        page.keyboard.press("d")
        assert page.evaluate("document.activeElement.name") == "reason"
        page.keyboard.type("not this month")
        page.keyboard.press("Enter")
        page.wait_for_selector("tr.decided")
        assert "Denied by you" in page.locator("tr.decided").text_content()
        assert engine.get(more[0]).error == "denied by alice: not this month"
        page.wait_for_function(FOCUSED)
        page.keyboard.press("o")
        page.wait_for_url(f"{base}/instances/{more[1]}")
        assert alice.dialogs == []
    finally:
        alice.close()


def test_a_destructive_bulk_action_asks_in_the_page(browser: Any, site: Any, shots: Path) -> None:
    base, engine = site
    ids = _requests(engine, "bulk", 3)
    alice = Visit(browser, base, "desktop", shots, "alice")
    try:
        page = alice.go("/approvals?q=employee:bulk-")
        assert not page.locator("[data-bulk-actions]").is_visible()  # nothing ticked yet
        page.locator(".bulk-bar input.pick-all").check()
        assert page.locator("[data-bulk-count]").text_content() == "3 selected"
        page.fill(".bulk-bar input[name=reason]", "duplicates")
        page.click("button:has-text('Deny 3')")
        question = page.locator(".confirm-inline")
        assert "Deny 3 selected?" in question.text_content()
        assert [engine.get(i).status for i in ids] == ["waiting"] * 3  # nothing sent yet
        alice.look("approvals-bulk-confirm")
        question.locator("button:has-text('Yes')").click()
        page.wait_for_selector("#bulk-report")
        assert "Denied 3 of 3" in page.locator("#bulk-report").text_content()
        assert "Expense: 100 EUR for bulk-00" in page.locator("#bulk-report").text_content()
        assert [engine.get(i).status for i in ids] == ["completed"] * 3
        assert alice.dialogs == []
    finally:
        alice.close()


def test_the_count_of_waiting_requests_is_live(browser: Any, site: Any, shots: Path) -> None:
    """The navigation says how many requests wait for the reader, pushed by the server: after a
    decision in the page, and after one made by another process on the same database."""
    base, engine = site
    ids = _requests(engine, "live", 3)
    alice = Visit(browser, base, "desktop", shots, "alice")
    try:
        page = alice.go("/workflows")
        count = page.locator("[data-testid=nav-count]")
        waiting = engine.inbox_count("alice")
        page.wait_for_function(
            f"() => document.querySelector('[data-nav-count]').textContent === '{waiting}'"
        )
        assert count.is_visible()
        inbox = alice.context.new_page()
        inbox.goto(base + "/approvals?q=employee:live-")
        inbox.locator("#approvals tbody tr[data-request]").first.locator("[data-approve]").click()
        inbox.wait_for_selector("tr.decided")
        # both pages: the one decided in, and the one that only listens
        for p in (inbox, page):
            p.wait_for_function(
                f"() => document.querySelector('[data-nav-count]').textContent === '{waiting - 1}'"
            )
        # another process decides: the count follows, and the inbox shows the row as gone
        cli = [sys.executable, "-m", "signoff.web.cli", "send", "--db", engine.database_url]
        done = subprocess.run(
            [*cli, "--as", "alice", "--payload", '{"approved": true}', ids[2], "decision"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert engine.get(ids[2]).status == "completed"
        for p in (inbox, page):
            p.wait_for_function(
                f"() => document.querySelector('[data-nav-count]').textContent === '{waiting - 2}'"
            )
        inbox.wait_for_selector("#approvals tbody tr.decided:has-text('No longer waiting')")
        alice.look("workflows-live-count")
        # without push (no EventSource), the count comes by polling
        polled = alice.context.new_page()
        polled.add_init_script("delete window.EventSource")
        polled.goto(base + "/workflows")
        polled.wait_for_function(
            f"() => document.querySelector('[data-nav-count]').textContent === '{waiting - 2}'"
        )
    finally:
        alice.close()


def test_times_in_the_readers_zone(browser: Any, site: Any, shots: Path) -> None:
    """A reader in Tokyo sees Tokyo time with the zone named; ticking UTC shows UTC; how long
    a request waited is said in words."""
    base, engine = site
    iid = engine.start("Expense", {"employee": "tokyo", "amount": 5})
    engine.send(iid, "decision", {"approved": True}, actor="alice", via="api")
    alice = Visit(
        browser, base, "desktop", shots, "alice", timezone_id="Asia/Tokyo", locale="en-GB"
    )
    try:
        page = alice.go(f"/instances/{iid}")
        at = engine.get(iid).created_at
        first = page.locator(".facts time.abs").first
        page.wait_for_function(
            "() => !document.querySelector('.facts time.abs').textContent.includes('UTC')"
        )
        shown = first.text_content()
        tokyo = at.astimezone(ZoneInfo("Asia/Tokyo"))
        assert f"{tokyo:%H}:{tokyo:%M}" in shown and "GMT+9" in shown, shown
        assert f"{tokyo.day} {tokyo:%b}" in shown, shown  # "Tue 9 Dec, 17:00 GMT+9"
        assert "waited 0 s for alice" in page.locator(".decisions").text_content()
        alice.look("instance-tokyo")
        page.check("[data-utc-toggle]")
        assert "UTC" in first.text_content() and f"{at:%H}:{at:%M}" in first.text_content()
        page.reload()  # the choice is kept
        page.wait_for_function("() => document.querySelector('.facts time.abs').title !== ''")
        assert "UTC" in page.locator(".facts time.abs").first.text_content()
        page.uncheck("[data-utc-toggle]")
    finally:
        alice.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_search_with_comparisons(browser: Any, site: Any, shots: Path, size: str) -> None:
    base, engine = site
    tag = f"cmp{size}"
    cheap = engine.start("Expense", {"employee": tag, "amount": 12})
    dear = engine.start("Expense", {"employee": tag, "amount": 4321})
    alice = Visit(browser, base, size, shots, "alice")
    try:
        page = alice.go(f"/?q=employee:{tag}")
        assert page.locator("#instances tbody tr[id^=i-]").count() == 2
        why = page.locator(f"#i-{dear} td.why").text_content()
        assert "Waits" in why and "for alice to decide" in why
        page.fill("input[name=q]", "amount>4000")
        page.wait_for_url(lambda url: "amount%3E4000" in url or "amount>4000" in url)
        page.wait_for_selector(f"#i-{cheap}", state="detached")
        assert page.locator(f"#i-{dear}").count() == 1
        alice.look("instances-compare")
        page.fill("input[name=q]", "amount>lots")
        page.wait_for_selector("[data-testid=search-hint]")
        assert "amount>200" in page.locator("[data-testid=search-hint]").text_content()
        alice.look("instances-compare-hint")
    finally:
        alice.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_instance_page_of_an_approver_and_of_an_operator(
    browser: Any, site: Any, shots: Path, size: str
) -> None:
    base, engine = site
    iid = engine.start("Expense", {"employee": f"page-{size}", "amount": 77, "description": "Taxi"})
    UPSTREAM.fail_next = 2
    report = engine.start("NightlyReport", {"day": f"2026-02-0{len(size)}"}, actor="alice")
    engine.run_due(datetime.now(UTC) + timedelta(hours=1))  # its second try fails too
    assert engine.get(report).status == "failed"
    alice = Visit(browser, base, size, shots, "alice")  # decides expenses, operates nothing
    carol = Visit(browser, base, size, shots, "carol")  # the operator
    try:
        page = alice.go(f"/instances/{iid}")
        first = page.locator("main section.panel").first
        assert "ask" in first.get_attribute("class")
        text = " ".join(first.text_content().split())
        assert "Expense: 77 EUR for page-" in text and "Taxi" in text
        assert first.locator("dd").first.text_content().strip() == "alice"  # who may decide
        assert "Deadline" in text
        assert first.locator("button:has-text('Approve')").is_visible()
        box = first.locator("button:has-text('Approve')").bounding_box()
        assert box["y"] < 844  # on the first screen, even on a phone
        for internal in ("Threads", "Definition", "Send an event", "Cancel…", "Handler", "Setup"):
            assert page.locator(f"main :text-is('{internal}')").count() == 0, internal
        alice.look("instance-approver")
        page = alice.go(f"/instances/{report}")
        failed = " ".join(page.locator(".what-failed").text_content().split())
        assert "fetch figures" in failed and "warehouse did not answer" in failed
        assert "carol" in failed  # who may retry it
        assert page.locator("button:has-text('Retry')").count() == 0
        alice.look("instance-failed-approver")
        page = carol.go(f"/instances/{iid}")
        assert page.locator("h2:has-text('Threads')").count() == 1
        assert page.locator("h2:has-text('Definition')").count() == 1
        assert page.locator("summary:has-text('Send an event')").count() == 1
        # no word is broken to make a column narrower ("decisio/n")
        broken = page.evaluate(
            r"""() => { const out = [];
            const main = document.querySelector('main');
            const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              const word = n.textContent.trim();
              if (word.length < 2 || word.length > 30 || /\s/.test(word)) continue;
              const r = document.createRange(); r.selectNodeContents(n);
              const boxes = [...r.getClientRects()].filter(b => b.width > 0);
              const lines = new Set(boxes.map(b => Math.round(b.top)));
              if (lines.size > 1) out.push(word);
            } return out; }"""
        )
        assert broken == [], broken
        carol.look("instance-operator")
        # the approver decides from the top of the page, in one click
        page = alice.go(f"/instances/{iid}")
        page.locator("section.ask button:has-text('Approve')").click()
        page.wait_for_selector("#instance .flash-ok")
        assert engine.get(iid).status == "completed" and alice.dialogs == []
    finally:
        alice.close()
        carol.close()


def test_the_phones_first_screen_shows_requests(browser: Any, site: Any, shots: Path) -> None:
    base, engine = site
    ids = _requests(engine, "phone", 3)
    alice = Visit(browser, base, "phone", shots, "alice")
    try:
        page = alice.go("/approvals?q=employee:phone-")
        height = SIZES["phone"][1]
        rows = page.locator("#approvals tbody tr[data-request]")
        rows.first.wait_for()
        first = rows.first.bounding_box()
        assert first["y"] < height / 2, first  # requests, not the bulk bar, on the first screen
        approve = rows.first.locator("[data-approve]").bounding_box()
        assert approve["y"] + approve["height"] <= height
        assert not page.locator("[data-bulk-actions]").is_visible()
        # tap targets: every control of a row, the bar and the navigation is 44 px or more
        small = page.evaluate(
            "() => [...document.querySelectorAll('#approvals tbody tr[data-request] button,"
            " #approvals tbody tr[data-request] input:not([type=hidden]), label.hit,"
            " .bulk-bar .pick-label, .nav a, .filters button, .filters input, .filters select')]"
            ".filter(e => e.offsetParent !== null && !e.closest('details:not([open])'))"
            ".map(e => [e.tagName + (e.name ? '.' + e.name : ''), e.getBoundingClientRect()])"
            ".filter(([n, b]) => n !== 'INPUT.pick' && (b.height < 43.5 || b.width < 43.5))"
            ".map(([n, b]) => n + ' ' + Math.round(b.width) + 'x' + Math.round(b.height))"
        )
        assert small == [], small
        alice.look("approvals-first-screen")
        rows.first.locator("label.hit").click()  # ticks its checkbox
        assert page.locator("[data-bulk-count]").text_content() == "1 selected"
        assert page.locator("[data-bulk-actions]").is_visible()
        assert page.locator("button:has-text('Approve 1')").is_visible()
        alice.look("approvals-phone-ticked")
        assert [engine.get(i).status for i in ids] == ["waiting"] * 3
    finally:
        alice.close()
