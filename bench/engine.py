"""Engine speed on one SQLite file: interpreter cost, CPU per durable step, durable steps/s,
approval workflows/s, event-to-resume latency, beside raw sqlite3 read-modify-write
transactions of the same row size.

CPU per durable step is the process's CPU time (user + system) over the steps of 20-step
workflows, on a SQLite file in tmpfs (/dev/shm) with synchronous=OFF, so that neither the disk
nor other processes' load count; its floor, measured in the same rounds, is raw sqlite3 doing
each step's database work by hand (read the row, rewrite it, append a history row, commit).

Run: `.venv/bin/python bench/engine.py [--quick] [--against PYTHON]`. Each figure is the median
of several rounds. `make bench` runs it in bench/compiled-venv (the compiled core, as a wheel
installs it) with `--against .venv/bin/python` (the editable install: pure Python), which
measures the interpreter, the CPU per durable step and approvals/s of both builds in alternating
rounds, each round in a fresh process of each.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signoff.engine import Approval, Engine, On, Return, S, Step, Wait, Workflow
from signoff.engine.core import COMPILED
from signoff.engine.core.interpreter import Position, advance
from signoff.engine.core.steps import RunStep
from signoff.engine.core.tree import Entry
from signoff.engine.core.validate import validate

STEPS = 20


class Twenty(Workflow):
    """Twenty steps in a row, each bumping a counter."""

    count: int = 0

    def definition(self) -> S:
        return S(
            Step("s0", self.bump),
            Step("s1", self.bump),
            Step("s2", self.bump),
            Step("s3", self.bump),
            Step("s4", self.bump),
            Step("s5", self.bump),
            Step("s6", self.bump),
            Step("s7", self.bump),
            Step("s8", self.bump),
            Step("s9", self.bump),
            Step("s10", self.bump),
            Step("s11", self.bump),
            Step("s12", self.bump),
            Step("s13", self.bump),
            Step("s14", self.bump),
            Step("s15", self.bump),
            Step("s16", self.bump),
            Step("s17", self.bump),
            Step("s18", self.bump),
            Step("s19", self.bump),
        )

    def bump(self) -> None:
        self.count += 1


class Expense(Workflow):
    amount: int = 0
    approved: bool = False

    def definition(self) -> S:
        return S(
            Step("notify", self.noop),
            Wait("approval", On("decided", Approval(approve=self.on_approve))),
            Step("pay", self.noop),
            Return(self.approved),
        )

    def noop(self) -> None:
        pass

    def on_approve(self, _decision: object) -> None:
        self.approved = True


def median_of(rounds: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(rounds))


def interpreter_us_per_step(rounds: int) -> float:
    """What the runner does per step besides I/O, in process CPU time: rebuild the definition
    from the data, check it (each step changes the data, so the runner checks each rebuilt
    tree: a known shape costs a look-up), resume by name, run the step."""
    model = Twenty()

    def one() -> float:
        started = time.process_time()
        for _ in range(200):
            position = Position()
            while True:
                tree = model.definition()
                validate(tree, "Twenty")
                moved = advance(tree, position)
                if not isinstance(moved.next, RunStep):
                    break
                moved.next.step.action()
                position = Position(moved.next.step.name, Entry.AFTER)
        return (time.process_time() - started) / (200 * STEPS) * 1e6

    return median_of(rounds, one)


def durable_steps_per_second(url: str, sync: str, rounds: int, instances: int) -> float:
    engine = Engine(url, workflows=[Twenty], synchronous=sync)

    def one() -> float:
        started = time.perf_counter()
        for _ in range(instances):
            engine.start(Twenty)
        return instances * STEPS / (time.perf_counter() - started)

    try:
        return median_of(rounds, one)
    finally:
        engine.close()


def approvals(url: str, sync: str, rounds: int, instances: int) -> tuple[float, float, float]:
    """Workflows/s from start to completion through one approval; send() latency p50/p99 ms."""
    engine = Engine(url, workflows=[Expense], synchronous=sync)
    latencies: list[float] = []

    def one() -> float:
        started = time.perf_counter()
        for _ in range(instances):
            iid = engine.start(Expense, {"amount": 12})
            sent = time.perf_counter()
            engine.send(iid, "decided", {"approved": True}, actor="alice")
            latencies.append((time.perf_counter() - sent) * 1000)
        return instances / (time.perf_counter() - started)

    try:
        rate = median_of(rounds, one)
    finally:
        engine.close()
    ordered = sorted(latencies)
    return rate, ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def raw_sqlite_tps(path: Path, sync: str, rounds: int, row_bytes: int, count: int) -> float:
    """Read-modify-write transactions on one row of `row_bytes`, the engine's commit shape."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, data TEXT, version INT)")
    conn.execute("CREATE TABLE IF NOT EXISTS h (id INTEGER PRIMARY KEY, t_id TEXT, detail TEXT)")
    conn.execute("INSERT OR REPLACE INTO t VALUES ('a', ?, 1)", ("x" * row_bytes,))

    def one() -> float:
        started = time.perf_counter()
        for _ in range(count):
            conn.execute("BEGIN IMMEDIATE")
            data, version = conn.execute("SELECT data, version FROM t WHERE id='a'").fetchone()
            conn.execute(
                "UPDATE t SET data=?, version=? WHERE id='a' AND version=?",
                (data, version + 1, version),
            )
            conn.execute("INSERT INTO h (t_id, detail) VALUES ('a', '{}')")
            conn.execute("COMMIT")
        return count / (time.perf_counter() - started)

    try:
        return median_of(rounds, one)
    finally:
        conn.close()


