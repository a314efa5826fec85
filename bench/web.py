"""Dashboard latency with 100,000 instances in SQLite, over a real uvicorn on 127.0.0.1.

    .venv/bin/python bench/web.py [--instances 100000] [--requests 1000] [--db PATH]

Builds the database (a few real instances through the engine, then copies of them with their
open waits; `--db` keeps it for the next run), serves it in a subprocess the way `signoff
serve` does (one uvicorn worker, uvloop and httptools when installed, access log off), and
measures each page: the instances page (first, deep, filtered), an instance page and the inbox
(its rows carry the workflow's summary fields and deadlines; its count covers every page),
with /healthz first as the floor (what any request costs: HTTP, middleware, session, a thread
hop and one query).

Latency (p50, p99) comes from synchronous httpx clients, one process per request in flight
(1, then 8), each timing its requests one after another. Requests/s comes from `wrk` (Debian
package `wrk`) when it is installed, a load generator in C that takes little CPU from the
server; otherwise from the httpx runs. On a machine with several CPUs the server is pinned to
one (the "per worker" of the targets) and the clients to the others, so the client never
competes with the server for a core.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password"


def build(path: Path, count: int) -> dict[str, str]:
    from signoff.engine import Engine
    from signoff.web.examples import UPSTREAM, WORKFLOWS

    UPSTREAM.failure_rate = 0
    engine = Engine(f"sqlite:///{path}", workflows=WORKFLOWS, synchronous="OFF")
    templates = [engine.start("Expense", {"amount": 10, "employee": "bob"})]
    done = engine.start("Expense", {"amount": 11})
    engine.send(done, "decision", {"approved": True}, actor="alice")
    templates.append(done)
    UPSTREAM.fail_next = 2
    failed = engine.start("NightlyReport", {})
    engine.run_due(datetime.now(UTC) + timedelta(hours=1))
    templates.append(failed)
    templates.append(engine.start("Onboarding", {}))
    engine.close()
    db = sqlite3.connect(path)
    cols = [r[1] for r in db.execute("PRAGMA table_info(signoff_instances)")]
    wcols = [r[1] for r in db.execute("PRAGMA table_info(signoff_waits)") if r[1] != "id"]
    rows = {r[0]: r for r in db.execute(f"SELECT {', '.join(cols)} FROM signoff_instances")}
    waits = {
        t: db.execute(
            f"SELECT {', '.join(wcols)} FROM signoff_waits WHERE instance_id=?", (t,)
        ).fetchall()
        for t in templates
    }
    # who takes part in each (the engine writes these with the waits; a person's inbox and
    # lists start from them)
    people = {
        t: db.execute(
            "SELECT role, person FROM signoff_participants WHERE instance_id=?", (t,)
        ).fetchall()
        for t in templates
    }
    # mostly waiting approvals, some done, a few failed, some onboarding: an ops mix
    mix = [templates[0]] * 6 + [templates[1]] * 2 + [templates[2]] + [templates[3]]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    id_at, upd_at = cols.index("id"), cols.index("updated_at")
    new_rows, new_waits, new_people = [], [], []
    for i in range(count - len(templates)):
        source = mix[i % len(mix)]
        row = list(rows[source])
        iid = uuid.uuid4().hex
        row[id_at] = iid
        stamp = (start + timedelta(seconds=i)).replace(tzinfo=None).isoformat(" ")
        row[upd_at] = row[cols.index("created_at")] = stamp
        new_rows.append(row)
        for w in waits[source]:
            w = list(w)
            w[wcols.index("instance_id")] = iid
            w[wcols.index("began_at")] = stamp
            new_waits.append(w)
        new_people += [(iid, role, person) for role, person in people[source]]
    with db:
        db.executemany(
            f"INSERT INTO signoff_instances ({', '.join(cols)}) VALUES "
            f"({', '.join('?' * len(cols))})",
            new_rows,
        )
        db.executemany(
            f"INSERT INTO signoff_waits ({', '.join(wcols)}) VALUES "
            f"({', '.join('?' * len(wcols))})",
            new_waits,
        )
        db.executemany(
            "INSERT INTO signoff_participants (instance_id, role, person) VALUES (?, ?, ?)",
            new_people,
        )
    db.execute("ANALYZE")
    db.close()
    return {"instance": templates[0]}


def serve(db: str, port: int) -> None:
    """What `signoff serve` does, minus the scheduler (nothing is due in this database)."""
    import uvicorn
    from signoff.engine import Engine
    from signoff.web import create_app
    from signoff.web.app import settle_heap
    from signoff.web.auth import hash_password
    from signoff.web.examples import WORKFLOWS

    # alice operates: she sees every instance, as the figures are of the whole list
    engine = Engine(f"sqlite:///{db}", workflows=WORKFLOWS, operators=["alice"])
    app = create_app(engine, secret_key="bench", users={"alice": hash_password(PASSWORD, n=2**12)})
    settle_heap()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000


def _client(base: str, path: str, cookie: str, n: int, ready: Any, out: Any) -> None:
    """One client process: warm up, wait for the others, then `n` requests one after another."""
    _client_cpus()
    with httpx.Client(base_url=base, headers={"Cookie": cookie}, timeout=30) as client:
        for _ in range(max(20, n // 10)):  # warm up: templates compiled, connection open
            client.get(path)
        ready.wait()
        times: list[float] = []
        started = time.monotonic()
        for _ in range(n):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, (path, response.status_code)
        out.put((started, time.monotonic(), times))


def measure(base: str, path: str, cookie: str, n: int, inflight: int) -> dict[str, float]:
    """p50/p99 of `n` requests with `inflight` at a time: one client process each, so that no
    client waits for another's Python (a synchronous httpx client costs the least per call)."""
    context = multiprocessing.get_context("fork")
    ready, out = context.Barrier(inflight), context.Queue()
    share = [n // inflight + (i < n % inflight) for i in range(inflight)]
    workers = [
        context.Process(target=_client, args=(base, path, cookie, k, ready, out)) for k in share
    ]
    for w in workers:
        w.start()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
        assert w.exitcode == 0, (path, w.exitcode)
    times = [t for _, _, ts in results for t in ts]
    elapsed = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    return {
        "p50": statistics.median(times) * 1000,
        "p99": percentile(times, 0.99),
        "rps": n / elapsed,
    }


def wrk_rps(base: str, path: str, cookie: str, connections: int, seconds: int) -> float | None:
    """Requests/s from wrk with `connections` open, or None without wrk."""
    if shutil.which("wrk") is None:
        return None
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Cookie: {cookie}", base + path],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_client_cpus,
    )
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    assert found and not errors, done.stdout
    return float(found.group(1))


