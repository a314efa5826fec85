"""Workflows the scheduler tests run in other processes (`signoff worker --workflows
tests.timer_workflows`): a timer that fires once and says so."""

from __future__ import annotations

import os
from datetime import timedelta

from signoff.engine import On, Return, S, Step, Timeout, Wait, Workflow


class Ticket(Workflow):
    """Waits `seconds`, then its timeout fires. Each run of the step appends the instance's id to
    the file named by $SIGNOFF_TEST_FIRED, so a test sees every run, committed or not."""

    seconds: float = 1.0
    label: str = ""

    def definition(self) -> S:
        return S(
            Wait(
                "deadline",
                On(
                    "timeout",
                    Timeout(after=timedelta(seconds=self.seconds)),
                    Step("fired", self.fired),
                ),
            ),
            Return("timed out"),
        )

    def fired(self) -> None:
        path = os.environ.get("SIGNOFF_TEST_FIRED")
        if path:
            with open(path, "a") as out:
                out.write(f"{self.label}\n")


WORKFLOWS = [Ticket]