def cpu_per_step(base: Path, rounds: int, instances: int, row_bytes: int) -> tuple[float, float]:
    """CPU microseconds per durable step (20-step workflows, SQLite in `base`, synchronous=OFF)
    and per raw sqlite3 transaction doing a step's database work, medians of rounds that take
    turns, so both see the same load."""
    engine = Engine(f"sqlite:///{base}/cpu.db", workflows=[Twenty], synchronous="OFF")
    raw = sqlite3.connect(base / "cpu-raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=OFF")
    raw.execute("CREATE TABLE t (id TEXT PRIMARY KEY, data TEXT, version INT)")
    raw.execute("CREATE TABLE h (id INTEGER PRIMARY KEY, t_id TEXT, detail TEXT)")
    raw.execute("INSERT INTO t VALUES ('a', ?, 1)", ("x" * row_bytes,))
    transactions = instances * STEPS

    def signoff() -> float:
        started = time.process_time()
        for _ in range(instances):
            engine.start(Twenty)
        return (time.process_time() - started) / transactions * 1e6

    def floor() -> float:
        started = time.process_time()
        for _ in range(transactions):
            raw.execute("BEGIN IMMEDIATE")
            data, version = raw.execute("SELECT data, version FROM t WHERE id='a'").fetchone()
            raw.execute(
                "UPDATE t SET data=?, version=? WHERE id='a' AND version=?",
                (data, version + 1, version),
            )
            raw.execute("INSERT INTO h (t_id, detail) VALUES ('a', '{}')")
            raw.execute("COMMIT")
        return (time.process_time() - started) / transactions * 1e6

    try:
        signoff(), floor()  # warm: imports, caches, the first pages
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(signoff())
            theirs.append(floor())
        return statistics.median(ours), statistics.median(theirs)
    finally:
        engine.close()
        raw.close()


def tmpfs() -> str | None:
    """A directory in memory (tmpfs) for the CPU figure, or None when there is none."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def row_size(url: str) -> int:
    engine = Engine(url, workflows=[Twenty])
    iid = engine.start(Twenty)
    row = engine.store.load(iid)
    engine.close()
    assert row is not None
    return len(row.data) + len(row.state)


def build() -> str:
    return "compiled core (mypyc)" if COMPILED else "pure Python core"


def core_round(instances: int) -> dict[str, float]:
    """One round of the figures the compiled core changes, in this process's build."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=tmpfs()) as shm:
        size = row_size(f"sqlite:///{tmp}/size.db")
        cpu, floor = cpu_per_step(Path(shm), 1, instances, size)
        rate, _, _ = approvals(f"sqlite:///{tmp}/appr.db", "NORMAL", 1, instances)
    return {
        "compiled": float(COMPILED),
        "interpreter_us_per_step": interpreter_us_per_step(3),
        "cpu_us_per_step": cpu,
        "raw_cpu_us_per_step": floor,
        "approvals_per_s": rate,
    }


