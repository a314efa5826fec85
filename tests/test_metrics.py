"""`/metrics`: Prometheus text that a Prometheus parser reads, with counters that move as a
workflow runs (steps, a decision, a timer, a retry, a failure), figures read from the
database (instances by workflow and status, overdue timers), and a token required."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from signoff.engine import Engine
from web_support import ORIGIN, TRACE, TestClient, Trip, make_app

pytest_plugins = ["web_fixtures"]

ALICE = {"Authorization": "Bearer token-alice-0123456789"}


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels; the text must parse as Prometheus'."""
    answer = client.get("/metrics", headers=ALICE)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metered(engine: Engine) -> Iterator[TestClient]:
    app = make_app(engine)
    app.state.signoff.gauges.ttl = 0  # read the database at every scrape here
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        yield c


def test_counters_move_as_a_workflow_runs(engine: Engine, metered: TestClient, clock: Any) -> None:
    before = scrape(metered)
    assert value(before, "signoff_transitions_total", workflow="Trip") == 0

    # an approval decided through the API after ten minutes, then a step that fails once
    iid = engine.start(Trip, {"who": "bob", "fail_booking": True})
    clock.advance(minutes=10)
    answer = metered.post(
        f"/api/instances/{iid}/events/decision", json={"payload": {"approved": True}}, headers=ALICE
    )
    assert answer.status_code == 200, answer.text
    assert "book" in TRACE
    # a second trip times out: its timer fires a minute late
    late = engine.start(Trip, {"who": "carol"})
    clock.advance(hours=1, minutes=1)
    assert engine.run_due() == 1

    after = scrape(metered)
    assert value(after, "signoff_instances_started_total", workflow="Trip") == 2
    assert value(after, "signoff_transitions_total", workflow="Trip") >= 5
    ok = {"workflow": "Trip", "step": "ask", "outcome": "ok"}
    assert value(after, "signoff_step_duration_seconds_count", **ok) == 2
    failed = {"workflow": "Trip", "step": "book", "outcome": "error"}
    assert value(after, "signoff_step_duration_seconds_count", **failed) == 1
    assert value(after, "signoff_failures_total", workflow="Trip") == 1  # Retry(attempts=1)
    by_api = {"workflow": "Trip", "via": "api"}
    assert value(after, "signoff_decision_latency_seconds_count", **by_api) == 1
    assert value(after, "signoff_decision_latency_seconds_sum", **by_api) == 600.0
    # ten minutes: above the 300 s bucket, within the 1800 s one
    assert value(after, "signoff_decision_latency_seconds_bucket", **by_api, le="300.0") == 0
    assert value(after, "signoff_decision_latency_seconds_bucket", **by_api, le="1800.0") == 1
    assert value(after, "signoff_events_total", workflow="Trip", via="timer") == 1
    assert value(after, "signoff_timer_lateness_seconds_sum", workflow="Trip") == 60.0
    assert value(after, "signoff_instances_ended_total", workflow="Trip", status="completed") == 1
    # from the database
    assert value(after, "signoff_instances", workflow="Trip", status="failed") == 1
    assert value(after, "signoff_instances", workflow="Trip", status="completed") == 1
    assert value(after, "signoff_timers_overdue") == 0
    assert engine.get(late).status == "completed"


def test_an_overdue_timer_nobody_fired_shows_until_it_fires(
    engine: Engine, metered: TestClient, clock: Any
) -> None:
    engine.start(Trip)
    clock.advance(hours=1, minutes=5)  # due five minutes ago; no scheduler runs here
    samples = scrape(metered)
    assert value(samples, "signoff_timers_overdue") == 1
    assert value(samples, "signoff_timers_overdue_oldest_seconds") == 300.0
    assert value(samples, "signoff_instances", workflow="Trip", status="waiting") == 1
    engine.run_due()
    assert value(scrape(metered), "signoff_timers_overdue") == 0


