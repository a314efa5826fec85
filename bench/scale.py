"""signoff beside DBOS Transact and beside the raw driver, on PostgreSQL, SQLite and MariaDB, in
one run.

Run: `make bench-peer` (it makes `bench/peer-venv` with DBOS, never a dependency of signoff, and
runs this), or `.venv/bin/python bench/scale.py [--quick] [--only pg|sqlite|mariadb]
[--no-scale-out]`. PostgreSQL is the server on 127.0.0.1:5432 (trust), MariaDB the one on
127.0.0.1:3306 (root, no password); scratch databases are made and dropped. DBOS has no MariaDB
backend: there signoff stands beside the floor alone (PyMySQL by hand, one round trip per
statement, as PyMySQL has no pipeline; InnoDB with innodb_flush_log_at_trx_commit=1).
Every figure is the median of 3 rounds, measured in this one run, side by side:

- durable steps/s: a workflow of 20 steps, each committed before the next;
- approval workflows/s: start, a step, wait for an approval, decide it, a step, complete;
  resume latency is `send` (the decision) returning with the instance completed;
- the floor: the raw driver doing the same transactions by hand (psycopg with one round trip
  per transaction, or sqlite3 at the same `synchronous`), no engine at all: per step one
  read-modify-write of a row of the instance's size plus a history row (indexed by instance,
  as an audit trail read per instance needs), each workflow of steps inserted first as
  signoff's are; per approval workflow 4 write transactions, each rewriting the row with its
  data as a step does, and a read (its resume latency: that read and the two transactions
  after it);
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
import pymysql  # noqa: E402
from signoff.engine import Engine  # noqa: E402
from signoff.engine.storage.pgsend import PreparedSender  # noqa: E402

sys.path.insert(0, str(ROOT))
from bench.scale_flows import STEPS, Chaser, Expense, Parked, Twenty  # noqa: E402

PEER = ROOT / "bench" / "peer-venv" / "bin" / "python"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ROUNDS = 3


def scratch(name: str) -> str:
    """A fresh, empty PostgreSQL database; its SQLAlchemy URL."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def mariadb_scratch(name: str) -> str:
    """A fresh, empty MariaDB database; its SQLAlchemy URL."""
    conn = pymysql.connect(**MARIADB, autocommit=True)  # type: ignore[arg-type]
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return f"mysql+pymysql://root@127.0.0.1:3306/{name}"


def mariadb_drop(name: str) -> None:
    conn = pymysql.connect(**MARIADB, autocommit=True)  # type: ignore[arg-type]
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


# --- signoff -----------------------------------------------------------------------------------


