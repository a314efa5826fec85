"""What hostile clients cost everybody else: /healthz latency while they run, over a real
uvicorn on 127.0.0.1 configured as `signoff serve` configures it (web.serving.server_config).

    .venv/bin/python bench/hostile.py [--instances 100000] [--db PATH] [--seconds 8]

1. 40 searches of the data in flight at once (text no instance has: each reads every row)
   on 100,000 instances in SQLite: /healthz p50/p99, and what the searches got (200, or 503
   "busy" past the search pool's queue, or 503 when a search ran past its time limit).
2. 8 clients sending wrong passwords as fast as they can, each hashed with the default scrypt
   cost (the sign-in limits set out of the way, so every attempt costs a hash): /healthz
   p50/p99, and the answers (401 hashed, 503 past the hashing pool's queue).

The database is built as bench/web.py builds it (`--db` keeps it for the next run).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"
PASSWORD = "bench-password"


def _bench_web() -> Any:
    spec = importlib.util.spec_from_file_location("bench_web", ROOT / "bench" / "web.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(db: str, port: int, loose_sign_in: bool) -> None:
    import uvicorn
    from signoff.engine import Engine
    from signoff.web import create_app
    from signoff.web.app import settle_heap
    from signoff.web.auth import hash_password
    from signoff.web.examples import WORKFLOWS
    from signoff.web.limits import Limits, SignInLimits
    from signoff.web.serving import server_config

    engine = Engine(f"sqlite:///{db}", workflows=WORKFLOWS)
    limits = (
        Limits(sign_in=SignInLimits(per_address=10**9, per_user=10**9)) if loose_sign_in else None
    )
    app = create_app(
        engine,
        secret_key="bench",
        users={"alice": hash_password(PASSWORD)},  # the default cost, as in production
        api_tokens={TOKEN: "alice"},
        limits=limits,
    )
    settle_heap()
    config = server_config(app, host="127.0.0.1", port=port, log_level="error")
    config.access_log = False
    uvicorn.Server(config).run()


def started(port: int, loose: bool, db: str) -> tuple[Any, str]:
    bench = _bench_web()
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(db, port, loose), daemon=True
    )
    process.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    del bench
    raise SystemExit("the server did not start")


def probe(base: str, stop: threading.Event, times: list[float], bad: list[int]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            answer = client.get(f"{base}/healthz")
            times.append(time.perf_counter() - t0)
            if answer.status_code != 200:
                bad.append(answer.status_code)
            time.sleep(0.02)


def attack(base: str, clients: int, seconds: float, hit: Any) -> tuple[list[float], list[Any]]:
    stop = threading.Event()
    times: list[float] = []
    bad: list[int] = []
    answers: list[Any] = []
    prober = threading.Thread(target=probe, args=(base, stop, times, bad))
    end = time.monotonic() + seconds

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < end:
                answers.append(hit(client))

    threads = [threading.Thread(target=run) for _ in range(clients)]
    prober.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(max(0.0, end - time.monotonic()))  # with no attackers: the idle floor
    stop.set()
    prober.join()
    if bad:
        answers.append(("healthz failures", Counter(bad)))
    return times, answers


def report(name: str, times: list[float], answers: list[Any]) -> None:
    ordered = sorted(times)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    codes = Counter(a if isinstance(a, int) else str(a) for a in answers)
    print(
        f"{name}: /healthz p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms, "
        f"max {pick(1.0):.1f} ms over {len(times)} probes; attack answers {dict(codes)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--db")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    bench = _bench_web()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "hostile.db"
        if not db.exists():
            t0 = time.monotonic()
            bench.build(db, args.instances)
            print(f"built {args.instances} instances in {time.monotonic() - t0:.0f} s")
        port = bench.free_port()

        process, base = started(port, False, str(db))
        try:

            def search(client: httpx.Client) -> int:
                return client.get(
                    f"{base}/api/instances",
                    params={"q": "no instance has this text"},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ).status_code

            report("idle", *attack(base, 0, 2.0, search))
            report("40 searches in flight", *attack(base, 40, args.seconds, search))
        finally:
            process.terminate()
            process.join()

        process, base = started(port, True, str(db))
        try:

            def wrong_password(client: httpx.Client) -> int:
                if "csrf" not in client.headers:
                    page = client.get(f"{base}/login").text
                    client.headers["csrf"] = page.split('name="csrf_token" value="')[1].split('"')[
                        0
                    ]
                return client.post(
                    f"{base}/login",
                    data={
                        "username": "alice",
                        "password": "guess",
                        "csrf_token": client.headers["csrf"],
                        "next": "/",
                    },
                ).status_code

            report("8 clients flooding sign-in", *attack(base, 8, args.seconds, wrong_password))
        finally:
            process.terminate()
            process.join()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
