"""Decisions under load, across processes: the scenario of tests/test_decision_load.py and
bench/decisions.py. Starters start `Deal` instances whose first step takes a while; senders
decide them at random meanwhile (approve or deny, as one of three approvers); `signoff worker`
processes fire deadlines and step retries and are SIGKILLed now and then. Every send's outcome is
written to a file, so the caller can hold each accepted send against the history.

Roles, each a process:
    python -m tests.decision_load starter URL FIRST COUNT
    python -m tests.decision_load sender URL SEED OUT_FILE
(workers are the real `signoff worker --workflows tests.decision_load`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from signoff.engine import (
    AlreadyDecided,
    Approval,
    Decision,
    Engine,
    If,
    InstanceNotFound,
    On,
    Retry,
    Return,
    S,
    SignoffError,
    Statement,
    Step,
    Timeout,
    Wait,
    Workflow,
)

DECIDERS = ["alice", "bob", "carol"]
DEADLINE = timedelta(seconds=float(os.environ.get("SIGNOFF_LOAD_DEADLINE", "1.5")))
ROOT = Path(__file__).resolve().parent.parent


class Deal(Workflow):
    approved: bool = False

    def definition(self) -> Statement:
        return S(
            Step("prepare", lambda: time.sleep(random.uniform(0.02, 0.08))),
            Wait(
                "approval",
                On("decided", Approval(approve=self.yes, deny=self.no, approvers=DECIDERS)),
                On("timeout", Timeout(after=DEADLINE), Return(error="timed out")),
            ),
            # a third of its first tries fail: the retry is a worker's to run
            Step("book", self.book, retry=Retry(attempts=20, backoff=timedelta(seconds=0.2))),
            If(self.approved, Return("approved")),
            Return(error="denied"),
        )

    def yes(self, decision: Decision) -> None:
        self.approved = True

    def no(self, decision: Decision) -> None:
        self.approved = False

    def book(self) -> None:
        time.sleep(random.uniform(0.01, 0.05))
        if random.random() < 0.33:
            raise RuntimeError("the booking service is busy")


def instance_id(n: int) -> str:
    return f"deal-{n:04d}"


def starter(url: str, first: int, count: int) -> None:
    engine = Engine(url, [Deal])
    for n in range(first, first + count):
        engine.start(Deal, id=instance_id(n))
    engine.close()


def sender(url: str, seed: str, out: Path) -> None:
    """Decide open instances at random until every instance has ended; one line per send."""
    rng = random.Random(seed)
    engine = Engine(url, [Deal])
    with open(out, "a") as log:
        live: list[str] = []
        decided: set[str] = set()  # told so: not asked again
        sends = 0
        while True:
            if sends % 5 == 0:
                live = [
                    s.id
                    for s in engine.list(limit=1000)
                    if s.status in ("running", "waiting") and s.id not in decided
                ]
                if not live and engine.list(limit=1) and _all_started(engine):
                    break
            sends += 1
            if not live:
                time.sleep(0.01)
                continue
            time.sleep(rng.uniform(0, 0.02))  # a person's pace, roughly: some deadlines pass
            iid, actor = rng.choice(live), rng.choice(DECIDERS)
            if rng.random() < 0.3:  # the newest instances: most likely still in their first step
                iid = rng.choice(sorted(live)[-4:])
            approved = rng.random() < 0.5
            payload: dict[str, Any] = {"approved": approved}
            if not approved:
                payload["reason"] = f"{actor} says no"
            record = {"instance": iid, "actor": actor, "approved": approved}
            try:
                view = engine.send(iid, "decided", payload, actor=actor)
            except InstanceNotFound:
                record["outcome"] = "InstanceNotFound"
            except SignoffError as exc:
                record["outcome"], record["message"] = type(exc).__name__, str(exc)
                if isinstance(exc, AlreadyDecided):
                    decided.add(iid)
            else:
                record["outcome"] = "kept" if view.kept else "accepted"
                decided.add(iid)
            log.write(json.dumps(record) + "\n")
            log.flush()
    engine.close()


def _all_started(engine: Engine) -> bool:
    expected = int(os.environ.get("SIGNOFF_LOAD_INSTANCES", "0"))
    return len(engine.list(limit=expected + 1)) >= expected


@dataclass
class Figures:
    """What a run did and whether every promise held."""

    instances: int
    sends: Counter[str] = field(default_factory=Counter)
    applied: int = 0  # accepted sends found as the instance's decision in its history
    decided_once: int = 0
    by_timer: int = 0
    kills: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def run(url: str, workdir: Path, instances: int = 200, kill_every: float = 1.0) -> Figures:
    """The whole scenario on `url` (PostgreSQL): 4 workers, 2 starters, 3 senders; returns what
    happened. The database must be empty."""
    Engine(url, [Deal]).close()  # the schema, before the processes start
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SIGNOFF_LOAD_INSTANCES": str(instances),
    }
    rng = random.Random("decision load")
    began = time.monotonic()
    worker_logs = workdir / "workers.log"

    def worker() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "signoff.web.cli", "worker", "--db", url]
        command += ["--workflows", "tests.decision_load", "--sweep-every", "0.5"]
        with open(worker_logs, "ab") as log:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)

    def role(*args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tests.decision_load", *args]
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    out = workdir / "sends.jsonl"
    out.unlink(missing_ok=True)
    workers = [worker() for _ in range(4)]
    half = instances // 2
    starters = [
        role("starter", url, "0", str(half)),
        role("starter", url, str(half), str(instances - half)),
    ]
    senders = [role("sender", url, f"sender {i}", str(out)) for i in range(3)]
    figures = Figures(instances)
    watcher = Engine(url, [Deal])

    def unfinished() -> bool:
        if any(p.poll() is None for p in senders):
            return True
        return any(s.status in ("running", "waiting") for s in watcher.list(limit=instances))

    try:
        while unfinished():
            if time.monotonic() - began > 150:
                figures.problems.append("the instances did not all end within 150 s")
                break
            time.sleep(rng.uniform(0.5, 1.5) * kill_every)
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            figures.kills += 1
            workers[victim] = worker()
    finally:
        for p in [*senders, *starters]:
            if p.poll() is None:
                p.kill()
            _, err = p.communicate()
            if p.returncode not in (0, -signal.SIGKILL):
                figures.problems.append(f"a {p.args[3]} failed: {err.decode()[-2000:]}")  # type: ignore[index]
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
    watcher.close()
    figures.seconds = time.monotonic() - began
    check(url, out, figures)
    return figures


def check(url: str, out: Path, figures: Figures) -> None:
    """Hold every accepted send against the histories: each was applied, each instance decided
    exactly once, nothing kept or dropped, every step committed once."""
    sends = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    figures.sends = Counter(s["outcome"] for s in sends)
    accepted: dict[str, list[dict[str, Any]]] = {}
    for s in sends:
        if s["outcome"] in ("accepted", "kept"):
            accepted.setdefault(s["instance"], []).append(s)
    engine = Engine(url, [Deal])
    for n in range(figures.instances):
        iid = instance_id(n)
        view = engine.get(iid)
        history = engine.history(iid)
        kinds = [h.kind for h in history]
        decisions = [h for h in history if h.kind == "decision"]
        timeouts = [h for h in history if h.kind == "event" and h.name == "timeout"]
        mine = accepted.get(iid, [])
        if view.status != "completed":
            figures.problems.append(f"{iid} is {view.status}: {view.error}")
        if "event kept" in kinds or "event dropped" in kinds:
            figures.problems.append(f"{iid}: a decision was kept or dropped")
        if len(decisions) + len(timeouts) != 1:
            figures.problems.append(f"{iid} was decided {len(decisions) + len(timeouts)} times")
            continue
        figures.decided_once += 1
        if timeouts:
            figures.by_timer += 1
            if mine:
                figures.problems.append(f"{iid}: {len(mine)} accepted sends, decided by the timer")
            continue
        decision = decisions[0]
        approved = (decision.message or "").startswith("approved")
        if len(mine) != 1:
            figures.problems.append(f"{iid}: {len(mine)} sends accepted for one decision")
        elif (mine[0]["actor"], mine[0]["approved"]) != (decision.actor, approved):
            figures.problems.append(f"{iid}: the accepted send {mine[0]} is not what was applied")
        else:
            figures.applied += 1
        expected = ("approved", None) if approved else (None, "denied")
        if (view.result, view.error) != expected:
            figures.problems.append(
                f"{iid} ended {view.result!r}/{view.error!r}, decided {approved}"
            )
        if [h.name for h in history if h.kind == "step"] != ["prepare", "book"]:
            figures.problems.append(f"{iid}: steps committed {kinds}")
    engine.close()


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["starter", url, first, count]:
            starter(url, int(first), int(count))
        case ["sender", url, seed, out]:
            sender(url, seed, Path(out))
        case _:
            sys.exit(__doc__)
