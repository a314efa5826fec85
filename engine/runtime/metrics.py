"""The engine's own numbers: counters and histograms it updates as it commits, for whatever
exposes them (the dashboard's `/metrics` turns them into Prometheus text). No metrics library
here: an application reads `engine.metrics.snapshot()` and may feed any system it likes.

Everything is counted from the history as it is committed (as the log lines are), so a step
or decision that a lost version check took back is never counted. Per process: each process
counts what it committed; a metrics system adds the processes up.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from signoff.engine.core.records import Record

Labels = tuple[tuple[str, str], ...]

# upper bounds, in seconds
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0)
DECISION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
LATENESS_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 600.0)

COUNTERS = {
    "signoff_transitions": "Commits of instances (each step, event, timer and operator action)",
    "signoff_instances_started": "Instances started",
    "signoff_instances_ended": "Instances that completed or were cancelled",
    "signoff_step_retries": "Step attempts that failed and will be retried",
    "signoff_failures": "Threads that failed and need an operator (retries exhausted, errors)",
    "signoff_commit_conflicts": "Commits that lost the version check to another writer (merged)",
    "signoff_events": "Events and decisions applied",
    "signoff_events_dropped": "Kept events whose wait never began before the instance ended",
    "signoff_newer_release_refusals": (
        "Events refused and due work left alone because a newer release handles the instance"
    ),
}
HISTOGRAMS = {
    "signoff_step_duration_seconds": ("How long steps ran", STEP_BUCKETS),
    "signoff_decision_latency_seconds": (
        "From a wait's beginning to its decision, by who decided (via)",
        DECISION_BUCKETS,
    ),
    "signoff_timer_lateness_seconds": (
        "How long after its due time a timer was fired",
        LATENESS_BUCKETS,
    ),
}


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bound, not cumulative; then +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # the first bound at or above `value`; past the last one, the +Inf bucket
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with (inf, count)."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total)


@dataclass(frozen=True)
class Snapshot:
    """The numbers at one moment: name -> labels -> value (a counter) or Histogram."""

    counters: dict[str, dict[Labels, float]]
    histograms: dict[str, dict[Labels, Histogram]]


class Metrics:
    """Thread-safe counters and histograms, fed by the engine's commits. `COUNTERS` and
    `HISTOGRAMS` name them, with their help texts (and the histograms' buckets)."""

    COUNTERS = COUNTERS
    HISTOGRAMS = HISTOGRAMS

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}
        self._histograms: dict[str, dict[Labels, Histogram]] = {name: {} for name in HISTOGRAMS}
        # what every commit and every step feed, found without building and hashing their
        # labels each time: commits by workflow (labelled in `snapshot`), and each step's
        # histogram of successful runs (the one `_histograms` holds) by (workflow, step)
        self._transitions: dict[str, float] = {}
        self._steps_ok: dict[tuple[str, str], Histogram] = {}

    def inc(self, name: str, labels: Labels, by: float = 1.0) -> None:
        with self._lock:
            self._inc(name, labels, by)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        with self._lock:
            self._observe(name, labels, value)

    def _inc(self, name: str, labels: Labels, by: float = 1.0) -> None:
        series = self._counters[name]
        series[labels] = series.get(labels, 0.0) + by

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        series = self._histograms[name]
        found = series.get(labels)
        if found is None:
            found = series[labels] = Histogram(HISTOGRAMS[name][1])
        found.observe(value)

    def snapshot(self) -> Snapshot:
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            counters["signoff_transitions"] |= {
                (("workflow", workflow),): n for workflow, n in self._transitions.items()
            }
            return Snapshot(
                counters,
                {
                    name: {labels: h.copy() for labels, h in series.items()}
                    for name, series in self._histograms.items()
                },
            )

    # --- what the engine tells ---------------------------------------------------------------

    def committed(self, workflow: str, records: Iterable[Record]) -> None:
        """One commit of `workflow` with these history entries (under one lock: this runs at
        every commit)."""
        wf = (("workflow", workflow),)
        with self._lock:
            transitions = self._transitions
            transitions[workflow] = transitions.get(workflow, 0.0) + 1.0
            for r in records:
                kind = r.kind
                if kind == "step":
                    seconds = float((r.detail or {}).get("ms", 0.0)) / 1000
                    step = (workflow, r.name or "")
                    (self._steps_ok.get(step) or self._step_ok(step)).observe(seconds)
                elif kind == "step failed":
                    detail, measures = r.detail or {}, r.measures or {}
                    if "seconds" in measures:
                        labels = (*wf, ("step", r.name or ""), ("outcome", "error"))
                        self._observe("signoff_step_duration_seconds", labels, measures["seconds"])
                    if detail.get("retry_in_seconds") is not None:
                        self._inc("signoff_step_retries", (*wf, ("step", r.name or "")))
                elif kind == "failed":
                    self._inc("signoff_failures", wf)
                elif kind in ("event", "decision"):
                    measures, via = r.measures or {}, r.via or ""
                    self._inc("signoff_events", (*wf, ("via", via)))
                    if "waited" in measures:
                        self._observe(
                            "signoff_decision_latency_seconds",
                            (*wf, ("via", via)),
                            measures["waited"],
                        )
                    if "late" in measures:
                        late = max(measures["late"], 0.0)
                        self._observe("signoff_timer_lateness_seconds", wf, late)
                elif kind == "event dropped":
                    self._inc("signoff_events_dropped", (*wf, ("event", r.name or "")))
                elif kind == "started":
                    self._inc("signoff_instances_started", wf)
                elif kind in ("completed", "cancelled"):
                    self._inc("signoff_instances_ended", (*wf, ("status", kind)))

    def _step_ok(self, step: tuple[str, str]) -> Histogram:
        """The histogram of (workflow, step)'s successful runs, made on first use."""
        labels = (("workflow", step[0]), ("step", step[1]), ("outcome", "ok"))
        series = self._histograms["signoff_step_duration_seconds"]
        found = series.get(labels)
        if found is None:
            found = series[labels] = Histogram(STEP_BUCKETS)
        self._steps_ok[step] = found
        return found

    def conflict(self, workflow: str) -> None:
        self.inc("signoff_commit_conflicts", (("workflow", workflow),))
