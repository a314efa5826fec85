"""Issue 24 in a real headless Chromium against a real uvicorn: triage in seconds, for the people
who decide. Ten approvals with the mouse in at most eleven clicks, no dialog and nothing moving
under the pointer, refreshes included; five with the keyboard in at most twenty keys; focus on
the next request after each decision; destructive bulk actions confirmed in the page, saying how
many. Pages are checked as test_web_dashboard_browser.py checks them (`Visit.look`: axe, no
sideways scroll, no script or CSP error) and photographed into $SIGNOFF_SCREENSHOTS.
"""

from __future__ import annotations

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


def _in_the_past(engine: Engine, moments: list[datetime]) -> Engine:
    """Another engine on the same database, whose clock reads `moments[0]` (move it by
    replacing it): a history that took hours, made in a moment."""
    return Engine(
        engine.database_url, workflows=WORKFLOWS, clock=lambda: moments[0], operators=["carol"]
    )


def test_pages_are_live_by_push_and_poll_only_without_it(
    browser: Any, site: Any, shots: Path
) -> None:
    """The instances list and an instance refresh when the server says something changed, made
    by another engine on the same database: not one request for either page while nothing
    changes, one each when something does. Without EventSource they fall back to polling,
    and the list says so."""
    base, engine = site
    iid = engine.start("Expense", {"employee": "pushy", "amount": 31})
    alice = Visit(browser, base, "desktop", shots, "alice")
    asked: list[str] = []
    counted: list[str] = []
    try:
        # without push (no EventSource): polled, and said; it polls while the rest goes on
        polled = alice.context.new_page()
        polled.add_init_script("delete window.EventSource")
        polled.on("request", lambda r: counted.append(r.url))
        polled.goto(base + "/?q=employee:pushy")
        listing = alice.go("/?q=employee:pushy")
        one = alice.context.new_page()
        one.goto(f"{base}/instances/{iid}")
        for p in (listing, one):
            p.on("request", lambda r: asked.append(r.url))
            p.wait_for_function("() => document.body.dataset.liveMode === 'push'")
        assert "every" not in (listing.locator("#instances").get_attribute("hx-trigger") or "")
        assert "every" not in (one.locator("#instance").get_attribute("hx-trigger") or "")
        assert listing.locator(".live-push").is_visible()
        assert not listing.locator(".live-poll").is_visible()
        polled.wait_for_function("() => document.body.dataset.liveMode === 'poll'")
        assert polled.locator(".live-poll").is_visible()
        assert "Checked every 5 s" in polled.locator(".live-note").text_content()
        # three quiet seconds (the instance page polled every 2 s before): not one request
        # for a page; a change another test's timer made meanwhile would rightly refresh
        # them, so such a window is not counted and another is watched
        for _ in range(3):
            mark = engine.change_mark()
            asked.clear()
            one.wait_for_timeout(3000)
            if engine.change_mark() == mark:
                break
        assert [u for u in asked if "/live" not in u] == []
        asked.clear()
        one.click("section.ask summary:has-text('Reassign')")  # busy: a menu is open
        other = Engine(engine.database_url, workflows=WORKFLOWS)
        try:  # another engine: what the server hears of only through the database
            other.send(iid, "decision", {"approved": True}, actor="alice", via="api")
        finally:
            other.close()
        listing.wait_for_selector(f"#i-{iid} .badge.outcome-approved")
        one.wait_for_timeout(500)
        assert one.locator("#instance .badge.outcome-waiting").count() == 1  # not under the menu
        one.click("section.ask summary:has-text('Reassign')")  # closed: it catches up
        one.wait_for_selector("#instance .badge.outcome-approved")
        pages = [u for u in asked if "/live" not in u]
        assert sorted(u.split("?")[0].removeprefix(base) for u in pages) == [
            "/", f"/instances/{iid}",
        ], pages  # fmt: skip
        alice.look("instances-live")
        polled.wait_for_selector(f"#i-{iid} .badge.outcome-approved", timeout=15_000)
        assert any(u.endswith("/live/count") for u in counted)
        polled.screenshot(path=str(shots / "instances-polled-desktop.png"))
    finally:
        alice.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_timeline_of_an_instance(browser: Any, site: Any, shots: Path, size: str) -> None:
    """What happened, with durations: a wait decided after hours, with its reminder inside it;
    and a wait still open, 'waiting ... so far'. Made in the past by another engine."""
    base, engine = site
    now = datetime.now(UTC).replace(microsecond=0)
    moments = [now - timedelta(hours=5)]
    past = _in_the_past(engine, moments)
    try:
        done = past.start("Expense", {"employee": f"tl-{size}", "amount": 640}, actor="bob")
        moments[0] = now - timedelta(hours=1)
        past.run_due(moments[0])  # the reminder, 4 h in
        moments[0] = now - timedelta(minutes=48)
        past.send(done, "decision", {"approved": False, "reason": "no receipt"}, actor="alice")
        moments[0] = now - timedelta(hours=6, minutes=12)
        waiting = past.start("Expense", {"employee": f"tl-open-{size}", "amount": 90})
        moments[0] = now - timedelta(hours=2)
        past.run_due(moments[0])
    finally:
        past.close()
    alice = Visit(browser, base, size, shots, "alice", timezone_id="Asia/Tokyo")
    try:
        page = alice.go(f"/instances/{done}")
        line = page.locator(".timeline > li")
        texts = [" ".join(t.split()) for t in line.all_text_contents()]
        assert any("'manager approval' waited 4 h 12 min for alice" in t for t in texts), texts
        assert any("Denied by alice after 4 h 12 min" in t and "no receipt" in t for t in texts)
        wait = page.locator(".timeline > li.moment-wait")
        assert "Reminder 1 sent after 4 h" in wait.locator(".moment-notes").text_content()
        assert "GMT+9" in wait.locator(".moment-when time").first.text_content()
        assert page.locator("details.raw-history").count() == 0  # alice operates nothing here
        alice.look("instance-timeline")
        page = alice.go(f"/instances/{waiting}")
        current = page.locator(".timeline > li.is-current")
        text = " ".join(current.text_content().split())
        assert "'manager approval' waiting 6 h 12 min so far for alice" in text, text
        assert "Reminder 1 sent after 4 h" in text
        # the decision still comes first, the timeline after it
        ask = page.locator("section.ask").bounding_box()
        assert ask["y"] < page.locator(".timeline-panel").bounding_box()["y"]
        alice.look("instance-timeline-waiting")
    finally:
        alice.close()


