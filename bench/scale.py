"""signoff beside DBOS Transact and beside the raw driver, on PostgreSQL and on SQLite, in one run.

Run: `make bench-peer` (it makes `bench/peer-venv` with DBOS, never a dependency of signoff, and
runs this), or `.venv/bin/python bench/scale.py [--quick] [--only pg|sqlite] [--no-scale-out]`.
PostgreSQL is the server on 127.0.0.1:5432 (trust); scratch databases are made and dropped.
Every figure is the median of 3 rounds, measured in this one run, side by side:

- durable steps/s: a workflow of 20 steps, each committed before the next;
- approval workflows/s: start, a step, wait for an approval, decide it, a step, complete;
  resume latency is `send` (the decision) returning with the instance completed;
- the floor: the raw driver doing the same transactions by hand (psycopg with one round trip
  per transaction, or sqlite3 at the same `synchronous`), no engine at all: per step one
  read-modify-write of a row of the instance's size plus a history row; per approval workflow
  4 write transactions and a read;
- DBOS: `bench/dbos_peer.py` in the peer venv, the same workflows with `@DBOS.step`,
  `DBOS.recv`/`DBOS.send`, on a database of the same kind.

Then, on PostgreSQL: scale-out (timer-driven work completed by one `signoff worker` vs two),
100k waiting instances (process memory, start/send/get latency before and after), and the
lateness of a timer created by a web-only process, fired by workers on another process.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))  # the checkout is the `signoff` package

import psycopg  # noqa: E402
from signoff.engine import Engine  # noqa: E402

sys.path.insert(0, str(ROOT))
from bench.scale_flows import STEPS, Expense, Twenty  # noqa: E402

PEER = ROOT / "bench" / "peer-venv" / "bin" / "python"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ROUNDS = 3


def median(run: Callable[[], float], rounds: int = ROUNDS) -> float:
    return statistics.median(run() for _ in range(rounds))


def scratch(name: str) -> str:
    """A fresh, empty PostgreSQL database; its SQLAlchemy URL."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- signoff -----------------------------------------------------------------------------------


