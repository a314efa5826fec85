"""Workflows whose data holds floats, for tests/test_finite.py (and, through
`--workflows tests.finite_workflows`, for the command line)."""

from __future__ import annotations

import math

from pydantic import BaseModel
from signoff.engine import (
    Approval,
    Decision,
    Input,
    On,
    Retry,
    Return,
    S,
    Step,
    Wait,
    Workflow,
)


class Reading(BaseModel):
    """What a person types into the weighing form. pydantic takes the text "nan" or "inf"
    for a float field and makes it a number."""

    value: float
    unit: str = "kg"


class Scale(Workflow):
    """Weighs a parcel: a person enters the reading, a step converts it with `factor`, alice
    approves (on the dashboard, the API or in Slack)."""

    weight: float = 0.0
    factor: float = 1.0
    readings: list[float] = []
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Wait("weigh", On("reading", Input(Reading, self.take))),
            Step("convert", self.convert, retry=Retry(attempts=1)),
            Wait(
                "check",
                On(
                    "decision",
                    Approval(
                        approve=self.approved,
                        approvers=["alice"],
                        slack_channel="C0SCALE",
                        require_reason=False,
                    ),
                ),
            ),
            Return({"weight": self.weight}),
        )

    def take(self, reading: Reading) -> None:
        self.weight = reading.value
        self.readings.append(reading.value)
        self.trace.append(f"read {reading.value}")

    def convert(self) -> None:
        self.weight = self.weight * self.factor  # 10 * 1e308 overflows to inf
        self.trace.append("converted")

    def approved(self, decision: Decision) -> None:
        self.trace.append(f"approved by {decision.actor}")


class Tally(Workflow):
    """Averages its readings once approved; the callback has a bug: the mean of no readings
    comes out as NaN."""

    readings: list[float] = []
    average: float = 0.0

    def definition(self) -> S:
        return S(
            Wait("check", On("decision", Approval(approve=self.approved, require_reason=False))),
            Return(self.average),
        )

    def approved(self, decision: Decision) -> None:
        count = len(self.readings)
        self.average = math.fsum(self.readings) / count if count else math.nan


class Box(BaseModel):
    """A model nested in a workflow's data: it writes its own JSON, with pydantic's default of
    null for NaN and Infinity, and assignments to it are not validated."""

    weight: float = 0.0


class Crate(Workflow):
    """Labels a crate, then fills it; `spoil` says which part of the data the filling step
    leaves holding a number that is not finite: the nested box, a dict of totals, a field of
    its own (not declared), or the value it returns."""

    spoil: str = ""
    label: str = ""
    box: Box = Box()
    totals: dict[str, float] = {}
    trace: list[str] = []

    def definition(self) -> S:
        return S(
            Step("label", self.write_label),
            Step("fill", self.fill, retry=Retry(attempts=1)),
            Return({"weight": self.box.weight * (1e308 if self.spoil == "result" else 1.0)}),
        )

    def write_label(self) -> None:
        # text that merely reads "NaN" and "Infinity" is text: it is stored as it is
        self.label = "NaN-proof, to Infinity"
        self.trace.append("labelled")

    def fill(self) -> None:
        self.trace.append("filled")
        match self.spoil:
            case "box":
                self.box.weight = math.inf
            case "totals":
                self.totals["kg"] = -math.inf
            case "undeclared":
                self.spare = math.nan  # kept: extra fields are allowed
            case "result":
                self.box = Box(weight=10.0)


WORKFLOWS = [Scale, Tally, Crate]