def test_the_instances_list_by_when_they_started(browser: Any, site: Any, shots: Path) -> None:
    """The date filter: a period, or two days (shown when chosen), in the URL; a day that
    cannot be read is said."""
    base, engine = site
    moments = [datetime.now(UTC) - timedelta(days=10)]
    past = _in_the_past(engine, moments)
    try:
        old = past.start("Expense", {"employee": "dated", "amount": 1})
    finally:
        past.close()
    fresh = engine.start("Expense", {"employee": "dated", "amount": 2})
    ten_days_ago = moments[0].date().isoformat()
    alice = Visit(browser, base, "phone", shots, "alice")
    try:
        page = alice.go("/?q=employee:dated")
        assert page.locator("#instances tbody tr[id^=i-]").count() == 2
        assert not page.locator("input[name=started_from]").is_visible()
        page.select_option("select[name=started]", "7d")
        page.wait_for_url(lambda url: "started=7d" in url)
        page.wait_for_selector(f"#i-{old}", state="detached")
        assert page.locator(f"#i-{fresh}").count() == 1
        page.select_option("select[name=started]", "dates")
        page.fill("input[name=started_from]", ten_days_ago)
        page.fill("input[name=started_to]", ten_days_ago)
        page.wait_for_url(lambda url: f"started_to={ten_days_ago}" in url)
        page.wait_for_selector(f"#i-{old}")
        page.wait_for_selector(f"#i-{fresh}", state="detached")
        alice.look("instances-dates")
        page = alice.go(page.url.removeprefix(base))  # a saved view: the same list again
        assert page.locator("input[name=started_from]").is_visible()
        assert page.locator("#instances tbody tr[id^=i-]").count() == 1
        page = alice.go("/?q=employee:dated&started_from=2026-02-30")
        hint = page.locator("[data-testid=search-hint]").text_content()
        assert "'2026-02-30' is not a day" in hint and "2026-12-01" in hint
        alice.look("instances-dates-hint")
    finally:
        alice.close()
