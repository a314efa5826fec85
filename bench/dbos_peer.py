"""DBOS Transact running the same two workflows as `bench/scale.py`, for a side-by-side figure.

Runs in the separate peer venv (`make bench-peer` makes it; DBOS is never a dependency of
signoff): `bench/peer-venv/bin/python bench/dbos_peer.py URL ROUNDS STEP_INSTANCES APPROVALS`.
Prints one JSON object: medians of the rounds, and the send-to-result latencies.

- durable steps: a workflow of twenty `@DBOS.step`s in a row, each bumping a counter;
- approval: a step, `DBOS.recv("decided")` (the approval), a step, return; the client starts it
  with `DBOS.start_workflow`, answers with `DBOS.send` and waits for the result.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig

STEPS = 20


@DBOS.step()
def bump(count: int) -> int:
    return count + 1


@DBOS.step()
def noop() -> None:
    return None


@DBOS.workflow()
def twenty() -> int:
    count = 0
    for _ in range(STEPS):
        count = bump(count)
    return count


@DBOS.workflow()
def expense(amount: int) -> bool:
    noop()
    decision: Any = DBOS.recv("decided", timeout_seconds=120)
    noop()
    return bool(decision and decision.get("approved"))


def main() -> None:
    url, rounds, step_instances, approvals = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
    )
    config: DBOSConfig = {"name": "signoff-peer-bench", "system_database_url": url}
    DBOS(config=config)
    DBOS.launch()
    twenty()  # warm up
    steps: list[float] = []
    rates: list[float] = []
    latencies: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(step_instances):
            twenty()
        steps.append(step_instances * STEPS / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(approvals):
            handle = DBOS.start_workflow(expense, 12)
            sent = time.perf_counter()
            DBOS.send(handle.workflow_id, {"approved": True}, "decided")
            assert handle.get_result() is True
            latencies.append((time.perf_counter() - sent) * 1000)
        rates.append(approvals / (time.perf_counter() - started))
    DBOS.destroy()
    ordered = sorted(latencies)
    print(
        json.dumps(
            {
                "steps_per_s": statistics.median(steps),
                "approvals_per_s": statistics.median(rates),
                "resume_p50_ms": ordered[len(ordered) // 2],
                "resume_p99_ms": ordered[int(len(ordered) * 0.99)],
            }
        )
    )


if __name__ == "__main__":
    main()
