"""`signoff check` on many stored instances: wall time and peak memory.

Seeds a SQLite file with N instances of the Order workflow of `tests/deploy_workflows.py` (a few
started through the engine, the rest copies of their rows with new ids, bulk-inserted in the
format the engine writes: instances and their open-wait rows), then runs `signoff check --json`
as a separate process against a deployment that declares its renames and one that does not,
and prints the time, the instances per second and the process's peak RSS. Run at two sizes to
see memory stay flat: it reads the database in keyset pages.

Run: `.venv/bin/python bench/check.py [--instances 100000] [--also 10000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.deploy_workflows`

from tests.conftest import Clock  # noqa: E402
from tests.deploy_workflows import seed  # noqa: E402

CANDIDATES = {
    "careful": "from tests.deploy_workflows import Legacy, OrderV3\n"
    "WORKFLOWS = [OrderV3, Legacy]\n",
    "careless": "from tests.deploy_workflows import OrderV3Bad\nWORKFLOWS = [OrderV3Bad]\n",
}


def make_database(path: Path, instances: int) -> None:
    """The seed's eight instances, then copies of them up to `instances` rows."""
    url = f"sqlite:///{path}"
    seed(url, Clock())
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(signoff_instances)")]
    wait_columns = [r[1] for r in db.execute("PRAGMA table_info(signoff_waits)") if r[1] != "id"]
    templates = db.execute(f"SELECT {', '.join(columns)} FROM signoff_instances").fetchall()
    waits: dict[str, list[tuple[object, ...]]] = {}
    for row in db.execute(f"SELECT {', '.join(wait_columns)} FROM signoff_waits"):
        waits.setdefault(str(row[0]), []).append(row)
    id_at = columns.index("id")
    marks = ", ".join("?" * len(columns))
    wait_marks = ", ".join("?" * len(wait_columns))
    batch: list[tuple[object, ...]] = []
    wait_batch: list[tuple[object, ...]] = []

    def flush() -> None:
        db.executemany(f"INSERT INTO signoff_instances VALUES ({marks})", batch)
        db.executemany(
            f"INSERT INTO signoff_waits ({', '.join(wait_columns)}) VALUES ({wait_marks})",
            wait_batch,
        )
        batch.clear()
        wait_batch.clear()

    for n in range(instances - len(templates)):
        template = templates[n % len(templates)]
        new_id = f"{template[id_at]}-{n:07d}"
        batch.append((*template[:id_at], new_id, *template[id_at + 1 :]))
        for w in waits.get(str(template[id_at]), []):
            wait_batch.append((new_id, *w[1:]))
        if len(batch) >= 10_000:
            flush()
    flush()
    db.commit()
    db.close()


def run_check(path: Path, module: str, workdir: Path) -> tuple[int, float, float, dict[str, int]]:
    """Exit code, seconds, peak RSS in MiB, and the headline counts of one `signoff check`."""
    code = (
        "import resource, sys\n"
        "from signoff.web.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{workdir}{os.pathsep}{ROOT}"}
    started = time.perf_counter()
    command = [sys.executable, "-c", code, "check", "--db", f"sqlite:///{path}"]
    done = subprocess.run(
        [*command, "--workflows", module, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        check=False,
    )
    took = time.perf_counter() - started
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    found = json.loads(done.stdout)["deployment"]
    heads = {k: found[k] for k in ("checked", "stranded_instances", "carried_instances")}
    return done.returncode, took, peak_kib / 1024, heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--also", type=int, default=10_000, help="a smaller run, for memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name, text in CANDIDATES.items():
            (workdir / f"{name}.py").write_text(text)
        for size in sorted({args.also, args.instances}):
            path = workdir / f"check-{size}.db"
            started = time.perf_counter()
            make_database(path, size)
            seeded = time.perf_counter() - started
            print(f"{size:,} instances seeded in {seeded:.1f} s")
            for module in CANDIDATES:
                code, took, peak, heads = run_check(path, module, workdir)
                print(
                    f"  signoff check ({module}): exit {code}, {took:.1f} s wall "
                    f"({heads['checked'] / took:,.0f} unfinished instances/s), peak RSS "
                    f"{peak:.0f} MiB; {heads}"
                )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this script's own peak RSS, seeding included: {own:.0f} MiB)")


if __name__ == "__main__":
    main()