class Signoff:
    """signoff's rounds: durable steps/s and approval workflows/s, resume latencies."""

    def __init__(self, url: str, step_instances: int, approvals: int) -> None:
        self.engine = Engine(url, workflows=[Twenty, Expense])
        self.postgres = url.startswith("postgresql")
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
        spent = Spent(self.postgres)
        for _ in range(self.approvals):
            iid = engine.start(Expense, {"amount": 12})
            sent = time.perf_counter()
            view = engine.send(iid, "decided", {"approved": True}, actor="alice")
            self.latencies.append((time.perf_counter() - sent) * 1000)
            assert view.status == "completed"
        return {
            "steps_per_s": steps,
            "approvals_per_s": self.approvals / (time.perf_counter() - started),
            **spent.per(self.approvals, "approval_"),
        }

    def statements(self) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
        """The statements one approval workflow sends PostgreSQL (its id, then each statement
        with its parameters), as psycopg is handed them."""
        sent: list[tuple[str, dict[str, Any]]] = []
        execute = psycopg.Cursor.execute
        first_value = PreparedSender.first_value  # a commit's statement, past the cursor

        def noting(cur: Any, query: Any, params: Any = None, **options: Any) -> Any:
            sent.append((str(query), dict(params or {})))
            return execute(cur, query, params, **options)

        def noting_prepared(sender: Any, conn: Any, sql: Any, params: Any) -> Any:
            sent.append((sql.decode() if isinstance(sql, bytes) else sql, dict(params)))
            return first_value(sender, conn, sql, params)

        psycopg.Cursor.execute = noting  # type: ignore[method-assign]
        PreparedSender.first_value = noting_prepared  # type: ignore[method-assign]
        try:
            iid = self.engine.start(Expense, {"amount": 12})
            self.engine.send(iid, "decided", {"approved": True}, actor="alice")
        finally:
            psycopg.Cursor.execute = execute  # type: ignore[method-assign]
            PreparedSender.first_value = first_value  # type: ignore[method-assign]
        assert sent, "no statement was seen: signoff sends them some way this script misses"
        return iid, sent

    def mysql_statements(self) -> tuple[str, list[tuple[str, Any]]]:
        """What one approval workflow sends MariaDB, as PyMySQL is handed it: ("begin" |
        "commit" | "rollback", None), ("execute" | "executemany", (sql, params))."""
        sent: list[tuple[str, Any]] = []
        cursor, connection = pymysql.cursors.Cursor, pymysql.connections.Connection
        originals = {
            (cursor, "execute"): cursor.execute,
            (cursor, "executemany"): cursor.executemany,
            (connection, "begin"): connection.begin,
            (connection, "commit"): connection.commit,
            (connection, "rollback"): connection.rollback,
        }

        inside: list[bool] = []  # executemany calls execute itself: note the outer call only

        def noting(owner: Any, name: str) -> Any:
            original = originals[owner, name]

            def call(this: Any, *args: Any) -> Any:
                if inside:
                    return original(this, *args)
                sent.append((name, args or None))
                inside.append(True)
                try:
                    return original(this, *args)
                finally:
                    inside.pop()

            return call

        for owner, name in originals:
            setattr(owner, name, noting(owner, name))
        try:
            iid = self.engine.start(Expense, {"amount": 12})
            self.engine.send(iid, "decided", {"approved": True}, actor="alice")
        finally:
            for (owner, name), original in originals.items():
                setattr(owner, name, original)
        return iid, sent

    def resume(self) -> dict[str, float]:
        return percentiles(self.latencies)


def server_cpu_s() -> float | None:
    """CPU seconds (user + system) that PostgreSQL's processes on this machine have used, all of
    them (backends, WAL writer, checkpointer: a commit's work is spread over them); None where
    they cannot be read (another machine, no /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, seen = 0, False
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if not comm.read().startswith("postgres"):
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        seen = True
    return total / tick if seen else None


class Spent:
    """Per workflow: this process's CPU, PostgreSQL's CPU and the wall time, in microseconds,
    over what runs between `Spent()` and `per(n)`."""

    def __init__(self, postgres: bool = True) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        self.server = server_cpu_s() if postgres else None

    def per(self, n: int, prefix: str) -> dict[str, float]:
        server = server_cpu_s()
        found = {
            f"{prefix}client_cpu_us": (time.process_time() - self.cpu) / n * 1e6,
            f"{prefix}wall_us": (time.perf_counter() - self.wall) / n * 1e6,
        }
        if server is not None and self.server is not None:
            found[f"{prefix}server_cpu_us"] = (server - self.server) / n * 1e6
        return found


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50 and p99 of resume latencies (ms)."""
    ordered = sorted(latencies)
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


