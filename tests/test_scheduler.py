"""Time: timeouts racing approvals, reminder ladders, and the APScheduler-backed scheduler firing
every timer exactly once — across a SIGKILL, across processes, and while the database is away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    Engine,
    NotAllowed,
    On,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
)
from signoff.engine.runtime.scheduler import Scheduler

from tests.conftest import Clock
from tests.timer_workflows import Ticket

ROOT = Path(__file__).resolve().parent.parent


class Expense(Workflow):
    approved: bool = False
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On(
                    "decide",
                    Approval(approve=self.on_approve, deny=self.on_deny, approvers=["alice"]),
                ),
                On(
                    "timeout",
                    Timeout(after=timedelta(minutes=10)),
                    Step("abort", self.abort),
                    Return(error="approval timed out"),
                ),
            ),
            Return("approved" if self.approved else "denied"),
        )

    def on_approve(self, decision: Decision) -> None:
        self.approved = True
        self.trace.append(f"approved by {decision.actor}")

    def on_deny(self, decision: Decision) -> None:
        self.trace.append(f"denied by {decision.actor}")

    def abort(self) -> None:
        self.trace.append("abort")


class Ladder(Workflow):
    """Reminders every hour, escalation to carol after 3 h, a deadline at 4 h 30."""

    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Wait(
                "sign-off",
                On(
                    "decide",
                    Approval(
                        approve=self.on_approve,
                        approvers=["alice"],
                        remind_every=timedelta(hours=1),
                        escalate_after=timedelta(hours=3),
                        escalate_to=["carol"],
                    ),
                ),
                On(
                    "timeout",
                    Timeout(after=timedelta(hours=4, minutes=30)),
                    Return(error="nobody signed off"),
                ),
            ),
            Return("signed"),
        )

    def on_approve(self, decision: Decision) -> None:
        self.trace.append(f"approved by {decision.actor}")


class Nag(Workflow):
    """Hourly reminders and nothing else."""

    def definition(self) -> S:
        return S(Wait("ok?", On("decide", Approval(remind_every=timedelta(hours=1)))), Return())


Make = Callable[..., Engine]


@pytest.fixture
def make() -> Iterator[Make]:
    """`make(url, workflows, ...)`: an Engine closed after the test."""
    made: list[Engine] = []

    def engine(*args: Any, **kwargs: Any) -> Engine:
        made.append(Engine(*args, **kwargs))
        return made[-1]

    yield engine
    for e in made:
        e.close()


def timeline(engine: Engine, iid: str, *kinds: str) -> list[tuple[str, str | None]]:
    return [(h.kind, h.name) for h in engine.history(iid) if not kinds or h.kind in kinds]


# --- races on an injected clock -----------------------------------------------------------------


def test_a_timeout_beats_a_later_approval(sqlite_url: str, clock: Clock, make: Make) -> None:
    engine = make(sqlite_url, [Expense], clock=clock)
    iid = engine.start(Expense)
    assert engine.run_due(clock.advance(minutes=9, seconds=59)) == 0
    assert engine.run_due(clock.advance(seconds=1)) == 1

    with pytest.raises(AlreadyDecided, match="by the timer"):
        engine.send(iid, "decide", {"approved": True}, actor="alice")
    got = engine.get(iid)
    assert (got.status, got.error, got.data["trace"]) == (
        "completed",
        "approval timed out",
        ["abort"],
    )
    assert timeline(engine, iid) == [
        ("started", "Expense"),
        ("waiting", "approval"),
        ("event", "timeout"),
        ("step", "abort"),
        ("completed", None),
    ]


def test_a_drain_fires_what_is_due_one_at_a_time_and_says_whether_it_ran_dry(
    any_url: str, clock: Clock, make: Make
) -> None:
    engine = make(any_url, [Expense], clock=clock)
    ids = [engine.start(Expense) for _ in range(5)]
    assert engine.drain_due() == (0, True)  # nothing due yet

    clock.advance(minutes=10)
    asked = []

    def stop() -> bool:  # a scheduler shutting down after the second instance
        asked.append(1)
        return len(asked) > 2

    assert engine.drain_due(stop=stop) == (2, False)
    assert engine.drain_due() == (3, True)
    assert [engine.get(i).error for i in ids] == ["approval timed out"] * 5


def test_an_approval_beats_a_later_timeout(sqlite_url: str, clock: Clock, make: Make) -> None:
    engine = make(sqlite_url, [Expense], clock=clock)
    iid = engine.start(Expense)
    clock.advance(minutes=9, seconds=59)
    engine.send(iid, "decide", {"approved": True}, actor="alice")
    assert engine.run_due(clock.advance(seconds=1)) == 0
    assert engine.run_due(clock.advance(hours=1)) == 0

    got = engine.get(iid)
    assert (got.status, got.result, got.data["trace"]) == (
        "completed",
        "approved",
        ["approved by alice"],
    )
    assert got.due_at is None
    assert timeline(engine, iid) == [
        ("started", "Expense"),
        ("waiting", "approval"),
        ("decision", "decide"),
        ("completed", None),
    ]


def test_an_approval_and_its_timeout_at_the_same_instant_exactly_one_wins(
    sqlite_url: str, clock: Clock, make: Make
) -> None:
    web = make(sqlite_url, [Expense], clock=clock)  # two engines: two processes' worth
    timers = make(sqlite_url, [Expense], clock=clock)
    winners: Counter[str] = Counter()
    for _ in range(16):
        iid = web.start(Expense)
        clock.advance(minutes=10)  # the timeout is due exactly now
        gate = threading.Barrier(2)
        refused: list[Exception] = []

        def approve(
            iid: str = iid, gate: threading.Barrier = gate, refused: list[Exception] = refused
        ) -> None:
            gate.wait()
            try:
                web.send(iid, "decide", {"approved": True}, actor="alice")
            except AlreadyDecided as exc:
                refused.append(exc)

        def fire(gate: threading.Barrier = gate) -> None:
            gate.wait()
            timers.run_due()

        threads = [threading.Thread(target=approve), threading.Thread(target=fire)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        got = web.get(iid)
        decided = timeline(web, iid, "decision", "event")
        assert len(decided) == 1, decided
        if decided == [("event", "timeout")]:
            winners["timeout"] += 1
            assert len(refused) == 1 and "by the timer" in str(refused[0])
            assert (got.error, got.data["trace"]) == ("approval timed out", ["abort"])
        else:
            winners["approval"] += 1
            assert decided == [("decision", "decide")] and not refused
            assert (got.result, got.data["trace"]) == ("approved", ["approved by alice"])
            # the timer was due and had not fired: discarded, and the history says so
            assert ("timer discarded", "timeout") in timeline(web, iid)
        assert got.status == "completed"
        assert timers.run_due(clock.advance(hours=1)) == 0
    assert sum(winners.values()) == 16


def test_a_deadline_holds_even_when_the_scheduler_was_down(
    sqlite_url: str, clock: Clock, make: Make
) -> None:
    engine = make(sqlite_url, [Expense], clock=clock)
    iid = engine.start(Expense)
    due = clock.now + timedelta(minutes=10)
    clock.advance(minutes=25)  # the scheduler was down when the timeout fell due
    with pytest.raises(AlreadyDecided, match=f"timeout by the timer at {due:%Y-%m-%d %H:%M:%S}"):
        engine.send(iid, "decide", {"approved": True}, actor="alice")
    assert engine.run_due() == 0  # the late event fired the timer itself

    got = engine.get(iid)
    assert (got.status, got.error, got.data["trace"]) == (
        "completed",
        "approval timed out",
        ["abort"],
    )
    assert not [h for h in engine.history(iid) if h.kind == "decision"]


# --- reminders and escalation ---------------------------------------------------------------


def test_a_reminder_ladder_fires_in_order_then_escalates_then_times_out(
    sqlite_url: str, clock: Clock, make: Make
) -> None:
    engine = make(sqlite_url, [Ladder], clock=clock)
    began = clock.now
    iid = engine.start(Ladder)

    ask, deadline = engine.get(iid).thread("main").waits
    assert ask.upcoming == [
        {"what": "reminder", "at": began + timedelta(hours=1), "count": 1},
        {"what": "escalation", "at": began + timedelta(hours=3), "to": ["carol"]},
    ]
    assert deadline.upcoming == [{"what": "timeout", "at": began + timedelta(hours=4.5)}]
    assert engine.get(iid).due_at == began + timedelta(hours=1)
    with pytest.raises(NotAllowed, match="carol may not decide"):
        engine.send(iid, "decide", {"approved": True}, actor="carol")

    for hour in (1, 2, 3, 4):
        assert engine.run_due(clock.advance(minutes=59, seconds=59)) == 0
        assert engine.run_due(clock.advance(seconds=1)) == 1
        ask = engine.get(iid).thread("main").waits[0]
        assert ask.stored is not None and ask.stored["reminders"] == hour
        assert ask.upcoming[0] == {
            "what": "reminder",
            "count": hour + 1,
            "at": began + timedelta(hours=hour + 1),
        }
        assert bool(ask.stored.get("escalated")) == (hour >= 3)
    assert engine.run_due(clock.advance(minutes=30)) == 1

    assert engine.get(iid).error == "nobody signed off"
    ladder = [
        (h.kind, h.name, (h.detail or {}).get("count"), h.via)
        for h in engine.history(iid)
        if h.kind in ("reminder", "escalated", "event")
    ]
    assert ladder == [
        ("reminder", "decide", 1, "timer"),
        ("reminder", "decide", 2, "timer"),
        ("escalated", "decide", None, "timer"),
        ("reminder", "decide", 3, "timer"),
        ("reminder", "decide", 4, "timer"),
        ("event", "timeout", None, "timer"),
    ]


def test_after_escalation_the_widened_approvers_may_decide(
    sqlite_url: str, clock: Clock, make: Make
) -> None:
    engine = make(sqlite_url, [Ladder], clock=clock)
    iid = engine.start(Ladder)
    for _ in range(3):
        engine.run_due(clock.advance(hours=1))
    escalated = next(h for h in engine.history(iid) if h.kind == "escalated")
    assert escalated.detail == {"wait": "sign-off", "approvers": ["carol"]}
    assert engine.open_approvals()[0]["approvers"] == ["alice", "carol"]

    engine.send(iid, "decide", {"approved": True}, actor="carol")
    assert engine.get(iid).data["trace"] == ["approved by carol"]


def test_after_an_outage_one_reminder_catches_up_instead_of_a_burst(
    sqlite_url: str, clock: Clock, make: Make
) -> None:
    engine = make(sqlite_url, [Nag], clock=clock)
    began = clock.now
    iid = engine.start(Nag)
    assert engine.run_due(clock.advance(hours=5, minutes=10)) == 1
    assert engine.run_due() == 0
    assert [(h.detail or {}).get("count") for h in engine.history(iid) if h.kind == "reminder"] == [
        5
    ]
    assert engine.get(iid).due_at == began + timedelta(hours=6)


# --- the scheduler, in real time ----------------------------------------------------------------


def fire_delays(engine: Engine, ids: list[str]) -> dict[str, float]:
    """Seconds between each fired timer's due time and the transition that applied it."""
    delays = {}
    for iid in ids:
        history = engine.history(iid)
        began = next(h.at for h in history if h.kind == "waiting")
        fired = [h.at for h in history if h.kind == "event" and h.name == "timeout"]
        if fired:
            assert len(fired) == 1, f"{iid} fired {len(fired)} times"
            seconds = engine.get(iid).data["seconds"]
            delays[iid] = (fired[0] - began).total_seconds() - seconds
    return delays