def test_a_retried_step_counts_as_a_retry(engine: Engine, metered: TestClient) -> None:
    from signoff.engine import Retry, S, Step, Workflow

    class Flaky(Workflow):
        tries: int = 0

        def definition(self) -> S:
            return S(Step("call", self.call, retry=Retry(attempts=3)))

        def call(self) -> None:
            self.tries += 1
            raise RuntimeError("upstream down")

    engine.register(Flaky)
    engine.start(Flaky)
    samples = scrape(metered)
    assert value(samples, "signoff_step_retries_total", workflow="Flaky", step="call") == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["none", "wrong", "empty", "basic", "oversized"],
)
def test_metrics_need_a_valid_token(metered: TestClient, headers: dict[str, str]) -> None:
    answer = metered.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert "token" in answer.json()["error"].lower()
    assert "signoff_" not in answer.text


def test_a_signed_in_page_session_is_not_a_token(alice: TestClient) -> None:
    """Scrapers use tokens; a browser session alone does not read the metrics."""
    assert alice.get("/metrics").status_code == 401


def test_every_token_holder_may_read_them_and_nothing_else_is_allowed(
    metered: TestClient,
) -> None:
    bob = {"Authorization": "Bearer token-bob-0123456789"}
    assert metered.get("/metrics", headers=bob).status_code == 200
    assert metered.post("/metrics", headers=ALICE).status_code == 405


def test_open_access_serves_them_without_a_token(engine: Engine) -> None:
    app = make_app(engine, open_access=True)
    with TestClient(app, base_url=ORIGIN) as c:
        answer = c.get("/metrics")
    assert answer.status_code == 200
    names = {f.name for f in text_string_to_metric_families(answer.text)}
    assert {"signoff_transitions", "signoff_instances", "signoff_timers_overdue"} <= names


@pytest.mark.slow
def test_a_worker_serves_its_own_metrics_on_the_port_it_is_given(
    sqlite_url: str, tmp_path: Any
) -> None:
    """Workers fire the timers, so timer lateness is counted there: `--metrics-port`."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from tests.test_cli import free_port

    root = Path(__file__).resolve().parent.parent
    engine = Engine(sqlite_url, [Trip])
    engine.start(Trip)
    port = free_port()
    command = [sys.executable, "-m", "signoff.web.cli", "worker", "--db", sqlite_url]
    command += ["--workflows", "web_support", "--metrics-port", str(port)]
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            command,
            cwd=root / "tests",
            env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'tests'}"},
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except httpx.TransportError:
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        # a second worker cannot take the same port, and says why
        clash = subprocess.run(
            command,
            cwd=root / "tests",
            env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'tests'}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        engine.close()
    assert answer.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(answer.text)
        for s in f.samples
    }
    assert samples[("signoff_instances", (("status", "waiting"), ("workflow", "Trip")))] == 1
    assert clash.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{port}" in clash.stderr


def test_a_histogram_counts_a_value_on_a_bound_in_that_bound_and_beyond_the_last_in_inf() -> None:
    from signoff.engine import Histogram

    histogram = Histogram((0.1, 1.0, 10.0))
    for value in (0.0, 0.1, 0.100001, 1.0, 10.0, 10.5, float("inf")):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1, 2]  # per bound, then +Inf
    assert histogram.cumulative()[-1] == (float("inf"), 7)


def test_the_figures_from_the_database_read_alike_on_every_database(
    any_url: str, clock: Any
) -> None:
    engine = Engine(any_url, workflows=[Trip], clock=clock)
    try:
        engine.start(Trip)
        engine.start(Trip, {"who": "carol"})
        clock.advance(hours=1, minutes=5, microseconds=250)  # both due 5 min ago, not fired
        app = make_app(engine)
        app.state.signoff.gauges.ttl = 0
        with TestClient(app, base_url=ORIGIN, follow_redirects=False) as metered:
            samples = scrape(metered)
            assert value(samples, "signoff_instances", workflow="Trip", status="waiting") == 2
            assert value(samples, "signoff_timers_overdue") == 2
            assert value(samples, "signoff_timers_overdue_oldest_seconds") == 300.00025
            assert engine.run_due() == 2
            samples = scrape(metered)
            assert value(samples, "signoff_timers_overdue") == 0
            assert value(samples, "signoff_instances", workflow="Trip", status="completed") == 2
    finally:
        engine.close()
