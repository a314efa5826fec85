"""A workflow whose step a test can kill a process in the middle of, for tests/test_scale.py.

Run as `python -m tests.recovery_workflows URL COUNT`: starts COUNT instances at once, one
thread each, and drives them (with $SIGNOFF_TEST_LEASE seconds of lease when it is set, and a
scheduler running, so its liveness lock vouches for its leases, when $SIGNOFF_TEST_SCHEDULER
is set); their step "slow" sleeps $SIGNOFF_TEST_SLOW seconds (0 when it is
not set, as in the `signoff worker` that takes them over). Every run of a step appends
"<label> <step>" to the file $SIGNOFF_TEST_FIRED names, committed or not.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import timedelta

from signoff.engine import (
    Approval,
    Engine,
    Go,
    On,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    WaitFor,
    Workflow,
)

DEADLINE = timedelta(seconds=2)


def ran(label: str, step: str) -> None:
    path = os.environ.get("SIGNOFF_TEST_FIRED")
    if path:
        with open(path, "a") as out:
            out.write(f"{label} {step}\n")


class Slow(Workflow):
    """A thread runs a step, a slow step and a step; the main thread meanwhile waits for an
    approval with a deadline that passes while the slow step runs, then for the thread."""

    label: str = ""
    late: bool = False
    finished: bool = False

    def definition(self) -> S:
        return S(
            Go(
                "work",
                S(
                    Step("before", lambda: ran(self.label, "before")),
                    Step("slow", self.slow),
                    Step("after", self.after),
                ),
            ),
            Wait(
                "sign-off",
                On("approve", Approval()),
                On("expired", Timeout(after=DEADLINE), Step("note", self.note)),
            ),
            WaitFor("work finished", lambda: self.finished),
            Return(),
        )

    def after(self) -> None:
        ran(self.label, "after")
        self.finished = True

    def slow(self) -> None:
        ran(self.label, "slow")
        time.sleep(float(os.environ.get("SIGNOFF_TEST_SLOW", "0")))

    def note(self) -> None:
        ran(self.label, "note")
        self.late = True


WORKFLOWS = [Slow]


def drive(url: str, count: int) -> None:
    lease = os.environ.get("SIGNOFF_TEST_LEASE")
    engine = Engine(url, WORKFLOWS, **({"lease": timedelta(seconds=float(lease))} if lease else {}))
    if os.environ.get("SIGNOFF_TEST_SCHEDULER"):
        from signoff.engine import Scheduler

        Scheduler(engine).start()
    threads = [
        threading.Thread(target=engine.start, args=(Slow, {"label": f"r{i}"}, f"slow-{i}"))
        for i in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    drive(sys.argv[1], int(sys.argv[2]))