def compare(other: str, rounds: int, instances: int, quick: bool) -> None:
    """The core figures of this build and of `other` (another venv's Python), in alternating
    rounds, each in a fresh process; which one goes first alternates too."""
    pythons = [sys.executable, other]
    found: dict[str, list[dict[str, float]]] = {python: [] for python in pythons}
    for index in range(rounds):
        for python in pythons if index % 2 == 0 else pythons[::-1]:
            command = [python, __file__, "--core-round", *(["--quick"] if quick else [])]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            found[python].append(json.loads(done.stdout.splitlines()[-1]))
    medians = {
        python: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for python, runs in found.items()
    }
    print(f"\ncompiled core against pure Python: {rounds} alternating rounds, medians")
    for python, figures in medians.items():
        kind = "compiled core" if figures["compiled"] else "pure Python"
        print(
            f"  {kind:13} interpreter {figures['interpreter_us_per_step']:5.2f} us/step, "
            f"CPU per durable step {figures['cpu_us_per_step']:5.1f} us "
            f"(raw sqlite3 {figures['raw_cpu_us_per_step']:4.1f} us), "
            f"SQLite NORMAL approvals {figures['approvals_per_s']:5.0f}/s  [{python}]"
        )
    print(json.dumps({"compare": medians}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller runs")
    parser.add_argument(
        "--against",
        metavar="PYTHON",
        help="another build's Python (the pure or the compiled core): compare the core figures",
    )
    parser.add_argument("--core-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds, instances = (3, 30) if args.quick else (5, 100)
    if args.core_round:
        print(json.dumps(core_round(instances)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        print(
            f"signoff engine benchmark ({build()}): {rounds} rounds each, medians; "
            f"SQLite file in {tmp}"
        )
        us = interpreter_us_per_step(rounds)
        print(
            f"interpreter, in memory, {STEPS}-statement workflow: {us:.2f} us/step of CPU "
            "(rebuild, check, resume by name, run)"
        )
        size = row_size(f"sqlite:///{base}/size.db")
        memory = tmpfs()
        with tempfile.TemporaryDirectory(dir=memory) as shm:
            cpu, cpu_floor = cpu_per_step(Path(shm), rounds, instances, size)
        where = "tmpfs" if memory else f"{tmp}, no tmpfs here"
        print(
            f"CPU per durable step, {STEPS}-step workflow, SQLite in {where}, synchronous=OFF: "
            f"{cpu:.1f} us (raw sqlite3 doing the step's database work: {cpu_floor:.1f} us; "
            f"{cpu / cpu_floor:.1f}x)"
        )
        figures: dict[str, dict[str, float]] = {}
        for sync in ("NORMAL", "FULL"):
            raw = raw_sqlite_tps(base / f"raw-{sync}.db", sync, rounds, size, 2000)
            steps = durable_steps_per_second(
                f"sqlite:///{base}/steps-{sync}.db", sync, rounds, instances
            )
            rate, p50, p99 = approvals(f"sqlite:///{base}/appr-{sync}.db", sync, rounds, instances)
            figures[sync] = {
                "raw_tps": raw,
                "steps_per_s": steps,
                "approvals_per_s": rate,
                "event_to_resume_p50_ms": p50,
                "event_to_resume_p99_ms": p99,
            }
            print(f"\nsynchronous={sync}")
            print(f"  raw sqlite3 read-modify-write ({size} B row + history row): {raw:,.0f} tx/s")
            print(
                f"  durable steps:                {steps:,.0f} steps/s "
                f"({steps / raw:.2f}x raw sqlite3 transactions)"
            )
            print(f"  approval workflows end to end: {rate:,.0f} /s")
            print(f"  event-to-resume latency:      p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        summary = {"interpreter_us_per_step": us, "cpu_us_per_step": cpu}
        summary["raw_cpu_us_per_step"] = cpu_floor
        print("\n" + json.dumps({"compiled": COMPILED, **summary, **figures}, indent=1))
    if args.against:
        compare(args.against, rounds, instances, args.quick)


if __name__ == "__main__":
    main()