def wait_until_fired(engine: Engine, ids: list[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = engine.list(status="waiting", workflow="Ticket", limit=500)
        if not {r.id for r in waiting} & set(ids):
            break
        time.sleep(0.1)
    return fire_delays(engine, ids)


@pytest.fixture
def running(make: Make) -> Iterator[list[Scheduler]]:
    """Schedulers to shut down after the test (before its engines close)."""
    schedulers: list[Scheduler] = []
    yield schedulers
    for s in schedulers:
        s.shutdown()


def test_timers_armed_in_this_process_fire_on_time_and_far_ones_wait_in_the_database(
    sqlite_url: str, running: list[Scheduler], make: Make
) -> None:
    engine = make(sqlite_url, [Ticket])
    scheduler = Scheduler(engine, sweep_every=0.5, horizon=5)
    running.append(scheduler)
    scheduler.start()
    near = [engine.start(Ticket, {"seconds": 0.3 + i * 0.05}) for i in range(20)]
    far = [engine.start(Ticket, {"seconds": 3600}) for _ in range(30)]
    assert scheduler.armed() <= 20  # only what falls due within the horizon has a job

    delays = wait_until_fired(engine, near, timeout=10)
    assert len(delays) == 20
    assert min(delays.values()) >= 0, "a timer fired before it was due"  # lateness: bench/
    assert all(engine.get(i).status == "waiting" for i in far)
    assert scheduler.armed() == 0


class Call(Workflow):
    """Waits `after_ms`, then calls a slow service once."""

    after_ms: int = 500
    called: int = 0

    def definition(self) -> S:
        return S(
            Wait("pause", On("due", Timeout(after=timedelta(milliseconds=self.after_ms)))),
            Step("call", self.call),
        )

    def call(self) -> None:
        with CALLS.lock:
            CALLS.now += 1
            CALLS.most = max(CALLS.most, CALLS.now)
        time.sleep(0.05)  # the service answering
        with CALLS.lock:
            CALLS.now -= 1
        self.called += 1


class CALLS:
    lock = threading.Lock()
    now = 0
    most = 0


@pytest.mark.parametrize("processes", [1, 2])
def test_a_burst_of_timers_is_drained_in_parallel_and_each_fires_once(
    any_url: str, running: list[Scheduler], make: Make, processes: int
) -> None:
    """Timers due at one moment: each scheduler's jobs drain whatever is due, several at a time,
    instead of one thread taking a batch (or each process racing for all of it). The lease is
    long, so an instance claimed and then left alone would stay stuck far past the deadline."""
    CALLS.most = 0
    engines = [make(any_url, [Call], lease=timedelta(seconds=60)) for _ in range(processes)]
    for engine in engines:
        scheduler = Scheduler(engine, sweep_every=0.5, horizon=5)
        running.append(scheduler)
        scheduler.start()
    # due together, 2 s from now: 40 starts take most of a second on a server that syncs each
    # commit to disk (MariaDB) when the machine is busy
    due = time.time() + 2.0
    ids = [
        engines[0].start(Call, {"after_ms": max(int((due - time.time()) * 1000), 0)})
        for _ in range(40)
    ]
    deadline = time.monotonic() + 20
    while engines[0].counts().get("completed", 0) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert engines[0].counts().get("completed", 0) == len(ids)
    assert [engines[0].get(i).data["called"] for i in ids] == [1] * len(ids)
    for iid in ids:
        fired = [h for h in engines[0].history(iid) if h.kind == "event" and h.name == "due"]
        assert len(fired) == 1
    assert CALLS.most >= 2, "the burst was worked through one instance at a time"


class Errand(Workflow):
    """Waits `after_ms`, then runs an errand: a slow one or a quick one."""

    after_ms: int = 1000
    slow: bool = False
    name: str = ""

    def definition(self) -> S:
        return S(
            Wait("pause", On("due", Timeout(after=timedelta(milliseconds=self.after_ms)))),
            Step("go", self.go),
        )

    def go(self) -> None:
        ERRANDS[self.name] = time.time()
        if self.slow:
            time.sleep(4)


ERRANDS: dict[str, float] = {}


def test_a_timer_due_beside_a_slow_one_fires_on_time_while_the_slow_one_runs(
    sqlite_url: str, running: list[Scheduler], make: Make
) -> None:
    """Two timers due at the same moment, with two threads: the slow errand's job drains and
    sits in its step, and the quick errand's job still fires its own instance at once, rather
    than counting on that drain and waiting for the sweep."""
    ERRANDS.clear()

    def tenths() -> datetime:  # both instances get exactly the same due time
        return datetime.fromtimestamp(int(time.time() * 10) / 10, UTC)

    engine = make(sqlite_url, [Errand], clock=tenths)
    scheduler = Scheduler(engine, workers=2, sweep_every=5, horizon=10)
    running.append(scheduler)
    scheduler.start()
    time.sleep(0.3)  # past the first sweep
    while time.time() % 0.1 > 0.03:  # both starts within one tenth of a second
        time.sleep(0.005)
    due = int(time.time() * 10) / 10 + 1.0
    engine.start(Errand, {"slow": True, "name": "slow"})
    engine.start(Errand, {"name": "quick"})
    deadline = time.monotonic() + 10
    while "quick" not in ERRANDS and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "quick" in ERRANDS
    assert ERRANDS["quick"] - due < 1.0, f"late by {ERRANDS['quick'] - due:.2f} s"


def test_the_sweep_arms_what_another_process_created_and_fires_what_is_overdue(
    sqlite_url: str, running: list[Scheduler], make: Make
) -> None:
    web = make(sqlite_url, [Ticket])  # another process, without a scheduler
    overdue = [web.start(Ticket, {"seconds": 0.05}) for _ in range(5)]
    time.sleep(0.2)
    ahead = [web.start(Ticket, {"seconds": 2.0}) for _ in range(5)]

    worker = make(sqlite_url, [Ticket])
    scheduler = Scheduler(worker, sweep_every=0.5, horizon=5)
    running.append(scheduler)
    started = datetime.now(UTC)
    scheduler.start()
    delays = wait_until_fired(web, overdue + ahead, timeout=10)
    assert len(delays) == 10
    assert all(d >= 0 for d in delays.values()), "a timer fired before it was due"
    for iid in overdue:  # fired by this scheduler, which found them overdue in the database
        fired = next(h.at for h in web.history(iid) if h.kind == "event")
        assert fired >= started


# --- processes ------------------------------------------------------------------------------------


def worker(url: str, fired_file: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`signoff worker` in a process of its own, and the file its log goes to."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIGNOFF_TEST_FIRED": str(fired_file)}
    log_path = fired_file.parent / f"worker-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "signoff.web.cli", "worker", "--db", url]
    command += ["--workflows", "tests.timer_workflows", *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    return process, log_path


def ready(log_path: Path, timeout: float = 10) -> datetime:
    """When the worker said it starts firing (its imports and set-up done)."""
    deadline = time.monotonic() + timeout
    while "firing the timers" not in log_path.read_text():
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.02)
    return datetime.now(UTC)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_200_timers_fire_exactly_once_across_a_sigkill_and_a_restart(
    sqlite_url: str, tmp_path: Path, make: Make
) -> None:
    fired_file = tmp_path / "fired.txt"
    options = ("--lease", "2", "--sweep-every", "1")
    first, _ = worker(sqlite_url, fired_file, *options)
    try:
        engine = make(sqlite_url, [Ticket])
        t0 = time.monotonic()
        ids = [
            engine.start(Ticket, {"seconds": 4 + 8 * i / 199, "label": f"t{i}"}) for i in range(200)
        ]
        time.sleep(max(0.0, 7.0 - (time.monotonic() - t0)))
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = datetime.now(UTC)
        time.sleep(2.5)  # down: the timers due now are missed
        restarted = datetime.now(UTC)
        second, log = worker(sqlite_url, fired_file, *options)
        try:
            up = ready(log)  # timers due before this were missed: nothing was running
            delays = wait_until_fired(engine, ids, timeout=20)
        finally:
            stop(second)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    assert len(delays) == 200, f"{200 - len(delays)} timers never fired"  # each exactly once
    assert all(d >= 0 for d in delays.values()), "a timer fired before it was due"
    missed = 0
    for iid in ids:
        history = engine.history(iid)
        fired = next(h.at for h in history if h.kind == "event")
        due = next(h.at for h in history if h.kind == "waiting") + timedelta(
            seconds=engine.get(iid).data["seconds"]
        )
        if fired > killed and due < up:
            missed += 1
            assert fired >= restarted, "fired while no worker was running"
    assert missed, "the kill should have made some timers miss their time"
    # how late the missed and the punctual timers fire is measured by bench/timers.py
    # each step ran at least once; only a step cut off by the SIGKILL may have run twice
    runs = Counter(fired_file.read_text().split())
    assert set(runs) == {f"t{i}" for i in range(200)}
    assert sum(n - 1 for n in runs.values()) <= 1


@pytest.mark.slow
def test_two_workers_on_one_database_server_never_fire_a_timer_twice(
    server_url: str, tmp_path: Path, make: Make
) -> None:
    pg_url = server_url
    fired_file = tmp_path / "fired.txt"
    options = ("--sweep-every", "0.5")
    workers = [worker(pg_url, fired_file, *options)[0] for _ in range(2)]
    try:
        engine = make(pg_url, [Ticket])
        time.sleep(1.5)  # both up: both arm every timer and race for it
        ids = [
            engine.start(Ticket, {"seconds": 2 + 3 * i / 149, "label": f"t{i}"}) for i in range(150)
        ]
        delays = wait_until_fired(engine, ids, timeout=20)
        alive = [w.poll() is None for w in workers]
    finally:
        for w in workers:
            stop(w)
    assert alive == [True, True]
    assert len(delays) == 150  # fire_delays asserts one timeout event per instance
    runs = Counter(fired_file.read_text().split())
    assert runs == Counter({f"t{i}": 1 for i in range(150)})  # 0 double fires


@pytest.mark.slow
@pytest.mark.postgres
def test_a_timer_that_falls_due_while_the_database_is_away_is_retried_not_lost(
    pg_url: str, running: list[Scheduler], make: Make
) -> None:
    import psycopg

    name = pg_url.rsplit("/", 1)[1]
    engine = make(pg_url, [Ticket])
    scheduler = Scheduler(engine, sweep_every=0.5, horizon=5)
    running.append(scheduler)
    scheduler.start()
    ids = [engine.start(Ticket, {"seconds": 1.0 + i * 0.1}) for i in range(5)]

    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        time.sleep(3.0)  # every timer falls due, and every wake-up fails
        with pytest.raises(Exception, match="not currently accepting connections"):
            engine.get(ids[0])
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    delays = wait_until_fired(engine, ids, timeout=30)
    assert len(delays) == 5  # each fired, once, after the database came back