class Signoff:
    """signoff's rounds: durable steps/s and approval workflows/s, resume latencies."""

    def __init__(self, url: str, step_instances: int, approvals: int) -> None:
        self.engine = Engine(url, workflows=[Twenty, Expense])
        self.step_instances, self.approvals = step_instances, approvals
        self.engine.start(Twenty)  # warm up: connections, prepared statements
        self.latencies: list[float] = []
        row = self.engine.store.load(self.engine.start(Twenty))
        assert row is not None
        self.row_bytes = len(row.data) + len(row.state)

    def round(self) -> dict[str, float]:
        engine = self.engine
        started = time.perf_counter()
        for _ in range(self.step_instances):
            engine.start(Twenty)
        steps = self.step_instances * STEPS / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(self.approvals):
            iid = engine.start(Expense, {"amount": 12})
            sent = time.perf_counter()
            view = engine.send(iid, "decided", {"approved": True}, actor="alice")
            self.latencies.append((time.perf_counter() - sent) * 1000)
            assert view.status == "completed"
        return {
            "steps_per_s": steps,
            "approvals_per_s": self.approvals / (time.perf_counter() - started),
        }

    def resume(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        return {
            "resume_p50_ms": ordered[len(ordered) // 2],
            "resume_p99_ms": ordered[int(len(ordered) * 0.99)],
        }


def hot_updates(url: str) -> tuple[int, int]:
    """(HOT updates, all updates) of the instances table since the database was made."""
    conninfo = url.replace("postgresql://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        time.sleep(0.7)  # the statistics collector reports with a delay
        found = conn.execute(
            "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables "
            "WHERE relname = 'signoff_instances'"
        ).fetchone()
    return (int(found[0]), int(found[1])) if found else (0, 0)


# --- the floors --------------------------------------------------------------------------------


def pg_floor(url: str, row_bytes: int, steps: int, approvals: int) -> Callable[[], dict]:
    """psycopg by hand: each transaction is one round trip (pipeline mode), durable commits."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS fi, fh, fw")
    conn.execute(
        "CREATE TABLE fi (id text PRIMARY KEY, status text, data text, version int, "
        "updated_at timestamp)"
    )
    conn.execute(
        "CREATE TABLE fh (id bigserial PRIMARY KEY, iid text, at timestamp, kind text, detail text)"
    )
    conn.execute("CREATE INDEX ON fh (iid, id)")
    conn.execute("CREATE TABLE fw (id bigserial PRIMARY KEY, iid text, event text)")
    conn.execute("CREATE INDEX ON fw (iid)")
    data = "x" * row_bytes
    counter = iter(range(10**9))

    def tx(*statements: tuple[str, tuple[Any, ...]]) -> None:
        with conn.pipeline():
            conn.execute("BEGIN")
            for sql, params in statements:
                conn.execute(sql, params, prepare=True)
            conn.execute("COMMIT")

    def write(iid: str, version: int) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        tx(
            (
                "UPDATE fi SET data = %s, version = %s, updated_at = %s "
                "WHERE id = %s AND version = %s",
                (data, version + 1, now, iid, version),
            ),
            ("INSERT INTO fh (iid, at, kind, detail) VALUES (%s, %s, 'step', '{}')", (iid, now)),
        )

    def step_rate() -> float:
        iid = f"s{next(counter)}"
        conn.execute("INSERT INTO fi VALUES (%s, 'running', %s, 1, now())", (iid, data))
        started = time.perf_counter()
        for version in range(1, steps + 1):
            write(iid, version)
        return steps / (time.perf_counter() - started)

    def approval_rate() -> float:
        started = time.perf_counter()
        for _ in range(approvals):
            iid = f"a{next(counter)}"
            now = datetime.now(UTC).replace(tzinfo=None)
            tx(  # start
                ("INSERT INTO fi VALUES (%s, 'running', %s, 1, %s)", (iid, data, now)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'started')", (iid, now)),
            )
            tx(  # the first step and the wait
                (
                    "UPDATE fi SET status = 'waiting', version = 2 WHERE id = %s AND version = 1",
                    (iid,),
                ),
                ("INSERT INTO fw (iid, event) VALUES (%s, 'decided')", (iid,)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'step')", (iid, now)),
            )
            conn.execute("SELECT data, version FROM fi WHERE id = %s", (iid,), prepare=True)
            tx(  # the decision
                (
                    "UPDATE fi SET status = 'running', version = 3 WHERE id = %s AND version = 2",
                    (iid,),
                ),
                ("DELETE FROM fw WHERE iid = %s", (iid,)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'event')", (iid, now)),
            )
            tx(  # the last step and completion
                (
                    "UPDATE fi SET status = 'completed', version = 4 WHERE id = %s AND version = 3",
                    (iid,),
                ),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'completed')", (iid, now)),
            )
        return approvals / (time.perf_counter() - started)

    step_rate()  # warm up
    return lambda: {"steps_per_s": step_rate(), "approvals_per_s": approval_rate()}


def sqlite_floor(
    path: Path, sync: str, row_bytes: int, steps: int, approvals: int
) -> Callable[[], dict]:
    """sqlite3 by hand at the same `synchronous`: per step BEGIN IMMEDIATE, read the row,
    write it back with the version check, a history row, COMMIT (bench/engine.py's floor)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, status TEXT, data TEXT, version INT)")
    conn.execute("CREATE TABLE h (id INTEGER PRIMARY KEY, t_id TEXT, kind TEXT, detail TEXT)")
    conn.execute("CREATE TABLE w (id INTEGER PRIMARY KEY, t_id TEXT, event TEXT)")
    conn.execute("CREATE INDEX w_t ON w (t_id)")
    data = "x" * row_bytes
    counter = iter(range(10**9))

    def rmw(iid: str, status: str, kind: str) -> None:
        conn.execute("BEGIN IMMEDIATE")
        row, version = conn.execute("SELECT data, version FROM t WHERE id = ?", (iid,)).fetchone()
        conn.execute(
            "UPDATE t SET data = ?, status = ?, version = ? WHERE id = ? AND version = ?",
            (row, status, version + 1, iid, version),
        )
        conn.execute("INSERT INTO h (t_id, kind, detail) VALUES (?, ?, '{}')", (iid, kind))
        if kind == "waiting":
            conn.execute("INSERT INTO w (t_id, event) VALUES (?, 'decided')", (iid,))
        elif kind == "event":
            conn.execute("DELETE FROM w WHERE t_id = ?", (iid,))
        conn.execute("COMMIT")

    def step_rate() -> float:
        iid = f"s{next(counter)}"
        conn.execute("INSERT INTO t VALUES (?, 'running', ?, 1)", (iid, data))
        started = time.perf_counter()
        for _ in range(steps):
            rmw(iid, "running", "step")
        return steps / (time.perf_counter() - started)

    def approval_rate() -> float:
        started = time.perf_counter()
        for _ in range(approvals):
            iid = f"a{next(counter)}"
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, 'running', ?, 1)", (iid, data))
            conn.execute("INSERT INTO h (t_id, kind) VALUES (?, 'started')", (iid,))
            conn.execute("COMMIT")
            rmw(iid, "waiting", "waiting")
            conn.execute("SELECT data, version FROM t WHERE id = ?", (iid,)).fetchone()
            rmw(iid, "running", "event")
            rmw(iid, "completed", "completed")
        return approvals / (time.perf_counter() - started)

    return lambda: {"steps_per_s": step_rate(), "approvals_per_s": approval_rate()}


# --- DBOS --------------------------------------------------------------------------------------


def dbos_round(url: str, step_instances: int, approvals: int) -> dict[str, float] | str:
    """One round of DBOS's figures (a process of its own), or why there are none."""
    if not PEER.exists():
        return "no peer venv: run `make bench-peer` (pip install dbos==3.4.0 into bench/peer-venv)"
    done = subprocess.run(
        [
            str(PEER),
            str(ROOT / "bench" / "dbos_peer.py"),
            url,
            "1",
            str(step_instances),
            str(approvals),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tempfile.gettempdir(),
    )
    if done.returncode != 0:
        return "DBOS failed: " + done.stderr.strip().splitlines()[-1][:300]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the table ---------------------------------------------------------------------------------


def table(kind: str, ours: dict, peer: dict | str, floor: dict) -> list[str]:
    lines = [
        f"\n{kind}",
        "| | signoff | DBOS 3.4 | raw floor | signoff/DBOS | signoff/floor |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("approvals_per_s", "approval workflows/s"),
        ("steps_per_s", "durable steps/s"),
    ):
        theirs = peer[key] if isinstance(peer, dict) else None
        lines.append(
            f"| {label} | {ours[key]:,.0f} | "
            + (f"{theirs:,.0f}" if theirs else "n/a")
            + f" | {floor[key]:,.0f} | "
            + (f"{ours[key] / theirs:.1f}x" if theirs else "n/a")
            + f" | {ours[key] / floor[key]:.2f} |"
        )
    resume = (
        f"| resume (send) p50 / p99 ms | {ours['resume_p50_ms']:.2f} / "
        f"{ours['resume_p99_ms']:.2f} | "
    )
    if isinstance(peer, dict):
        resume += f"{peer['resume_p50_ms']:.2f} / {peer['resume_p99_ms']:.2f} | | | |"
    else:
        resume += "n/a | | | |"
    lines.append(resume)
    if isinstance(peer, str):
        lines.append(f"DBOS: {peer}")
    return lines


def side_by_side(
    ours: Signoff, floor: Callable[[], dict], peer_url: str, step_instances: int, approvals: int
) -> tuple[dict, dict | str, dict]:
    """Rounds interleaved (signoff, floor, DBOS; three times), so a change in the machine's
    load falls on all three alike; the medians of each."""
    rounds: dict[str, list[dict]] = {"signoff": [], "floor": [], "dbos": []}
    failed = ""
    for _ in range(ROUNDS):
        rounds["signoff"].append(ours.round())
        rounds["floor"].append(floor())
        if not failed:
            got = dbos_round(peer_url, step_instances, approvals)
            if isinstance(got, str):
                failed = got
            else:
                rounds["dbos"].append(got)

    def medians(found: list[dict]) -> dict:
        return {k: statistics.median(r[k] for r in found) for k in found[0]}

    signoff = {**medians(rounds["signoff"]), **ours.resume(), "row_bytes": ours.row_bytes}
    peer: dict | str = failed or medians(rounds["dbos"])
    if isinstance(peer, dict):
        lat = sorted(r["resume_p99_ms"] for r in rounds["dbos"])
        peer["resume_p99_ms"] = lat[-1]  # the worst round's p99
    return signoff, peer, medians(rounds["floor"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--only", choices=["pg", "sqlite"], default=None)
    parser.add_argument("--no-scale-out", action="store_true", help="skip the multi-process part")
    args = parser.parse_args()
    step_instances, approvals = (20, 60) if args.quick else (50, 200)
    print(
        f"signoff scale benchmark: medians of {ROUNDS} interleaved rounds; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    report: dict[str, Any] = {}
    lines: list[str] = []
    if args.only in (None, "pg"):
        url = scratch("signoff_bench_scale")
        peer_url = scratch("signoff_bench_dbos")
        ours = Signoff(url, step_instances, approvals)
        floor = pg_floor(url, ours.row_bytes, STEPS * step_instances, approvals)
        figures, peer, floors = side_by_side(ours, floor, peer_url, step_instances, approvals)
        ours.engine.close()
        hot, updates = hot_updates(url)
        drop("signoff_bench_scale")
        drop("signoff_bench_dbos")
        report["postgresql"] = {"signoff": figures, "dbos": peer, "floor": floors}
        lines += table("PostgreSQL (synchronous_commit on)", figures, peer, floors)
        lines.append(f"HOT updates of signoff_instances: {hot:,} of {updates:,}")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            ours = Signoff(f"sqlite:///{tmp}/signoff.db", step_instances, approvals)
            floor = sqlite_floor(
                Path(tmp) / "floor.db", "FULL", ours.row_bytes, STEPS * step_instances, approvals
            )
            figures, peer, floors = side_by_side(
                ours, floor, f"sqlite:///{tmp}/dbos.sqlite", step_instances, approvals
            )
            ours.engine.close()
        report["sqlite"] = {"signoff": figures, "dbos": peer, "floor": floors}
        lines += table("SQLite (synchronous=FULL, WAL)", figures, peer, floors)
    print("\n".join(lines))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
