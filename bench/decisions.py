"""Decisions under load on PostgreSQL (127.0.0.1:5432): 4 `signoff worker` processes, SIGKILLed
at random about once a second and restarted, 2 starters and 3 senders deciding at random, a
third of them aimed at the newest instances (still in their first step). Prints what the sends
got and whether every promise held: each accepted send applied, each instance decided once.

    .venv/bin/python bench/decisions.py [--instances 200] [--rounds 3]

The scenario itself is tests/decision_load.py; tests/test_decision_load.py runs it smaller.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))  # the checkout is the `signoff` package
sys.path.insert(0, str(ROOT))

from bench.scale import drop, scratch  # noqa: E402
from tests.decision_load import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds: list[float] = []
    failed = 0
    print(
        f"{'round':>5} {'sends':>6} {'accepted':>8} {'applied':>7} {'refused':>7} "
        f"{'not begun':>9} {'kept':>4} {'decided once':>12} {'by timer':>8} {'kills':>5} {'s':>5}"
    )
    for n in range(1, args.rounds + 1):
        name = f"signoff_bench_decisions_{n}"
        url = scratch(name)
        try:
            with tempfile.TemporaryDirectory() as work:
                f = run(url, Path(work), instances=args.instances)
        finally:
            drop(name)
        sends = sum(f.sends.values())
        refused = sends - f.sends["accepted"] - f.sends["kept"]
        print(
            f"{n:>5} {sends:>6} {f.sends['accepted']:>8} {f.applied:>7} {refused:>7} "
            f"{f.sends['NotWaiting']:>9} {f.sends['kept']:>4} "
            f"{f.decided_once:>8}/{f.instances:<3} {f.by_timer:>8} {f.kills:>5} {f.seconds:>5.1f}"
        )
        for problem in f.problems[:10]:
            print("   ", problem)
        failed += bool(f.problems)
        seconds.append(f.seconds)
    print(
        f"median wall time {statistics.median(seconds):.1f} s; "
        f"rounds with a broken promise: {failed}"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
