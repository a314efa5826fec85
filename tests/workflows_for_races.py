"""Workflows and worker functions for the race and crash tests.

They live in an importable module (not in a test file) because the PostgreSQL race runs them in
processes started with 'spawn', and the crash test runs a worker as a subprocess.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    Engine,
    Go,
    NotWaiting,
    On,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    WaitFor,
    Workflow,
)

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DEADLINE = timedelta(minutes=10)
PAST_DEADLINE = START + timedelta(hours=1)

# Every step execution, keyed by (instance id, step name); a lock because four threads share it.
RUNS: Counter[tuple[str, str]] = Counter()
RUNS_LOCK = threading.Lock()


def ran(key: str, step: str) -> None:
    with RUNS_LOCK:
        RUNS[key, step] += 1


class RaceApproval(Workflow):
    """One approval with a deadline; the winner is recorded in the data by its own step."""

    key: str = ""
    decision: str = ""
    decided_by: str = ""

    def definition(self) -> S:
        return S(
            Step("prepare", self.prepare),
            Wait(
                "approval",
                On(
                    "approval",
                    Approval(approve=self.on_decision, deny=self.on_decision, require_reason=False),
                ),
                On("timeout", Timeout(after=DEADLINE), Step("expire", self.expire)),
            ),
            Step("finish", self.finish),
            Return(self.decision),
        )

    def prepare(self) -> None:
        ran(self.key, "prepare")

    def on_decision(self, decision: Decision) -> None:
        self.decision = "approved" if decision.approved else "denied"
        self.decided_by = decision.actor or ""

    def expire(self) -> None:
        ran(self.key, "expire")
        self.decision, self.decided_by = "timeout", "timer"

    def finish(self) -> None:
        ran(self.key, "finish")


# --- the PostgreSQL race: two processes, each with a sender thread and a run_due thread -----

ACTIONS = {"alice": True, "bob": False}  # actor -> approved


def race_process(url: str, actor: str, ids: list[str], barrier: Any) -> dict[str, Any]:
    """Run in a spawned process: `actor` decides every instance while a second thread fires
    the (overdue) timers. Returns each send's outcome and every step this process ran."""
    RUNS.clear()
    engine = Engine(url, [RaceApproval], clock=lambda: PAST_DEADLINE)
    outcomes: dict[str, tuple[str, str]] = {}
    errors: list[str] = []

    def send_all() -> None:
        for iid in ids:
            payload = {"approved": ACTIONS[actor], "reason": f"{actor} says so"}
            try:
                engine.send(iid, "approval", payload, actor=actor)
                outcomes[iid] = ("won", "")
            except (AlreadyDecided, NotWaiting) as exc:
                outcomes[iid] = (type(exc).__name__, str(exc))
            except Exception as exc:  # reported to the test, which fails on it
                errors.append(f"{actor} -> {iid}: {type(exc).__name__}: {exc}")

    def fire_timers() -> None:
        while True:
            try:
                woken = engine.run_due()
            except Exception as exc:
                errors.append(f"run_due: {type(exc).__name__}: {exc}")
                woken = 0
            if not woken and not sender.is_alive():
                return

    barrier.wait()
    sender = threading.Thread(target=send_all)
    timers = threading.Thread(target=fire_timers)
    sender.start()
    timers.start()
    sender.join()
    timers.join()
    engine.close()
    return {"outcomes": outcomes, "errors": errors, "runs": dict(RUNS), "pid": os.getpid()}


# --- the crash test: many steps, a side thread and a timer, run by a worker process ----------

CRASH_STEPS = ["a", "b", "c", "d", "e", "f"]
SIDE_STEPS = ["s1", "s2"]


class CrashFlow(Workflow):
    """Six steps on main, two on a side thread, a zero-length timer in between. Each step
    appends to the data's trace and logs its execution to a file, so a test can tell
    steps run (the log) from steps committed (the trace and the history)."""

    key: str = ""
    log: str = ""
    trace: list[str] = []
    side_done: bool = False

    def definition(self) -> S:
        return S(
            Step("a", self.act("a")),
            Go(
                "side",
                S(
                    Step("s1", self.act("s1")),
                    Step("s2", self.act("s2")),
                    Step("side done", self.finish_side),
                ),
            ),
            Step("b", self.act("b")),
            Step("c", self.act("c")),
            Wait("pause", On("resume", Timeout(after=timedelta(0)))),
            Step("d", self.act("d")),
            Step("e", self.act("e")),
            WaitFor("side finished", lambda: self.side_done),
            Step("f", self.act("f")),
            Return(len(self.trace)),
        )

    def act(self, name: str) -> Any:
        def action() -> None:
            with open(self.log, "a", encoding="utf-8") as log:
                log.write(f"{self.key} {name}\n")
            time.sleep(0.002)  # widen the window between a step's effect and its commit
            self.trace.append(name)

        return action

    def finish_side(self) -> None:
        self.side_done = True


def crash_worker(url: str, count: int, log: str) -> None:
    """Start `count` instances (skipping those a killed predecessor started) and run_due until
    every one has completed. Runs in a subprocess that the test kills with SIGKILL."""
    engine = Engine(url, [CrashFlow], lease=timedelta(seconds=1))
    ids = [f"crash-{i:03d}" for i in range(count)]
    existing = {s.id for s in engine.list(limit=500)}
    for iid in ids:
        if iid not in existing:
            engine.start(CrashFlow, {"key": iid, "log": log}, id=iid)
    while engine.counts().get("completed", 0) < count:
        if not engine.run_due():
            time.sleep(0.02)
    engine.close()


if __name__ == "__main__":
    import sys

    crash_worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])