def pg_floor(
    url: str,
    row_bytes: int,
    instances: int,
    steps: int,
    approvals: int,
    own: tuple[str, list[tuple[str, dict[str, Any]]]] | None = None,
) -> Callable[[], dict]:
    """psycopg by hand: each transaction is one round trip (pipeline mode), durable commits.
    Steps are counted as signoff's are: `instances` workflows, each inserted with its
    "started" row, then `steps` transactions. With `own` (`Signoff.statements`), it also
    replays signoff's own statements for an approval workflow with new ids: signoff's rows,
    indexes, history and wait rows, without signoff's Python."""
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
        started = time.perf_counter()
        for _ in range(instances):
            iid = f"s{next(counter)}"
            now = datetime.now(UTC).replace(tzinfo=None)
            tx(  # start, as signoff's rounds start each workflow of steps
                ("INSERT INTO fi VALUES (%s, 'running', %s, 1, %s)", (iid, data, now)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'started')", (iid, now)),
            )
            for version in range(1, steps + 1):
                write(iid, version)
        return instances * steps / (time.perf_counter() - started)

    def transition(iid: str, status: str, version: int, *more: tuple[str, tuple]) -> None:
        """One transition of an approval workflow: the row rewritten with its data (a
        transition changes the instance's data and state, as a step does), its status and
        time, under the version check, with a history row and whatever `more` does."""
        now = datetime.now(UTC).replace(tzinfo=None)
        tx(
            (
                "UPDATE fi SET status = %s, data = %s, version = %s, updated_at = %s "
                "WHERE id = %s AND version = %s",
                (status, data, version + 1, now, iid, version),
            ),
            *more,
            (
                "INSERT INTO fh (iid, at, kind, detail) VALUES (%s, %s, %s, '{}')",
                (iid, now, status),
            ),
        )

    def approval_rate() -> dict[str, float]:
        resumes: list[float] = []
        started = time.perf_counter()
        spent = Spent()
        for _ in range(approvals):
            iid = f"a{next(counter)}"
            now = datetime.now(UTC).replace(tzinfo=None)
            tx(  # start
                ("INSERT INTO fi VALUES (%s, 'running', %s, 1, %s)", (iid, data, now)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'started')", (iid, now)),
            )
            # the first step and the wait
            transition(
                iid, "waiting", 1, ("INSERT INTO fw (iid, event) VALUES (%s, 'decided')", (iid,))
            )
            sent = time.perf_counter()  # the resume: a read, the decision, the completion
            conn.execute("SELECT data, version FROM fi WHERE id = %s", (iid,), prepare=True)
            # the decision
            transition(iid, "running", 2, ("DELETE FROM fw WHERE iid = %s", (iid,)))
            transition(iid, "completed", 3)  # the last step and completion
            resumes.append((time.perf_counter() - sent) * 1000)
        return {
            "approvals_per_s": approvals / (time.perf_counter() - started),
            **percentiles(resumes),
            **spent.per(approvals, "approval_"),
        }

    def own_sql_rate() -> dict[str, float]:
        assert own is not None
        first, sent = own
        cur = conn.cursor()
        started = time.perf_counter()
        spent = Spent()
        for _ in range(approvals):
            iid = f"o{next(counter)}"
            for sql, params in sent:
                cur.execute(sql, {k: iid if v == first else v for k, v in params.items()})
                cur.fetchone()
        return {
            "own_sql_approvals_per_s": approvals / (time.perf_counter() - started),
            **spent.per(approvals, "own_sql_"),
        }

    step_rate()  # warm up

    def rates() -> dict:
        found = {"steps_per_s": step_rate(), **approval_rate()}
        if own is not None:
            found.update(own_sql_rate())
        return found

    return rates


