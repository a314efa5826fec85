"""Dashboard latency with 100,000 instances in SQLite, over a real uvicorn on 127.0.0.1.

    .venv/bin/python bench/web.py [--instances 100000] [--requests 400]

Builds the database once (a few real instances through the engine, then copies of them with
their open waits), serves it with uvicorn in a subprocess, and measures p50/p99 latency and
requests/s of: the instances page (first, deep, filtered), an instance page and the inbox,
with one client and with 8 requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
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

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password"


def build(path: Path, count: int) -> dict[str, str]:
    from engine import Engine
    from web.examples import UPSTREAM, WORKFLOWS

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
    # mostly waiting approvals, some done, a few failed, some onboarding: an ops mix
    mix = [templates[0]] * 6 + [templates[1]] * 2 + [templates[2]] + [templates[3]]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    id_at, upd_at = cols.index("id"), cols.index("updated_at")
    new_rows, new_waits = [], []
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
    db.execute("ANALYZE")
    db.close()
    return {"instance": templates[0]}


def serve(db: str, port: int) -> None:
    import uvicorn

    from engine import Engine
    from web import create_app
    from web.auth import hash_password
    from web.examples import WORKFLOWS

    engine = Engine(f"sqlite:///{db}", workflows=WORKFLOWS)
    app = create_app(engine, secret_key="bench", users={"alice": hash_password(PASSWORD, n=2**12)})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(client: httpx.AsyncClient, path: str, n: int, inflight: int) -> dict[str, float]:
    times: list[float] = []
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            queue.pop()
            t0 = time.perf_counter()
            response = await client.get(path)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, (path, response.status_code)

    for _ in range(max(10, n // 20)):  # warm up
        await client.get(path)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    times.sort()
    return {
        "p50": statistics.median(times) * 1000,
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
        "rps": n / elapsed,
    }


async def run(base: str, paths: dict[str, str], n: int) -> None:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        login = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        await client.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"},
        )
        first = await client.get("/")
        assert first.status_code == 200, first.status_code
        # a cursor ~half-way down: follow "Older" links the way a person would, then jump
        deep = "/"
        for _ in range(3):
            page = await client.get(deep)
            found = re.search(r'href="(/\?before=[^"]+)" rel="next"', page.text)
            assert found, "no next page"
            deep = found.group(1).replace("&amp;", "&")
        middle = await client.get("/?status=waiting")
        assert middle.status_code == 200
        paths = {**paths, "instances, deep page": deep}
        print(f"{'page':32} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        for name, path in paths.items():
            for inflight in (1, 8):
                r = await measure(client, path, n, inflight)
                print(f"{name:32} {inflight:>7} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    workdir = Path(tempfile.mkdtemp(prefix="signoff-bench-"))
    db = workdir / "bench.db"
    t0 = time.perf_counter()
    ids = build(db, args.instances)
    print(f"built {args.instances:,} instances in {time.perf_counter() - t0:.1f} s ({db})")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(db), str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
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
            "approvals inbox": "/approvals",
        }
        asyncio.run(run(f"http://127.0.0.1:{port}", paths, args.requests))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
