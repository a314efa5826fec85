"""Timer accuracy and scheduler memory with many pending timers.

A `signoff worker` process (the scheduler alone) runs on a fresh SQLite file. This script, as
another process, creates timers the way a web process would:

1. memory: far-future timers (due in an hour) grow 1,000 -> 10,000; after each step the
   worker's RSS is read from /proc once a sweep has passed;
2. accuracy: with 10,000 timers pending, probe timers fall due over the next seconds; the delay
   between each one's due time and the transition that applied its event (from the history) gives
   p50 / p99 / max;
3. burst: 1,000 timers due within 10 s, all inside the horizon (each then has a job): the worst
   case for memory. On SQLite a fire is a claim and short write transactions (fire, step,
   end); one drain fires about 900 instances/s on one file (1.1 ms each at synchronous=FULL),
   so bursts beyond that queue up.

Run: `.venv/bin/python bench/timers.py [--quick] [--db URL]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signoff.engine import Engine  # noqa: E402

from tests.timer_workflows import Ticket  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SIGNOFF_TEST_FIRED", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "signoff.web.cli",
                "worker",
                "--db",
                url,
                "--workflows",
                "tests.timer_workflows",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 20
    while "firing the timers" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)
    return process


def create(engine: Engine, n: int, seconds: list[float] | float) -> list[str]:
    each = seconds if isinstance(seconds, list) else [seconds] * n
    return [engine.start(Ticket, {"seconds": s}) for s in each]


def delays(engine: Engine, ids: list[str], timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    done = engine.counts().get("completed", 0) - len([i for i in ids if _completed(engine, i)])
    while engine.counts().get("completed", 0) < done + len(ids) and time.monotonic() < deadline:
        time.sleep(0.5)  # one cheap query, so as not to compete with the worker
    out = []
    for iid in ids:
        history = engine.history(iid)
        began = next(h.at for h in history if h.kind == "waiting")
        fired = [h.at for h in history if h.kind == "event"]
        if len(fired) != 1:
            raise AssertionError(f"{iid} fired {len(fired)} times")
        due = began + timedelta(seconds=engine.get(iid).data["seconds"])
        out.append((fired[0] - due).total_seconds())
    return out


def _completed(engine: Engine, iid: str) -> bool:
    return engine.get(iid).status == "completed"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def show(label: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(
        f"  {label}: n={len(ms)}  p50 {pct(ms, 0.5):.1f} ms  p99 {pct(ms, 0.99):.1f} ms  "
        f"max {max(ms):.1f} ms  mean {statistics.fmean(ms):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--quick", action="store_true", help="fewer timers, for a smoke run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="signoff-bench-timers-"))
    url = args.db or f"sqlite:///{workdir}/timers.db"
    levels = [100, 250, 500, 1000] if args.quick else [1000, 2500, 5000, 10000]
    probes = 100 if args.quick else 500
    burst = 500 if args.quick else 1000

    # the creating process: synchronous=NORMAL only speeds up this script's own inserts
    engine = Engine(url, [Ticket], synchronous="NORMAL")
    worker = start_worker(url, workdir / "worker.log")
    print(f"signoff timer bench: worker pid {worker.pid} on {url}")
    print(f"  worker RSS at start: {rss_mib(worker.pid):.1f} MiB")
    try:
        print("memory as pending timers grow (all due in 1 h, beyond the 30 s horizon):")
        pending = 0
        for level in levels:
            started = time.perf_counter()
            added = level - pending
            create(engine, added, 3600.0)
            took = time.perf_counter() - started
            pending = level
            time.sleep(4.5)  # two sweeps
            print(
                f"  {level:>6} pending: worker RSS {rss_mib(worker.pid):6.1f} MiB "
                f"(created {added} in {took:.1f} s)"
            )

        print(f"accuracy with {pending} pending: {probes} probe timers due over the next 5-25 s")
        spread = [5 + 20 * i / (probes - 1) for i in range(probes)]
        ids = create(engine, probes, spread)
        show("due -> event applied", delays(engine, ids, timeout=60))
        print(f"  worker RSS after: {rss_mib(worker.pid):.1f} MiB")

        print(f"burst: {burst} timers due within 5-15 s (all inside the horizon: one job each)")
        spread = [5 + 10 * i / (burst - 1) for i in range(burst)]
        started = time.perf_counter()
        ids = create(engine, burst, spread)
        print(f"  created in {time.perf_counter() - started:.1f} s")
        time.sleep(2.5)
        print(f"  worker RSS with the burst armed: {rss_mib(worker.pid):.1f} MiB")
        show("due -> event applied", delays(engine, ids, timeout=120))
        print(f"  worker RSS after: {rss_mib(worker.pid):.1f} MiB")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        engine.close()


if __name__ == "__main__":
    main()
