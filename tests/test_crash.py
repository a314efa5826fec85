"""Crash recovery: a worker driving 200 multi-step instances is killed with SIGKILL at random
points and restarted. Every instance completes; every step is committed exactly once (one
"step" row in the history, one entry in the data's trace) and ran at least once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from signoff.engine import Engine

from tests.workflows_for_races import CRASH_STEPS, SIDE_STEPS, CrashFlow

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = 200
KILLS = 5
EVERY_STEP = [*CRASH_STEPS, *SIDE_STEPS, "side done"]
LOGGED_STEPS = [*CRASH_STEPS, *SIDE_STEPS]  # "side done" does not write to the log


def worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workflows_for_races", url, str(INSTANCES), str(log)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_worker_killed_at_random_points_loses_nothing_and_commits_each_step_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/crash.db"
    log = tmp_path / "runs.log"
    rng = random.Random(os.environ.get("SIGNOFF_CRASH_SEED", "signoff"))

    kills = 0
    for _ in range(KILLS):
        proc = worker(url, log)
        time.sleep(rng.uniform(0.3, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
    final = worker(url, log)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-3000:]
    assert kills >= 3, "the worker finished before it could be killed: kill sooner"

    engine = Engine(url, [CrashFlow])
    assert engine.counts() == {"completed": INSTANCES}
    executions = Counter(tuple(line.split(" ", 1)) for line in log.read_text().splitlines())
    reruns = 0
    for i in range(INSTANCES):
        iid = f"crash-{i:03d}"
        view = engine.get(iid)
        # committed exactly once: in the data ...
        assert sorted(view.data["trace"]) == sorted(LOGGED_STEPS), (iid, view.data["trace"])
        assert view.result == len(LOGGED_STEPS)
        # ... and in the audit trail
        history = engine.history(iid)
        committed = Counter(h.name for h in history if h.kind == "step")
        assert committed == Counter(EVERY_STEP), (iid, committed)
        assert [h.kind for h in history].count("completed") == 1
        assert not [h for h in history if h.kind in ("failed", "step failed")]
        # ... and run at least once
        for step in LOGGED_STEPS:
            assert executions[iid, step] >= 1, (iid, step)
            reruns += executions[iid, step] - 1
    assert reruns <= kills, f"{reruns} re-runs after {kills} kills"  # one step in flight per kill
    print(
        f"\ncrash: {INSTANCES} instances, {kills} SIGKILLs, "
        f"{sum(executions.values())} step runs, {reruns} re-run after a kill, "
        f"{INSTANCES * len(EVERY_STEP)} steps committed once each"
    )
    engine.close()
