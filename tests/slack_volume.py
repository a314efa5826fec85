"""Many signed Slack interactions against a real uvicorn on 127.0.0.1, some of them forged or
replayed: what tests/test_slack.py checks for correctness and bench/slack.py times.

One approval per instance, announced in the fake Slack; then one click per instance from a
different Slack user each time, sent by several clients at once, with forged clicks (a wrong
secret) and replays (the very same signed request again) mixed in.
"""

from __future__ import annotations

import queue
import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from signoff.engine import Approval, Engine, On, Return, S, Wait, Workflow
from signoff.engine.runtime.slack_client import make_client
from signoff.web import create_app
from slack_fake import APP, SECRET, TEAM, TOKEN, FakeSlack, click, form, signed


class Bulk(Workflow):
    amount: int = 1

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decision", Approval(title="Bulk approval", slack_channel="C0BULK")),
            ),
            Return("done"),
        )


@dataclass
class Sent:
    kind: str  # "valid", "forged", "replay"
    instance: str
    status: int
    seconds: float
    pair: int = -1  # for a replay and its original: the index they share


@dataclass
class Outcome:
    sent: list[Sent] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0
    send_seconds: float = 0.0
    apply_seconds: float = 0.0
    engine: Engine | None = None  # to look at what was applied
    fake: FakeSlack | None = None  # what was posted and edited

    def latencies(self) -> list[float]:
        return sorted(s.seconds for s in self.sent)

    def percentile(self, share: float) -> float:
        values = self.latencies()
        return values[min(len(values) - 1, int(share * len(values)))]

    def summary(self) -> str:
        ms = [v * 1000 for v in self.latencies()]
        return (
            f"{len(ms)} interactions ({self.count('forged')} forged, {self.count('replay')} "
            f"replayed) acknowledged in {self.send_seconds:.1f} s; acknowledgement p50 "
            f"{statistics.median(ms):.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms, "
            f"max {ms[-1]:.1f} ms; all decisions applied {self.apply_seconds:.1f} s after "
            f"the last acknowledgement (setup: {len(self.instances)} announced approvals in "
            f"{self.setup_seconds:.1f} s)"
        )

    def count(self, kind: str) -> int:
        return sum(1 for s in self.sent if s.kind == kind)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def run(
    db_url: str,
    *,
    interactions: int = 1000,
    bad_share: float = 0.10,
    clients: int = 8,
    seed: int = 11,
) -> Outcome:
    rng = random.Random(seed)
    bad = int(interactions * bad_share)
    forged, replays = bad // 2, bad - bad // 2
    valid = interactions - bad
    outcome = Outcome()
    fake = FakeSlack().start()
    engine = Engine(db_url, [Bulk], slack=make_client(TOKEN, fake.url))
    try:
        began = time.perf_counter()
        outcome.instances = [engine.start(Bulk, id=f"bulk-{n:05d}") for n in range(valid)]
        while engine.deliver_notices():  # the announcements, after their commits
            pass
        outcome.setup_seconds = time.perf_counter() - began
        messages = {m.ts: m for m in fake.posted()}
        by_instance = {}
        for message in messages.values():
            by_instance[message.buttons()["signoff_approve"]["value"].split('"')[3]] = message
        app = create_app(
            engine,
            secret_key="s" * 32,
            slack_signing_secret=SECRET,
            slack_team_id=TEAM,
            slack_app_id=APP,
        )
        # (kind, instance, body, headers, pair)
        work: list[tuple[str, str, bytes, dict[str, str], int]] = []
        for n, iid in enumerate(outcome.instances):
            user = f"U{n:06d}"
            body = form(click(by_instance[iid], "signoff_approve", user))
            work.append(("valid", iid, body, signed(body), n))
        for n in range(forged):
            iid = rng.choice(outcome.instances)
            body = form(click(by_instance[iid], "signoff_approve", f"UFORGED{n}"))
            work.append(("forged", iid, body, signed(body, secret="guessed"), -1))
        originals = rng.sample(range(valid), replays)
        for n in originals:
            _, iid, body, headers, _ = work[n]
            work.append(("replay", iid, body, headers, n))
        rng.shuffle(work)
        # a replay is sent after its original was handed to a client (it may still race it)
        position = {entry[4]: i for i, entry in enumerate(work) if entry[0] == "valid"}
        for i, entry in enumerate(work):
            if entry[0] == "replay" and position[entry[4]] > i:
                j = position[entry[4]]
                work[i], work[j] = work[j], work[i]
                position[entry[4]] = i
        todo: queue.Queue[tuple[str, str, bytes, dict[str, str], int] | None] = queue.Queue()
        for entry in work:
            todo.put(entry)
        lock = threading.Lock()
        with serving(app) as base:

            def client() -> None:
                with httpx.Client(base_url=base, timeout=30) as http:
                    while True:
                        entry = todo.get()
                        if entry is None:
                            return
                        kind, iid, body, headers, pair = entry
                        started = time.perf_counter()
                        response = http.post("/slack/interactions", content=body, headers=headers)
                        took = time.perf_counter() - started
                        with lock:
                            outcome.sent.append(Sent(kind, iid, response.status_code, took, pair))

            began = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
                todo.put(None)
            for thread in threads:
                thread.join()
            outcome.send_seconds = time.perf_counter() - began
            began = time.perf_counter()
            assert app.state.signoff.slack.idle(120), "the decisions were not all applied"
            outcome.apply_seconds = time.perf_counter() - began
            while engine.deliver_notices():  # the edits: how each ended
                pass
        outcome.engine, outcome.fake = engine, fake
        return outcome
    finally:
        fake.stop()
