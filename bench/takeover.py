"""How soon a SIGKILLed worker's instances are driven on by the others, on PostgreSQL.

Run: `.venv/bin/python bench/takeover.py [--rounds 5] [--instances 40]`.

Four `signoff worker` processes (default lease, 10 s) run bench.scale_flows. Each round starts
`--instances` instances of `Held` whose timers fall due at one moment; the workers claim them
as they fall due. In one of the four (the victim, $SIGNOFF_BENCH_HANG) the step after the timer
hangs, so it holds every instance it claimed (one per scheduler thread, 8) in the middle of a
step; the others finish theirs. The victim is SIGKILLed; the figures are the seconds from the
kill to the commit of each of its instances' step, run again by a survivor (p50, p99, max over
all rounds). A new victim is started for the next round.

Checked, per instance: every step committed exactly once (its history), and no step committed
before the kill ran again (each of "before" and "after" ran once; "work" ran once, or twice
when the victim held it: cut off by the kill, then run again).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))  # the checkout is the `signoff` package
sys.path.insert(0, str(ROOT))

from signoff.engine import Engine  # noqa: E402

from bench.scale import drop, percentile, scratch  # noqa: E402
from bench.scale_flows import Held  # noqa: E402


def worker(url: str, logs: Path, fired: Path, hang: bool) -> tuple[subprocess.Popen[bytes], Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent), "SIGNOFF_BENCH_FIRED": str(fired)}
    env.pop("SIGNOFF_BENCH_HANG", None)
    if hang:
        env["SIGNOFF_BENCH_HANG"] = "1"
    log = logs / f"worker-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "signoff.web.cli", "worker", "--db", url),
                *("--workflows", "bench.scale_flows"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    return proc, log


def ready(procs: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    deadline = time.monotonic() + 60
    while not all("firing the timers" in log.read_text() for _, log in procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _ in procs):
            raise RuntimeError("a worker did not start: " + procs[0][1].read_text()[-2000:])
        time.sleep(0.05)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def runs(fired: Path) -> list[tuple[int, str, str]]:
    if not fired.exists():
        return []
    found = []
    for line in fired.read_text().splitlines():
        pid, label, step = line.split(" ")
        found.append((int(pid), label, step))
    return found


def one_round(
    engine: Engine, url: str, logs: Path, fired: Path, n: int, tag: str
) -> tuple[list[float], list[str]]:
    """Kill a victim holding instances; (seconds to each takeover, the labels it held)."""
    victim, victim_log = worker(url, logs, fired, hang=True)
    ready([(victim, victim_log)])
    due = time.time() + 1.5
    labels = [f"{tag}-{i}" for i in range(n)]
    for label in labels:
        engine.start(Held, {"label": label, "after_ms": int((due - time.time()) * 1000)}, label)
    # every instance either finished by a survivor or in the victim's hanging step
    deadline = time.monotonic() + 60
    while True:
        held = {label for pid, label, step in runs(fired) if pid == victim.pid and step == "work"}
        if all(label in held or finished(engine, label) for label in labels):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"round {tag} stuck: {len(held)} held by the victim")
        time.sleep(0.05)
    time.sleep(0.3)  # mid-step
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = datetime.now(UTC)
    deadline = time.monotonic() + 120
    while not all(finished(engine, label) for label in labels):
        if time.monotonic() > deadline:
            raise RuntimeError(f"takeover stuck in round {tag}")
        time.sleep(0.05)
    seconds = []
    for label in sorted(held):
        at = next(h.at for h in engine.history(label) if h.kind == "step" and h.name == "work")
        seconds.append((at - killed).total_seconds())
    return seconds, sorted(held)


def finished(engine: Engine, label: str) -> bool:
    return engine.get(label).status == "completed"


def check(engine: Engine, fired: Path, labels: list[str], held: set[str]) -> int:
    """Each step committed once; steps committed before the kill never ran again. Returns how
    many steps ran twice (the victim's cut-off ones)."""
    ran = Counter((label, step) for _, label, step in runs(fired))
    again = 0
    for label in labels:
        history = engine.history(label)
        committed = Counter(h.name for h in history if h.kind == "step")
        assert committed == Counter({"before": 1, "work": 1, "after": 1}), (label, committed)
        assert ran[label, "before"] == 1 and ran[label, "after"] == 1, (label, ran)
        assert ran[label, "work"] == (2 if label in held else 1), (label, ran[label, "work"])
        again += ran[label, "work"] - 1
    return again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=40, help="per round")
    args = parser.parse_args()
    name = "signoff_bench_takeover4"
    url = scratch(name)
    engine = Engine(url, workflows=[Held])
    with TemporaryDirectory() as tmp:
        logs, fired = Path(tmp), Path(tmp) / "fired.txt"
        os.environ["SIGNOFF_BENCH_FIRED"] = str(fired)  # "before" runs here, in `start`
        survivors = [worker(url, logs, fired, hang=False) for _ in range(3)]
        ready(survivors)
        seconds: list[float] = []
        labels: list[str] = []
        held: set[str] = set()
        try:
            for r in range(args.rounds):
                took, were_held = one_round(engine, url, logs, fired, args.instances, f"r{r}")
                seconds += took
                held |= set(were_held)
                labels += [f"r{r}-{i}" for i in range(args.instances)]
            again = check(engine, fired, labels, held)
            taken = sum(
                log.read_text().count("took over") for _, log in survivors
            )  # log lines, each for one or more instances
        finally:
            stop([p for p, _ in survivors])
            engine.close()
            drop(name)
    print(
        f"takeover on PostgreSQL: {args.rounds} rounds, 4 workers (default lease 10 s), one "
        f"SIGKILLed holding {len(seconds)} instances mid-step in all (of "
        f"{len(labels)})\n"
        "  kill -> its step re-run and committed by a survivor: "
        f"p50 {percentile(seconds, 0.5):.2f} s, p99 {percentile(seconds, 0.99):.2f} s, "
        f"max {max(seconds):.2f} s (min {min(seconds):.2f} s)\n"
        f"  every step committed once; {again} cut-off steps ran again, none committed before "
        f"the kill; survivors logged {taken} takeovers"
    )


if __name__ == "__main__":
    main()
