"""A real headless Chromium against a real uvicorn on 127.0.0.1: the dashboard as people use it.

Sign in, start an instance, approve it from the inbox while another tab watches the instance
page update by itself, retry a failed step, deny with a reason. Its screenshots go to a temporary
folder (the README's pictures come from test_web_dashboard_browser.py, through `make screenshots`).
Skipped, saying why, when Chromium or Playwright is not installed.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web.examples import UPSTREAM, WORKFLOWS
from web_support import PASSWORDS, make_app, user_hashes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("no Chromium found (install Debian's `chromium` package to run browser tests)")


@pytest.fixture
def server(tmp_path: Any) -> Iterator[tuple[str, Engine]]:
    import uvicorn

    engine = Engine(
        f"sqlite:///{tmp_path}/browser.db",
        workflows=WORKFLOWS,
        synchronous="NORMAL",
        operators=["alice"],
    )
    app = make_app(engine, users=user_hashes(), api_tokens={"browser-test-token": "alice"})
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
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: never the tracked ones in docs/screenshots/."""
    folder = tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_day_at_the_dashboard(server: tuple[str, Engine], shots: Path) -> None:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    base, engine = server
    rate, UPSTREAM.failure_rate = UPSTREAM.failure_rate, 0.0
    # some history so the lists are not empty
    for who, amount in (("erin", 48), ("frank", 2300), ("gina", 15)):
        engine.start("Expense", {"employee": who, "amount": amount, "description": "Team lunch"})
    engine.start("Onboarding", {"person": "dana"})
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1360, "height": 860})
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            # sign in
            page.goto(base + "/")
            assert page.url.startswith(base + "/login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORDS["alice"])
            page.screenshot(path=str(shots / "login.png"))
            page.click("button:has-text('Sign in')")
            page.wait_for_url(base + "/")
            assert page.text_content("[data-testid=user]") == "alice"

            # start an instance from the workflows page
            page.click("nav >> text=Workflows")
            form = page.locator("form.start-form").filter(has_text="Start Expense")
            form.locator("input[name='f.employee']").fill("bob")
            form.locator("input[name='f.amount']").fill("120")
            form.locator("input[name='f.description']").fill("Train to Berlin")
            page.screenshot(path=str(shots / "workflows.png"), full_page=True)
            form.locator("button:has-text('Start Expense')").click()
            page.wait_for_url(f"{base}/instances/*")
            iid = page.url.rsplit("/", 1)[1]
            page.wait_for_selector("#instance .badge.status-waiting")
            assert engine.get(iid).data["employee"] == "bob"

            # a second tab watches the instance page
            watcher = context.new_page()
            watcher.goto(f"{base}/instances/{iid}")
            watcher.evaluate("window.__sameDocument = true")

            # approve it from the inbox
            page.click("nav >> text=Approvals")
            page.wait_for_url(base + "/approvals")  # a click returns before the page it opens
            row = page.locator("tr").filter(has_text="Expense: 120 EUR for bob")
            row.first.wait_for()
            assert row.count() == 1
            page.screenshot(path=str(shots / "approvals.png"), full_page=True)
            row.locator("button:has-text('Approve')").click()
            page.wait_for_selector("text=Approved by you · now completed")
            assert engine.get(iid).status == "completed"

            # the watching tab updates by itself, without reloading
            watcher.wait_for_selector("#instance .badge.status-completed", timeout=10_000)
            assert watcher.evaluate("window.__sameDocument") is True
            assert "alice" in watcher.text_content("table.history") or ""
            watcher.screenshot(path=str(shots / "instance.png"), full_page=True)

            # a step that fails: retry it
            UPSTREAM.fail_next = 2
            report = engine.start("NightlyReport", {"day": "2026-01-05"})
            engine.run_due(datetime.now(UTC) + timedelta(hours=1))  # the automatic retry fails
            assert engine.get(report).status == "failed"
            page.goto(f"{base}/instances/{report}")
            page.click("#instance details:has-text('Traceback') summary")
            page.screenshot(path=str(shots / "failed-instance.png"), full_page=True)
            page.click("button:has-text('Retry fetch figures')")
            page.wait_for_selector("#instance .flash-ok")
            page.wait_for_selector("#instance .badge.status-waiting")
            assert engine.get(report).status == "waiting"
            retry = next(h for h in engine.history(report) if h.kind == "retry")
            assert (retry.actor, retry.via) == ("alice", "web")

            # deny with a reason, from the inbox
            page.click("nav >> text=Approvals")
            row = page.locator("tr").filter(has_text="Expense: 2300 EUR for frank")
            row.locator("input[name=reason]").fill("over the conference budget")
            row.locator("button:has-text('Deny')").click()
            page.wait_for_selector("text=Denied by you · now completed")
            denied = next(
                s
                for s in engine.list()
                if s.error and "frank" not in s.error and "conference" in s.error
            )
            assert denied.error == "denied by alice: over the conference budget"

            # the instances page, filtered live
            page.click("nav >> text=Instances")
            page.select_option("select[name=status]", "waiting")
            page.wait_for_url(lambda url: "status=waiting" in url)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#instances tbody .badge')]"
                ".every(b => b.textContent === 'waiting')"
            )
            page.select_option("select[name=status]", "")
            page.wait_for_function(
                "() => document.querySelectorAll('#instances tbody .badge').length >= 6"
            )
            page.screenshot(path=str(shots / "instances.png"), full_page=True)
            onboarding = next(s.id for s in engine.list(workflow="Onboarding"))
            page.goto(f"{base}/instances/{onboarding}")
            page.screenshot(path=str(shots / "instance-threads.png"), full_page=True)
            browser.close()
    finally:
        UPSTREAM.failure_rate, UPSTREAM.fail_next = rate, 0
    assert not [m for m in problems if "Content Security Policy" in m or "Refused" in m], problems
    assert not problems, problems