def run(base: str, paths: dict[str, str], n: int, seconds: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"},
        )
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        first = client.get("/")
        assert first.status_code == 200, first.status_code
        # a cursor ~half-way down: follow "Older" links the way a person would, then jump
        deep = "/"
        for _ in range(3):
            page = client.get(deep)
            found = re.search(r'href="(/\?before=[^"]+)" rel="next"', page.text)
            assert found, "no next page"
            deep = found.group(1).replace("&amp;", "&")
        paths = {"/healthz (floor)": "/healthz", **paths, "instances, deep page": deep}
        source = "wrk" if shutil.which("wrk") else "httpx"
        print(
            f"{'page':32} {'in flight':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'req/s':>8} {'p50/floor':>9}   (req/s from {source})"
        )
        floor: dict[int, float] = {}
        for name, path in paths.items():
            for inflight in (1, 8):
                r = measure(base, path, cookie, n, inflight)
                rps = wrk_rps(base, path, cookie, inflight, seconds) or r["rps"]
                floor.setdefault(inflight, r["p50"])
                print(
                    f"{name:32} {inflight:>9} {r['p50']:8.2f} {r['p99']:8.2f} {rps:8.0f} "
                    f"{r['p50'] / floor[inflight]:9.1f}",
                    flush=True,
                )


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _server_cpus() -> None:
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, cpus[:1])


def _client_cpus() -> None:
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, cpus[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1000, help="per page and concurrency")
    parser.add_argument("--seconds", type=int, default=3, help="of each wrk run")
    parser.add_argument("--db", help="keep the database here, and reuse it when it exists")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    workdir = Path(tempfile.mkdtemp(prefix="signoff-bench-"))
    db = Path(args.db) if args.db else workdir / "bench.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            (count,) = conn.execute("SELECT count(*) FROM signoff_instances").fetchone()
            (first,) = conn.execute(
                "SELECT id FROM signoff_instances ORDER BY rowid LIMIT 1"
            ).fetchone()
        ids = {"instance": first}
        print(f"reusing {count:,} instances in {db}")
    else:
        t0 = time.perf_counter()
        ids = build(db, args.instances)
        print(f"built {args.instances:,} instances in {time.perf_counter() - t0:.1f} s ({db})")
    _client_cpus()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(db), str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=_server_cpus,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        paths = {
            "instances, first page": "/",
            "instances, filtered (failed)": "/?status=failed",
            "instances, filtered (workflow)": "/?workflow=Onboarding",
            "instance page": f"/instances/{ids['instance']}",
            "approvals inbox": "/approvals",  # 25 requests with their summary fields
            "approvals inbox, one workflow": "/approvals?workflow=Expense",
            "instances, workflow + status": "/?workflow=Expense&status=waiting",
        }
        run(f"http://127.0.0.1:{port}", paths, args.requests, args.seconds)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
