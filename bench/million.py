"""A million waiting instances on PostgreSQL: what they cost the engine, the dashboard, a worker
and `signoff check`, each figure printed beside its baseline from the same run.

    .venv/bin/python bench/million.py [--instances 1000000] [--first 100000] [--requests 400]
                                      [--without-trigrams-too]

Makes a scratch database on 127.0.0.1:5432 (dropped at the end unless `--keep`), then:

1. empty: start/send/get latency of an approval workflow (the baseline), and the dashboard;
2. bulk-loads instances of `bench/million_flows.py`'s Claim in the rows the engine writes
   (instances, their open waits, their history), copied server-side from a few real
   instances (INSERT ... SELECT over generate_series, names and times rewritten per copy): nine
   in ten wait a week for their employee's manager (200 managers, 5,000 employees), the rest
   completed, failed or cancelled. `--instances` counts the waiting ones;
3. at `--first` waiting and again at `--instances`: start/send/get, in alternating rounds with
   an empty database beside it (its baseline from the same minutes); the dashboard over a real
   uvicorn on 127.0.0.1 (instances list first page, filtered pages, searches, the approvals
   inbox; as an operator, as a manager who sees only the instances they may decide or
   decided, and as an employee who sees only the ones they started), beside /healthz; a
   `signoff worker`'s RSS; `signoff check`'s wall time. With `--without-trigrams-too`, the
   searches once more without the trigram index on the data (dropped, then made again): how
   they were before revision 0015, beside how they are.

Latency is p50/p99 of `--requests` sequential requests (a tenth of that for searches) from one
client process (bench/web.py's
client: the server pinned to one CPU, the client to the other). The machine is shared: the
figures are noisy, compare them only with the baseline printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))  # the checkout is the `signoff` package
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from signoff.engine import Engine  # noqa: E402

from bench.million_flows import Claim  # noqa: E402
from bench.scale import drop, latencies, scratch  # noqa: E402
from bench.scale_flows import Expense  # noqa: E402
from bench.web import _client_cpus, _server_cpus, free_port, measure  # noqa: E402

NAME = "signoff_bench_million"
PASSWORD = "bench-password"
OPERATOR, MANAGER, EMPLOYEE = "ops", "mgr007", "emp0042"
MANAGERS, EMPLOYEES = 199, 5000  # 199: prime to 10, so each manager has every status
SPACING = 0.4  # seconds between two copies' creation: a million span under the week's timeout
CHUNK = 100_000

# the templates: one real instance of each kind, their names rewritten in every copy
KINDS = ("waiting", "completed", "failed", "cancelled")
# a copy's kind: nine in ten wait; the tenth is completed, completed, failed, cancelled in turn
KIND_OF = (
    "CASE WHEN g %% 10 <> 0 THEN 'waiting' "
    "ELSE (ARRAY['completed', 'completed', 'failed', 'cancelled'])[(g / 10) %% 4 + 1] END"
)
ID_OF = "md5('m' || g)"
EMPLOYEE_OF = f"'emp' || lpad((g %% {EMPLOYEES})::text, 4, '0')"
MANAGER_OF = f"'mgr' || lpad((g %% {MANAGERS})::text, 3, '0')"


def names(column: str) -> str:
    return f"replace(replace({column}, 'EMPLOYEE', {EMPLOYEE_OF}), 'MANAGER', {MANAGER_OF})"


def make_templates(engine: Engine) -> dict[str, str]:
    """One real instance of each kind, started by EMPLOYEE for MANAGER."""
    data = {"amount": 120, "employee": "EMPLOYEE", "manager": "MANAGER"}
    waiting = engine.start(Claim, data, actor="EMPLOYEE")
    completed = engine.start(Claim, data, actor="EMPLOYEE")
    engine.send(completed, "decision", {"approved": True}, actor="MANAGER")
    failed = engine.start(Claim, {**data, "amount": -1}, actor="EMPLOYEE")
    for _ in range(5):
        engine.run_due(engine.clock() + timedelta(hours=1))
    cancelled = engine.start(Claim, data, actor="EMPLOYEE")
    engine.cancel(cancelled, "bench", actor=OPERATOR)
    found = dict(zip(KINDS, (waiting, completed, failed, cancelled), strict=True))
    assert engine.get(failed).status == "failed", engine.get(failed).status
    return found


def load(url: str, templates: dict[str, str], lo: int, hi: int, total: int) -> float:
    """Copies `lo` < g <= `hi` of the templates; their times spread so the newest is now."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_templates")
        conn.execute("CREATE TABLE bench_templates (kind text, tid text)")
        for kind, tid in templates.items():
            conn.execute("INSERT INTO bench_templates VALUES (%s, %s)", (kind, tid))
        (now,) = conn.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()  # type: ignore[misc]
        base = f"(%(now)s::timestamp - make_interval(secs => {total * SPACING}))"
        at = f"({base} + make_interval(secs => g * {SPACING}))"
        copies = (
            f"FROM generate_series(%(lo)s::int, %(hi)s::int) g "
            f"JOIN bench_templates b ON b.kind = {KIND_OF} "
        )
        people = conn.execute("SELECT to_regclass('signoff_participants')").fetchone() != (None,)
        for start in range(lo, hi, CHUNK):
            params = {"lo": start + 1, "hi": min(hi, start + CHUNK), "now": now}
            conn.execute(
                "INSERT INTO signoff_instances (id, workflow, status, data, state, result, "
                "error, version, due_at, created_at, updated_at) "
                f"SELECT {ID_OF}, t.workflow, t.status, {names('t.data')}, "
                f"{names('t.state')}, t.result, t.error, t.version, "
                f"t.due_at - t.created_at + {at}, {at}, t.updated_at - t.created_at + {at} "
                f"{copies} JOIN signoff_instances t ON t.id = b.tid",
                params,
            )
            conn.execute(
                "INSERT INTO signoff_waits (instance_id, thread, wait, event, kind, began_at, "
                "due_at, approvers, title, wait_key, workflow) "
                f"SELECT {ID_OF}, w.thread, w.wait, w.event, w.kind, "
                f"w.began_at - t.created_at + {at}, w.due_at - t.created_at + {at}, "
                f"{names('w.approvers')}, {names('w.title')}, w.wait_key, w.workflow "
                f"{copies} JOIN signoff_waits w ON w.instance_id = b.tid "
                "JOIN signoff_instances t ON t.id = b.tid ORDER BY g, w.id",
                params,
            )
            conn.execute(
                "INSERT INTO signoff_history (instance_id, at, kind, thread, name, actor, via, "
                "message, detail) "
                f"SELECT {ID_OF}, h.at - t.created_at + {at}, h.kind, h.thread, h.name, "
                f"{names('h.actor')}, h.via, h.message, {names('h.detail')} "
                f"{copies} JOIN signoff_history h ON h.instance_id = b.tid "
                "JOIN signoff_instances t ON t.id = b.tid ORDER BY g, h.id",
                params,
            )
            if people:  # who takes part in which instance (issue 25's table), when there
                conn.execute(
                    "INSERT INTO signoff_participants (instance_id, role, person) "
                    f"SELECT {ID_OF}, p.role, {names('p.person')} "
                    f"{copies} JOIN signoff_participants p ON p.instance_id = b.tid",
                    params,
                )
        conn.execute("DROP TABLE bench_templates")
        # a bulk load leaves dirty pages and an autovacuum to come: settle them first, so the
        # figures are of a database that holds the rows, not one still absorbing them
        for table in ("signoff_instances", "signoff_waits", "signoff_history"):
            conn.execute(f"VACUUM ANALYZE {table}")
        if people:
            conn.execute("VACUUM ANALYZE signoff_participants")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


def sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        found = dict(conn.execute("SELECT status, count(*) FROM signoff_instances GROUP BY 1"))
        for table in ("signoff_waits", "signoff_history"):
            (found[table],) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[misc]
        (found["bytes"],) = conn.execute(  # type: ignore[misc]
            "SELECT pg_database_size(current_database())"
        ).fetchone()
    return found


def serve(url: str, port: int) -> None:
    """What `signoff serve` does, minus the scheduler (a worker fires the timers)."""
    import uvicorn
    from signoff.web import create_app
    from signoff.web.app import settle_heap
    from signoff.web.auth import hash_password

    engine = Engine(url, workflows=[Claim, Expense], operators=[OPERATOR])
    secret = hash_password(PASSWORD, n=2**12)
    users = {OPERATOR: secret, MANAGER: secret, EMPLOYEE: secret}
    app = create_app(engine, secret_key="bench", users=users)
    settle_heap()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def sign_in(base: str, user: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        client.post(
            "/login",
            data={"username": user, "password": PASSWORD, "csrf_token": token, "next": "/"},
        )
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def pages(url: str) -> dict[str, dict[str, str]]:
    """The pages measured, per user: a search for an id prefix that finds a few rows, and one
    for a field's value (the employee's claims)."""
    with psycopg.connect(url) as conn:
        (some_id,) = conn.execute(  # type: ignore[misc]
            "SELECT id FROM signoff_instances ORDER BY updated_at LIMIT 1 OFFSET 50"
        ).fetchone()
        (count,) = conn.execute("SELECT count(*) FROM signoff_instances").fetchone()  # type: ignore[misc]
        middle = conn.execute(
            "SELECT updated_at, id FROM signoff_instances ORDER BY updated_at DESC, id DESC "
            "LIMIT 1 OFFSET %s",
            (count // 2,),
        ).fetchone()
    deep = {}
    if middle is not None:  # a page half way down the list, as "next" links reach it
        at, iid = middle
        cursor = quote(f"{at.replace(tzinfo=UTC).isoformat()}~{iid}")
        deep = {"instances, a page half way down": f"/?before={cursor}&start={count // 2}"}
    common = {
        "instances, first page": "/",
        **deep,
        "instances, waiting": "/?status=waiting",
        "instances, search id": f"/?q={some_id[:6]}",
        f"instances, search employee:{EMPLOYEE}": f"/?q=employee:{EMPLOYEE}",
        "approvals inbox": "/approvals",
    }
    return {
        OPERATOR: {
            **common,
            "instances, failed": "/?status=failed",
            "instances, Claim + waiting": "/?workflow=Claim&status=waiting",
            "approvals inbox, Claim": "/approvals?workflow=Claim",
        },
        MANAGER: {**common, "instances, I decide (mine=1)": "/?mine=1"},
        EMPLOYEE: {"instances, first page": "/", "approvals inbox": "/approvals"},
    }


def web(url: str, requests: int, only: str = "") -> dict[str, dict[str, float]]:
    """p50/p99 ms of each page for each user, and /healthz's, over a real uvicorn; `only`: just
    the pages whose path holds it (and /healthz)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", url, str(port)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT.parent}{os.pathsep}{ROOT}"},
        preexec_fn=_server_cpus,
    )
    found: dict[str, dict[str, float]] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for user, paths in pages(url).items():
            cookie = sign_in(base, user)
            for name, path in {"/healthz (floor)": "/healthz", **paths}.items():
                if user != OPERATOR and path == "/healthz":
                    continue
                if only not in path and path != "/healthz":
                    continue
                # a search reads rows by the thousand: fewer of them, or a run takes an hour
                n = max(20, requests // 10) if "q=" in path else requests
                r = measure(base, path, cookie, n, 1)
                found[f"{user:8} {name}"] = r
                print(
                    f"    {user:8} {name:40} p50 {r['p50']:7.2f}  p99 {r['p99']:7.2f}", flush=True
                )
    finally:
        server.terminate()
        server.wait(10)
    return found


TRIGRAMS = "ix_signoff_instances_data_trgm"


def without_trigrams(url: str, waiting: int, requests: int, loaded: dict[str, Any]) -> None:
    """The searches again with the trigram index on the data dropped (signoff then searches as
    it did before revision 0015), beside the figures with it; the index is made again after."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", [TRIGRAMS]).fetchone() == (None,):
            print("  (no trigram index to compare without)", flush=True)
            return
        conn.execute(f"DROP INDEX {TRIGRAMS}")
    try:
        show_web(
            f"{waiting:,} waiting, searches without the trigram index",
            web(url, requests, only="q="),
            loaded,
            "with it:",
        )
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                f"CREATE INDEX {TRIGRAMS} ON signoff_instances USING gin (data gin_trgm_ops)"
            )


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def worker_rss(url: str, settle: float) -> float:
    """A `signoff worker` over the database: its RSS after `settle` seconds (the largest seen)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT.parent}{os.pathsep}{ROOT}"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signoff.web.cli",
            "worker",
            "--db",
            url,
            "--workflows",
            "bench.million_flows",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    try:
        end = time.monotonic() + settle
        while time.monotonic() < end:
            time.sleep(0.5)
            assert worker.poll() is None, f"the worker exited: {worker.returncode}"
            peak = max(peak, rss_mib(worker.pid))
    finally:
        worker.terminate()
        worker.wait(20)
    return peak


def check(url: str) -> dict[str, Any]:
    """`signoff check` against the same workflows: wall time, peak RSS, what it counted."""
    code = (
        "import resource, sys\n"
        "from signoff.web.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT.parent}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-c", code, "check", "--db", url]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--workflows", "bench.million_flows", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    took = time.perf_counter() - started
    try:
        found = json.loads(done.stdout).get("deployment", {})
    except ValueError:
        found = {"output": done.stdout[-500:], "error": done.stderr[-500:]}
    return {
        "exit": done.returncode,
        "seconds": took,
        "peak_mib": int(done.stderr.strip().splitlines()[-1]) / 1024 if done.stderr else 0,
        "checked": found.get("checked"),
    }


def engine_figures(engine: Engine, n: int) -> dict[str, float]:
    latencies(engine, max(20, n // 5))  # warm up
    return latencies(engine, n)


def side_by_side(
    loaded: Engine, empty: Engine, n: int, rounds: int = 3
) -> tuple[dict[str, float], dict[str, float]]:
    """start/send/get p50/p99 on the loaded database and on an empty one, in alternating
    rounds of `n` calls (medians of the rounds): this machine's speed drifts by half within
    minutes, so a baseline measured at the start is no baseline for the end."""
    found: dict[str, list[dict[str, float]]] = {"loaded": [], "empty": []}
    latencies(loaded, max(20, n // 5))  # warm up
    latencies(empty, max(20, n // 5))
    for _ in range(rounds):
        found["loaded"].append(latencies(loaded, n))
        found["empty"].append(latencies(empty, n))

    def medians(figures: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(f[k] for f in figures) for k in figures[0]}

    return medians(found["loaded"]), medians(found["empty"])


def show_engine(label: str, f: dict[str, float], base: dict[str, float]) -> None:
    parts = []
    for op in ("start", "send", "get"):
        p50, p99 = f[f"{op}_p50_ms"], f[f"{op}_p99_ms"]
        parts.append(f"{op} {p50:.2f}/{p99:.2f} ms (p99 {p99 / base[f'{op}_p99_ms']:.2f}x)")
    print(f"  engine p50/p99, {label}: " + "; ".join(parts), flush=True)


def show_web(
    label: str,
    f: dict[str, dict[str, float]],
    empty: dict[str, dict[str, float]],
    baseline: str = "empty database's",
) -> None:
    floor = f[f"{OPERATOR:8} /healthz (floor)"]
    print(f"  dashboard, {label}: p50 / p99 ms (x /healthz's p50) [{baseline} p50 / p99]")
    for name, r in f.items():
        was = empty.get(name)
        before = f"[{was['p50']:.2f} / {was['p99']:.2f}]" if was else ""
        print(
            f"    {name:52} {r['p50']:7.2f} / {r['p99']:7.2f}  ({r['p50'] / floor['p50']:4.1f}x) "
            f"{before}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000, help="waiting instances")
    parser.add_argument("--first", type=int, default=100_000, help="measure at this many too")
    parser.add_argument("--requests", type=int, default=400, help="per page and user")
    parser.add_argument("--calls", type=int, default=300, help="start/send/get, each")
    parser.add_argument("--settle", type=float, default=15, help="seconds the worker runs")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--only-web", action="store_true", help="skip worker and check")
    parser.add_argument(
        "--only-engine", action="store_true", help="only start/send/get: no worker, check, web"
    )
    parser.add_argument(
        "--without-trigrams-too",
        action="store_true",
        help="then the searches again without the trigram index on the data (as before 0015)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"))
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    _client_cpus()
    url = scratch(NAME)
    engine = Engine(url, workflows=[Claim, Expense], operators=[OPERATOR])
    # an empty database beside it, for a baseline measured in the same minutes
    baseline = Engine(scratch(f"{NAME}_empty"), workflows=[Claim, Expense])
    try:
        templates = make_templates(engine)
        print("empty database (the baselines):", flush=True)
        empty_engine = engine_figures(engine, args.calls)
        show_engine("empty", empty_engine, empty_engine)
        if not args.only_web and not args.only_engine:
            rss = worker_rss(url, args.settle)
            print(f"  signoff worker RSS after {args.settle:.0f} s: {rss:.0f} MiB", flush=True)
        empty_web = {} if args.only_engine else web(url, args.requests)
        loaded = 0
        for waiting in sorted({w for w in (args.first, args.instances) if w}):
            total = waiting * 10 // 9
            took = load(url, templates, loaded, total, args.instances * 10 // 9)
            loaded = total
            found = sizes(url)
            print(
                f"\n{found.get('waiting', 0):,} waiting, {loaded:,} copies in all, loaded in "
                f"{took:.0f} s: {json.dumps(found)}",
                flush=True,
            )
            ours, beside = side_by_side(engine, baseline, args.calls)
            show_engine("an empty database, the same minutes", beside, beside)
            show_engine(f"{waiting:,} waiting", ours, beside)
            if args.only_engine:
                continue
            if not args.only_web:
                rss = worker_rss(url, args.settle)
                print(f"  signoff worker RSS after {args.settle:.0f} s: {rss:.0f} MiB", flush=True)
                print(f"  signoff check: {check(url)}", flush=True)
            loaded_web = web(url, args.requests)
            show_web(f"{waiting:,} waiting", loaded_web, empty_web)
            if args.without_trigrams_too:
                without_trigrams(url, waiting, args.requests, loaded_web)
    finally:
        engine.close()
        baseline.close()
        drop(f"{NAME}_empty")
        if not args.keep:
            drop(NAME)


if __name__ == "__main__":
    main()
