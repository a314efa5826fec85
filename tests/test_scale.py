"""Several processes on one database server: a process killed in the middle of a step loses
nothing and its instances are taken over within the lease (PostgreSQL and MariaDB); timers
created by a web-only process are fired by the workers, once each, without waiting for a sweep
(PostgreSQL's LISTEN/NOTIFY). (How fast and how late exactly: bench/scale.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from signoff.engine import AlreadyDecided, Engine

from tests.recovery_workflows import DEADLINE, Slow
from tests.test_cli import serve, shut
from tests.test_scheduler import fire_delays, ready, stop, wait_until_fired, worker
from tests.timer_workflows import Ticket

ROOT = Path(__file__).resolve().parent.parent
TAKEOVER_BOUND = 15.0  # seconds, from the kill to the step committed by the process taking over


def recovery_worker(url: str, fired_file: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`signoff worker` with the default lease and sweep, running tests.recovery_workflows."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIGNOFF_TEST_FIRED": str(fired_file)}
    env.pop("SIGNOFF_TEST_SLOW", None)
    log_path = fired_file.parent / f"worker-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "signoff.web.cli", "worker", "--db", url]
    command += ["--workflows", "tests.recovery_workflows"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    return process, log_path


def steps_begun(fired_file: Path) -> Counter[tuple[str, str]]:
    if not fired_file.exists():
        return Counter()
    return Counter(tuple(line.split(" ", 1)) for line in fired_file.read_text().splitlines())  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_worker_killed_in_the_middle_of_a_step_is_taken_over_within_the_lease(
    server_url: str, tmp_path: Path
) -> None:
    pg_url = server_url
    count = 5
    fired_file = tmp_path / "fired.txt"
    engine = Engine(pg_url, [Slow])  # makes the schema before the processes start
    survivor, log = recovery_worker(pg_url, fired_file)
    driver = None
    try:
        ready(log, timeout=20)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SIGNOFF_TEST_FIRED": str(fired_file),
            "SIGNOFF_TEST_SLOW": "600",  # never ends by itself
        }
        driver_log = tmp_path / "driver.log"
        with open(driver_log, "wb") as out:
            driver = subprocess.Popen(
                [sys.executable, "-m", "tests.recovery_workflows", pg_url, str(count)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 30
        while sum(1 for label, step in steps_begun(fired_file) if step == "slow") < count:
            assert driver.poll() is None, driver_log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the slow steps never began"
            time.sleep(0.05)
        # let the deadline of every wait pass while the driver holds the instances
        time.sleep(DEADLINE.total_seconds() + 0.5)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed = datetime.now(UTC)

        # the hard deadline holds while nobody drives them: a late approval is refused
        with pytest.raises(AlreadyDecided, match="expired by the timer"):
            engine.send("slow-0", "approve", {"approved": True})

        deadline = time.monotonic() + 60
        while engine.counts().get("completed", 0) < count:
            assert survivor.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, engine.counts()
            time.sleep(0.2)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        stop(survivor)

    begun = steps_begun(fired_file)
    for i in range(count):
        iid, label = f"slow-{i}", f"r{i}"
        history = engine.history(iid)
        committed = Counter(h.name for h in history if h.kind == "step")
        # each step committed exactly once, though "slow" ran twice: cut off, then again
        assert committed == Counter({"before": 1, "slow": 1, "after": 1, "note": 1}), committed
        assert begun[label, "slow"] == 2 and begun[label, "before"] == 1
        # taken over promptly: the re-run of the step was committed soon after the kill
        slow_done = next(h.at for h in history if h.kind == "step" and h.name == "slow")
        assert slow_done > killed
        assert (slow_done - killed).total_seconds() < TAKEOVER_BOUND, (slow_done, killed)
        # the deadline that passed meanwhile was decided as a timeout, by the timer
        decided = [h for h in history if h.kind in ("event", "decision")]
        assert [(h.name, h.via) for h in decided] == [("expired", "timer")]
        view = engine.get(iid)
        assert view.status == "completed" and view.data["late"] is True
    engine.close()


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheduler", ["1", ""], ids=["a worker", "a web process"])
def test_a_killed_process_s_instances_are_taken_over_long_before_its_lease_runs_out(
    pg_url: str, tmp_path: Path, scheduler: str
) -> None:
    """PostgreSQL sees the process die (its liveness lock is free): the survivor takes its
    instances over at once, though their leases (60 s) would hold them for a minute more. So
    it does for a process that runs no scheduler (`signoff serve --no-scheduler`, driving the
    steps after a decision itself): it holds the lock from its first lease."""
    count = 2
    fired_file = tmp_path / "fired.txt"
    engine = Engine(pg_url, [Slow])
    survivor, log = recovery_worker(pg_url, fired_file)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SIGNOFF_TEST_FIRED": str(fired_file),
        "SIGNOFF_TEST_SLOW": "600",  # never ends by itself
        "SIGNOFF_TEST_LEASE": "60",
        "SIGNOFF_TEST_SCHEDULER": scheduler,
    }
    driver_log = tmp_path / "driver.log"
    with open(driver_log, "wb") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.recovery_workflows", pg_url, str(count)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        ready(log, timeout=20)
        deadline = time.monotonic() + 20
        while sum(1 for label, step in steps_begun(fired_file) if step == "slow") < count:
            assert driver.poll() is None, driver_log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the slow steps never began"
            time.sleep(0.05)
        held = [engine.store.load(f"slow-{i}") for i in range(count)]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        for row in held:  # held under the driver's lock, for a minute
            assert row is not None and row.lease_owner and row.lease_owner.startswith("w")
            assert row.lease_until is not None
        deadline = time.monotonic() + 20  # a third of the lease
        while engine.counts().get("completed", 0) < count:
            assert survivor.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (engine.counts(), log.read_text()[-3000:])
            time.sleep(0.1)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        stop(survivor)
    assert "took over 2 instance(s) of processes that died" in log.read_text()
    begun = steps_begun(fired_file)
    for i, row in enumerate(held):
        assert row is not None and row.lease_until is not None
        history = engine.history(f"slow-{i}")
        committed = Counter(h.name for h in history if h.kind == "step")
        assert committed == Counter({"before": 1, "slow": 1, "after": 1, "note": 1}), committed
        assert begun[f"r{i}", "slow"] == 2  # cut off by the kill, then run again
        # the re-run was committed while the dead driver's lease still had most of its minute
        slow_done = next(h.at for h in history if h.kind == "step" and h.name == "slow")
        assert slow_done < row.lease_until - timedelta(seconds=30)
        assert engine.get(f"slow-{i}").status == "completed"
    engine.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_timers_made_by_a_web_only_process_fire_once_each_on_time_across_two_workers(
    pg_url: str, tmp_path: Path
) -> None:
    """The workers sweep only every 10 s: a timer due 2-4 s after it was made fires on time
    only because the web process's commit told them (LISTEN/NOTIFY). MariaDB has no such
    thing: there the workers find it by their sweep, as in
    test_two_workers_on_one_database_server_never_fire_a_timer_twice (a timer made by another
    process, fired once)."""
    fired_file = tmp_path / "fired.txt"
    engine = Engine(pg_url, [Ticket])
    started = [worker(pg_url, fired_file, "--sweep-every", "10") for _ in range(2)]
    web = None
    try:
        for _, log in started:
            ready(log, timeout=20)
        time.sleep(0.5)  # past the workers' first sweep
        web, base = serve(pg_url, tmp_path, "--no-scheduler")
        ids = []
        for i in range(40):
            answer = httpx.post(
                f"{base}/api/instances",
                json={"workflow": "Ticket", "data": {"seconds": 2 + i / 20, "label": f"t{i}"}},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        delays = wait_until_fired(engine, ids, timeout=30)
        alive = [process.poll() is None for process, _ in started]
    finally:
        if web is not None:
            shut(web)
        for process, _ in started:
            stop(process)
    assert alive == [True, True]
    assert len(delays) == 40, f"{40 - len(delays)} timers never fired"
    assert Counter(fired_file.read_text().split()) == Counter({f"t{i}": 1 for i in range(40)})
    # on time, loosely (a sweep would have been up to 10 s late); bench/scale.py measures it
    assert max(delays.values()) < 3.0, sorted(delays.values())[-5:]
    assert min(delays.values()) >= 0.0
    assert fire_delays(engine, ids) == delays
    engine.close()


def test_a_commit_that_leaves_an_instance_due_is_announced_with_its_due_time(
    pg_url: str,
) -> None:
    """What the workers LISTEN for: "<id> <due at>", sent when the commit is."""
    import psycopg
    from signoff.engine.storage.notices import parse
    from signoff.engine.storage.pgcommit import DUE_CHANNEL
    from sqlalchemy.engine import make_url

    engine = Engine(pg_url, [Ticket])
    url = make_url(pg_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f"LISTEN {DUE_CHANNEL}")
        iid = engine.start(Ticket, {"seconds": 30})
        notices = [parse(n.payload) for n in conn.notifies(timeout=2, stop_after=1)]
    due = engine.get(iid).due_at
    assert due is not None
    assert notices == [(iid, due)]
    assert due - datetime.now(UTC) > timedelta(seconds=25)
    engine.close()