def mysql_floor(
    url: str,
    row_bytes: int,
    instances: int,
    steps: int,
    approvals: int,
    own: tuple[str, list[tuple[str, Any]]] | None = None,
) -> Callable[[], dict]:
    """PyMySQL by hand, the PostgreSQL floor's transactions on InnoDB: BEGIN, the statements,
    COMMIT, each a round trip (durable commits). With `own` (`Signoff.mysql_statements`), it
    also replays signoff's own statements for an approval workflow with new ids."""
    name = url.rsplit("/", 1)[1]
    conn = pymysql.connect(**MARIADB, database=name, autocommit=True)  # type: ignore[arg-type]
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS fi, fh, fw")
    cur.execute(
        "CREATE TABLE fi (id VARCHAR(100) PRIMARY KEY, status VARCHAR(20), data LONGTEXT, "
        "version INT, updated_at DATETIME(6)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    cur.execute(
        "CREATE TABLE fh (id BIGINT AUTO_INCREMENT PRIMARY KEY, iid VARCHAR(100), "
        "at DATETIME(6), kind VARCHAR(40), detail LONGTEXT, KEY (iid, id)) "
        "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    cur.execute(
        "CREATE TABLE fw (id BIGINT AUTO_INCREMENT PRIMARY KEY, iid VARCHAR(100), "
        "event VARCHAR(200), KEY (iid)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    )
    data = "x" * row_bytes
    counter = iter(range(10**9))

    def tx(*statements: tuple[str, tuple[Any, ...]]) -> None:
        conn.begin()
        for sql, params in statements:
            cur.execute(sql, params)
        conn.commit()

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
        started = time.perf_counter()
        for _ in range(instances):
            iid = f"s{next(counter)}"
            now = datetime.now(UTC).replace(tzinfo=None)
            tx(
                ("INSERT INTO fi VALUES (%s, 'running', %s, 1, %s)", (iid, data, now)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'started')", (iid, now)),
            )
            for version in range(1, steps + 1):
                write(iid, version)
        return instances * steps / (time.perf_counter() - started)

    def transition(iid: str, status: str, version: int, *more: tuple[str, tuple]) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        tx(
            (
                "UPDATE fi SET status = %s, data = %s, version = %s, updated_at = %s "
                "WHERE id = %s AND version = %s",
                (status, data, version + 1, now, iid, version),
            ),
            *more,
            (
                "INSERT INTO fh (iid, at, kind, detail) VALUES (%s, %s, %s, '{}')",
                (iid, now, status),
            ),
        )

    def approval_rate() -> dict[str, float]:
        resumes: list[float] = []
        started = time.perf_counter()
        for _ in range(approvals):
            iid = f"a{next(counter)}"
            now = datetime.now(UTC).replace(tzinfo=None)
            tx(
                ("INSERT INTO fi VALUES (%s, 'running', %s, 1, %s)", (iid, data, now)),
                ("INSERT INTO fh (iid, at, kind) VALUES (%s, %s, 'started')", (iid, now)),
            )
            transition(
                iid, "waiting", 1, ("INSERT INTO fw (iid, event) VALUES (%s, 'decided')", (iid,))
            )
            sent = time.perf_counter()  # the resume: a read, the decision, the completion
            cur.execute("SELECT data, version FROM fi WHERE id = %s", (iid,))
            cur.fetchone()
            transition(iid, "running", 2, ("DELETE FROM fw WHERE iid = %s", (iid,)))
            transition(iid, "completed", 3)
            resumes.append((time.perf_counter() - sent) * 1000)
        return {
            "approvals_per_s": approvals / (time.perf_counter() - started),
            **percentiles(resumes),
        }

    def renamed(value: Any, first: str, iid: str) -> Any:
        if value == first:
            return iid
        if isinstance(value, dict):
            return {k: renamed(v, first, iid) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(renamed(v, first, iid) for v in value)
        return value

    def own_sql_rate() -> float:
        assert own is not None
        first, sent = own
        started = time.perf_counter()
        for _ in range(approvals):
            iid = f"o{next(counter)}"
            for what, args in sent:
                if what in ("begin", "commit", "rollback"):
                    getattr(conn, what)()
                else:
                    getattr(cur, what)(*renamed(args, first, iid))
        return approvals / (time.perf_counter() - started)

    step_rate()  # warm up

    def rates() -> dict:
        found = {"steps_per_s": step_rate(), **approval_rate()}
        if own is not None:
            found["own_sql_approvals_per_s"] = own_sql_rate()
        return found

    return rates


def sqlite_floor(
    path: Path, sync: str, row_bytes: int, instances: int, steps: int, approvals: int
) -> Callable[[], dict]:
    """sqlite3 by hand at the same `synchronous`: per step BEGIN IMMEDIATE, read the row,
    write it back with the version check, a history row, COMMIT (bench/engine.py's floor);
    `instances` workflows of `steps` steps, each inserted first, as signoff's rounds do."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, status TEXT, data TEXT, version INT)")
    conn.execute("CREATE TABLE h (id INTEGER PRIMARY KEY, t_id TEXT, kind TEXT, detail TEXT)")
    conn.execute("CREATE INDEX h_t ON h (t_id, id)")  # as the PostgreSQL floor's: read by instance
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
        started = time.perf_counter()
        for _ in range(instances):
            iid = f"s{next(counter)}"
            conn.execute("BEGIN IMMEDIATE")  # start, as signoff's rounds start each workflow
            conn.execute("INSERT INTO t VALUES (?, 'running', ?, 1)", (iid, data))
            conn.execute("INSERT INTO h (t_id, kind) VALUES (?, 'started')", (iid,))
            conn.execute("COMMIT")
            for _ in range(steps):
                rmw(iid, "running", "step")
        return instances * steps / (time.perf_counter() - started)

    def approval_rate() -> dict[str, float]:
        resumes: list[float] = []
        started = time.perf_counter()
        for _ in range(approvals):
            iid = f"a{next(counter)}"
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?, 'running', ?, 1)", (iid, data))
            conn.execute("INSERT INTO h (t_id, kind) VALUES (?, 'started')", (iid,))
            conn.execute("COMMIT")
            rmw(iid, "waiting", "waiting")
            sent = time.perf_counter()  # the resume: a read, the decision, the completion
            conn.execute("SELECT data, version FROM t WHERE id = ?", (iid,)).fetchone()
            rmw(iid, "running", "event")
            rmw(iid, "completed", "completed")
            resumes.append((time.perf_counter() - sent) * 1000)
        return {
            "approvals_per_s": approvals / (time.perf_counter() - started),
            **percentiles(resumes),
        }

    return lambda: {"steps_per_s": step_rate(), **approval_rate()}


# --- DBOS --------------------------------------------------------------------------------------


def dbos_round(url: str, step_instances: int, approvals: int) -> dict[str, float] | str:
    """One round of DBOS's figures (a process of its own), or why there are none."""
    if url.startswith("mysql"):
        return "DBOS runs on PostgreSQL and SQLite only"
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
        resume += f"{peer['resume_p50_ms']:.2f} / {peer['resume_p99_ms']:.2f} | "
    else:
        resume += "n/a | "
    resume += f"{floor['resume_p50_ms']:.2f} / {floor['resume_p99_ms']:.2f} | | |"
    lines.append(resume)
    if isinstance(peer, str):
        lines.append(f"DBOS: {peer}")
    return lines


def where_time_goes(ours: dict, floor: dict) -> list[str]:
    """An approval workflow's time on PostgreSQL, split: this process's CPU, the server's CPU
    (all of PostgreSQL's processes, when they run on this machine) and the wall time."""

    def ms(found: dict, prefix: str, what: str) -> str:
        value = found.get(f"{prefix}{what}_us")
        return "n/a" if value is None else f"{value / 1000:.2f}"

    lines = [
        "An approval workflow's time, per workflow (client = this Python process's CPU, "
        "server = PostgreSQL's CPU, all its processes):",
        "| | client CPU ms | server CPU ms | wall ms |",
        "|---|---|---|---|",
    ]
    for label, found, prefix in (
        ("signoff", ours, "approval_"),
        ("raw floor (psycopg pipeline by hand)", floor, "approval_"),
        ("signoff's statements replayed (psycopg cursor)", floor, "own_sql_"),
    ):
        lines.append(
            f"| {label} | {ms(found, prefix, 'client_cpu')} | {ms(found, prefix, 'server_cpu')} "
            f"| {ms(found, prefix, 'wall')} |"
        )
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


# --- several processes on PostgreSQL ------------------------------------------------------------


def start_workers(url: str, count: int, logs: Path, *options: str) -> list[subprocess.Popen]:
    """`signoff worker` processes running bench.scale_flows; returns once all are firing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    procs, files = [], []
    for n in range(count):
        log = logs / f"worker-{n}-{time.monotonic_ns()}.log"
        files.append(log)
        with open(log, "wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "signoff.web.cli", "worker", "--db", url),
                        *("--workflows", "bench.scale_flows", *options),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=out,
                )
            )
    deadline = time.monotonic() + 60
    while not all("firing the timers" in f.read_text() for f in files):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker did not start: " + files[0].read_text()[-2000:])
        time.sleep(0.05)
    return procs


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def scale_out(count: int, logs: Path, call_ms: int) -> dict[str, float]:
    """Timer-driven work: `count` instances fall due at the same moment; each then calls a
    service (a step waiting `call_ms` for the answer) and records it. Instances finished per
    second, from the due moment to the last commit, with one worker process and with two."""
    rates: dict[str, float] = {}
    for workers in (1, 2):
        runs = []
        for round_ in range(ROUNDS):
            name = f"signoff_bench_scaleout_{workers}_{round_}"
            url = scratch(name)
            engine = Engine(url, workflows=[Chaser])
            procs = start_workers(url, workers, logs)
            try:
                due = time.time() + 2.0 + count * 0.004
                for _ in range(count):
                    after_ms = int((due - time.time()) * 1000)
                    engine.start(Chaser, {"after_ms": after_ms, "call_ms": call_ms})
                deadline = time.monotonic() + 300
                while engine.counts().get("completed", 0) < count:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"scale-out stuck: {engine.counts()}")
                    time.sleep(0.1)
                with psycopg.connect(url, autocommit=True) as conn:
                    first, last = conn.execute(
                        "SELECT min(h.at), max(i.updated_at) FROM signoff_instances i "
                        "JOIN signoff_history h ON h.instance_id = i.id AND h.kind = 'waiting'"
                    ).fetchone()
                # every instance was due `after_ms` after its wait began: the same moment
                runs.append(count / (last.replace(tzinfo=UTC).timestamp() - due))
                assert first is not None
            finally:
                stop_all(procs)
                engine.close()
                drop(name)
        rates[f"{workers}_worker"] = statistics.median(runs)
    rates["ratio"] = rates["2_worker"] / rates["1_worker"]
    return rates


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def latencies(engine: Engine, n: int) -> dict[str, float]:
    """p50 / p99 ms of start, send and get on an approval workflow."""
    took: dict[str, list[float]] = {"start": [], "send": [], "get": []}
    for _ in range(n):
        t = time.perf_counter()
        iid = engine.start(Expense, {"amount": 1})
        took["start"].append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.get(iid)
        took["get"].append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.send(iid, "decided", {"approved": True})
        took["send"].append(time.perf_counter() - t)
    out = {}
    for op, values in took.items():
        out[f"{op}_p50_ms"] = percentile(values, 0.5) * 1000
        out[f"{op}_p99_ms"] = percentile(values, 0.99) * 1000
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def waiting_100k(count: int) -> dict[str, Any]:
    """`count` instances waiting a week for an approval: this process's memory and the
    latency of start/send/get, before they exist and after (with a scheduler running)."""
    from signoff.engine import Scheduler

    name = "signoff_bench_waiting"
    url = scratch(name)
    engine = Engine(url, workflows=[Expense, Parked])
    scheduler = Scheduler(engine)
    scheduler.start()
    try:
        latencies(engine, 100)  # warm up
        before = {**latencies(engine, 300), "rss_mb": rss_mb()}
        template = engine.start(Parked)
        with psycopg.connect(url, autocommit=True) as conn:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'signoff_instances' AND column_name <> 'id'"
                )
            ]
            wcols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'signoff_waits' "
                    "AND column_name NOT IN ('id', 'instance_id')"
                )
            ]
            started = time.perf_counter()
            conn.execute(
                f"INSERT INTO signoff_instances (id, {', '.join(cols)}) "
                f"SELECT 'parked-' || g, {', '.join(cols)} FROM signoff_instances, "
                "generate_series(1, %s) g WHERE id = %s",
                (count, template),
            )
            conn.execute(
                f"INSERT INTO signoff_waits (instance_id, {', '.join(wcols)}) "
                f"SELECT 'parked-' || g, {', '.join(wcols)} FROM signoff_waits, "
                "generate_series(1, %s) g WHERE instance_id = %s",
                (count, template),
            )
            made = time.perf_counter() - started
            # what a bulk load leaves behind (dirty pages, an autovacuum of 100k new rows) is
            # done before measuring: the figure is for a database that holds them, not one
            # still absorbing them
            conn.execute("VACUUM ANALYZE signoff_instances")
            conn.execute("VACUUM ANALYZE signoff_waits")
            conn.execute("CHECKPOINT")
        scheduler.sweep()  # what a scheduler does with them: arms the due ones (none)
        time.sleep(1)
        armed = scheduler.armed()
        after = {**latencies(engine, 300), "rss_mb": rss_mb()}
        waiting = engine.counts().get("waiting", 0)
    finally:
        scheduler.shutdown()
        engine.close()
        drop(name)
    return {
        "before": before,
        "after": after,
        "waiting": waiting,
        "armed_jobs": armed,
        "made_in_s": made,
    }


def web_only_timers(count: int, logs: Path) -> dict[str, float]:
    """Timers created through the API of `signoff serve --no-scheduler`, fired by two
    `signoff worker`s (default sweep, 2 s): seconds late, from their due time to the commit
    that fired them."""
    import socket

    import httpx

    name = "signoff_bench_timers"
    url = scratch(name)
    engine = Engine(url, workflows=[Chaser])
    procs = start_workers(url, 2, logs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    with open(logs / "web.log", "wb") as out:
        web = subprocess.Popen(
            [
                *(sys.executable, "-m", "signoff.web.cli", "serve", "--no-scheduler"),
                *("--db", url, "--workflows", "bench.scale_flows", "--open-access"),
                *("--port", str(port), "--log-level", "warning"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((logs / "web.log").read_text()[-2000:])
            time.sleep(0.1)
        ids = []
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(count):
                after_ms = 500 + (i * 37) % 1500  # due 0.5-2 s after it was made
                answer = client.post(
                    "/api/instances", json={"workflow": "Chaser", "data": {"after_ms": after_ms}}
                )
                answer.raise_for_status()
                ids.append(answer.json()["id"])
                time.sleep(0.02)
        deadline = time.monotonic() + 60
        while engine.counts().get("completed", 0) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timers stuck: {engine.counts()}")
            time.sleep(0.1)
        late = []
        for iid in ids:
            history = engine.history(iid)
            began = next(h.at for h in history if h.kind == "waiting")
            fired = [h.at for h in history if h.kind == "event" and h.via == "timer"]
            assert len(fired) == 1, f"{iid} fired {len(fired)} times"
            due = began.timestamp() + engine.get(iid).data["after_ms"] / 1000
            late.append(fired[0].timestamp() - due)
    finally:
        web.terminate()
        web.wait(timeout=20)
        stop_all(procs)
        engine.close()
        drop(name)
    return {
        "p50_s": percentile(late, 0.5),
        "p99_s": percentile(late, 0.99),
        "max_s": max(late),
        "min_s": min(late),
    }


def takeover(count: int, logs: Path) -> dict[str, float]:
    """A process driving `count` instances is SIGKILLed in the middle of a step (the one of
    tests/test_scale.py); a `signoff worker` with the default lease takes them over. Seconds
    from the kill to the re-run step's commit."""
    import signal

    name = "signoff_bench_takeover"
    url = scratch(name)
    from tests.recovery_workflows import Slow

    engine = Engine(url, workflows=[Slow])
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + str(ROOT)}
    fired = logs / "fired.txt"
    worker_log = logs / "takeover-worker.log"
    with open(worker_log, "wb") as out:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "signoff.web.cli", "worker", "--db", url),
                *("--workflows", "tests.recovery_workflows"),
            ],
            cwd=ROOT,
            env={**env, "SIGNOFF_TEST_FIRED": str(fired)},
            stdout=out,
            stderr=out,
        )
    driver = None
    try:
        while "firing the timers" not in worker_log.read_text():
            time.sleep(0.05)
        with open(logs / "driver.log", "wb") as out:
            driver = subprocess.Popen(
                [sys.executable, "-m", "tests.recovery_workflows", url, str(count)],
                cwd=ROOT,
                env={**env, "SIGNOFF_TEST_FIRED": str(fired), "SIGNOFF_TEST_SLOW": "600"},
                stdout=out,
                stderr=out,
            )
        while not fired.exists() or fired.read_text().count(" slow\n") < count:
            time.sleep(0.05)
        time.sleep(3)  # mid-step, the lease renewed at least once
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed = datetime.now(UTC)
        deadline = time.monotonic() + 120
        while engine.counts().get("completed", 0) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"takeover stuck: {engine.counts()}")
            time.sleep(0.1)
        seconds = [
            (
                next(h.at for h in engine.history(f"slow-{i}") if h.name == "slow") - killed
            ).total_seconds()
            for i in range(count)
        ]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        stop_all([worker])
        engine.close()
        drop(name)
    return {"min_s": min(seconds), "max_s": max(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--only", choices=["pg", "sqlite", "mariadb"], default=None)
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
        own = ours.statements()
        floor = pg_floor(url, ours.row_bytes, step_instances, STEPS, approvals, own)
        figures, peer, floors = side_by_side(ours, floor, peer_url, step_instances, approvals)
        ours.engine.close()
        hot, updates = hot_updates(url)
        drop("signoff_bench_scale")
        drop("signoff_bench_dbos")
        report["postgresql"] = {"signoff": figures, "dbos": peer, "floor": floors}
        lines += table("PostgreSQL (synchronous_commit on)", figures, peer, floors)
        replayed = floors["own_sql_approvals_per_s"]
        lines.append(
            "signoff's own statements for an approval workflow, replayed by hand (its rows, "
            f"indexes, history and wait rows; no engine): {replayed:,.0f}/s; signoff reaches "
            f"{figures['approvals_per_s'] / replayed:.2f} of it"
        )
        lines.append(f"HOT updates of signoff_instances: {hot:,} of {updates:,}")
        lines += where_time_goes(figures, floors)
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            ours = Signoff(f"sqlite:///{tmp}/signoff.db", step_instances, approvals)
            floor = sqlite_floor(
                Path(tmp) / "floor.db", "FULL", ours.row_bytes, step_instances, STEPS, approvals
            )
            figures, peer, floors = side_by_side(
                ours, floor, f"sqlite:///{tmp}/dbos.sqlite", step_instances, approvals
            )
            ours.engine.close()
        report["sqlite"] = {"signoff": figures, "dbos": peer, "floor": floors}
        lines += table("SQLite (synchronous=FULL, WAL)", figures, peer, floors)
    if args.only in (None, "mariadb"):
        url = mariadb_scratch("signoff_bench_scale")
        ours = Signoff(url, step_instances, approvals)
        own = ours.mysql_statements()
        floor = mysql_floor(url, ours.row_bytes, step_instances, STEPS, approvals, own)
        figures, peer, floors = side_by_side(ours, floor, url, step_instances, approvals)
        ours.engine.close()
        mariadb_drop("signoff_bench_scale")
        report["mariadb"] = {"signoff": figures, "dbos": peer, "floor": floors}
        lines += table("MariaDB (InnoDB, innodb_flush_log_at_trx_commit=1)", figures, peer, floors)
        replayed = floors["own_sql_approvals_per_s"]
        lines.append(
            "signoff's own statements for an approval workflow, replayed by hand: "
            f"{replayed:,.0f}/s; signoff reaches {figures['approvals_per_s'] / replayed:.2f} of it"
        )
    if args.only in (None, "pg") and not args.no_scale_out:
        with tempfile.TemporaryDirectory() as tmp:
            n = 150 if args.quick else 400
            lines.append(f"\nScale-out on PostgreSQL: {n} timers due at once, each then a step")
            for call_ms in (100, 0):
                out = scale_out(n, Path(tmp), call_ms)
                report[f"scale_out_call_{call_ms}_ms"] = out
                what = (
                    f"calling a service that answers in {call_ms} ms"
                    if call_ms
                    else "doing no I/O (CPU only)"
                )
                lines.append(
                    f"  step {what}: 1 worker {out['1_worker']:,.0f} instances/s, 2 workers "
                    f"{out['2_worker']:,.0f} instances/s: {out['ratio']:.2f}x"
                )
            timers = web_only_timers(40 if args.quick else 100, Path(tmp))
            report["web_only_timers"] = timers
            lines.append(
                "Timers made by `signoff serve --no-scheduler`, fired by 2 workers: late by "
                f"p50 {timers['p50_s'] * 1000:.0f} ms, p99 {timers['p99_s'] * 1000:.0f} ms, "
                f"max {timers['max_s'] * 1000:.0f} ms"
            )
            took = takeover(5, Path(tmp))
            report["takeover"] = took
            lines.append(
                "A process without a scheduler (as `signoff serve --no-scheduler`) SIGKILLed "
                "mid-step: its 5 instances taken over by a worker "
                f"{took['min_s']:.1f}-{took['max_s']:.1f} s after the kill (step re-run and "
                "committed); a worker's: bench/takeover.py"
            )
        parked = waiting_100k(20_000 if args.quick else 100_000)
        report["waiting"] = parked
        b, a = parked["before"], parked["after"]
        lines += [
            f"\n{parked['waiting']:,} instances waiting (a week-long approval each; "
            f"{parked['armed_jobs']} scheduler jobs armed for them):",
            "| | start p50/p99 ms | send p50/p99 ms | get p50/p99 ms | process RSS MB |",
            "|---|---|---|---|---|",
        ]
        for label, f in (("before", b), ("after", a)):
            lines.append(
                f"| {label} | {f['start_p50_ms']:.2f} / {f['start_p99_ms']:.2f} | "
                f"{f['send_p50_ms']:.2f} / {f['send_p99_ms']:.2f} | "
                f"{f['get_p50_ms']:.2f} / {f['get_p99_ms']:.2f} | {f['rss_mb']:.0f} |"
            )
    print("\n".join(lines))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
