"""What the trigram index on the instances' data (revision 0015) costs writes on PostgreSQL:
durable steps/s, approval workflows/s and `send` latency, the same engine on scratch databases
side by side, rounds interleaved: without the index (as before 0015); with only an index on
the data's length (the HOT updates lost, nothing more); with the trigram index (GIN's pending
list on, PostgreSQL's default, and a bigger one); and with `fastupdate = off` (every update
writes its entries into the index at once).

    .venv/bin/python bench/search_writes.py [--rounds 5] [--steps 20] [--approvals 200]
                                            [--preload 0]

Each round runs `--steps` workflows of 20 steps that each change the data (bench/scale.py's
Twenty: a step commit that changes nothing indexed is a HOT update, which an index on the data
ends for every step that changes it) and `--approvals` approval workflows (start, a step, an
approval decided, a step, completed) on each database in turn; `--preload` instances waiting
beforehand make the index big. The machine is shared: compare the columns of one run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))  # the checkout is the `signoff` package
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.scale import ADMIN, Signoff, drop, hot_updates, percentiles, scratch  # noqa: E402
from bench.scale_flows import Expense  # noqa: E402

INDEX = "ix_signoff_instances_data_trgm"
VARIANTS = {
    "no index": "DROP INDEX {index}",
    # what losing HOT updates costs alone: an index on the data whose entries cost nothing
    "no HOT, no trigrams": (
        "DROP INDEX {index}; CREATE INDEX bench_data_length ON signoff_instances ((length(data)))"
    ),
    "index (pending list)": "",
    "index, pending list 16 MB": "ALTER INDEX {index} SET (gin_pending_list_limit = 16384)",
    "index, fastupdate off": "ALTER INDEX {index} SET (fastupdate = off)",
}


def server_cpu(name: str) -> dict[int, float]:
    """CPU seconds each PostgreSQL backend of database `name` has used (the server's side of
    the work, which the machine's other load hardly changes, unlike throughput)."""
    tick = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]
            ).fetchall()
        ]
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended, or another machine's server
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / tick
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="workflows of 20 steps")
    parser.add_argument("--approvals", type=int, default=200)
    parser.add_argument("--preload", type=int, default=0, help="waiting instances first")
    args = parser.parse_args()
    runs: dict[str, Signoff] = {}
    names: dict[str, str] = {}
    urls: dict[str, str] = {}
    try:
        for n, (variant, change) in enumerate(VARIANTS.items()):
            names[variant] = f"signoff_bench_writes_{n}"
            url = urls[variant] = scratch(names[variant])
            runs[variant] = Signoff(url, args.steps, args.approvals)
            model = runs[variant].engine.start(Expense, {"amount": 12})  # waits: copied
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO signoff_instances (id, workflow, status, data, state, version, "
                    "created_at, updated_at) SELECT md5('p' || g), workflow, status, "
                    "replace(data, '\"amount\":12', '\"amount\":' || g), state, version, "
                    "created_at, updated_at FROM signoff_instances, "
                    "generate_series(1, %s) g WHERE id = %s",
                    (args.preload, model),
                )
                for statement in filter(None, change.format(index=INDEX).split("; ")):
                    conn.execute(statement)
                conn.execute("VACUUM ANALYZE signoff_instances")
        rates: dict[str, list[dict[str, float]]] = {v: [] for v in runs}
        cpu: dict[str, float] = dict.fromkeys(runs, 0.0)
        for _ in range(args.rounds):
            for variant, run in runs.items():
                before = server_cpu(names[variant])
                rates[variant].append(run.round())
                after = server_cpu(names[variant])
                cpu[variant] += sum(t - before.get(pid, 0.0) for pid, t in after.items())
        print(
            f"PostgreSQL, medians of {args.rounds} interleaved rounds of {args.steps} x 20 "
            f"steps and {args.approvals} approval workflows, {args.preload} waiting beforehand:"
        )

        def median(variant: str, figure: str) -> float:
            return statistics.median(r[figure] for r in rates[variant])

        for variant, run in runs.items():
            steps, approvals = median(variant, "steps_per_s"), median(variant, "approvals_per_s")
            base_steps = median("no index", "steps_per_s")
            base_approvals = median("no index", "approvals_per_s")
            send = percentiles(run.latencies)
            hot, updates = hot_updates(urls[variant])
            print(
                f"  {variant:26} steps {steps:7.1f}/s ({steps / base_steps:4.0%})  approvals "
                f"{approvals:6.1f}/s ({approvals / base_approvals:4.0%})  send p50 "
                f"{send['resume_p50_ms']:5.2f} ms p99 {send['resume_p99_ms']:5.2f} ms  "
                f"HOT {hot / max(updates, 1):4.0%}  server CPU a round "
                f"{cpu[variant] / args.rounds * 1000:5.0f} ms "
                f"({cpu[variant] / cpu['no index']:4.0%})"
            )
    finally:
        for run in runs.values():
            run.engine.close()
        for name in names.values():
            drop(name)


if __name__ == "__main__":
    main()
