"""AsyncEngine: an asyncio application awaits the engine without its loop stalling, and its
`async def` steps and handlers run on the application's own loop, so they may use objects bound
to that loop (an asyncio.Queue here; an httpx.AsyncClient in real life)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, ClassVar

from signoff.engine import (
    Approval,
    AsyncEngine,
    Decision,
    Engine,
    On,
    Return,
    S,
    Step,
    Timeout,
    Wait,
    Workflow,
)

from tests.conftest import Clock


class LoopBound:
    """Objects the application made on its loop, as its async clients would be."""

    queue: ClassVar[asyncio.Queue[str] | None] = None
    loop: ClassVar[asyncio.AbstractEventLoop | None] = None


class Fetch(Workflow):
    """An async step and an async decision callback that both use the application's queue."""

    seen: list[str] = []
    approved: bool = False

    def definition(self) -> S:
        return S(
            Step("fetch", self.fetch),
            Wait(
                "approval",
                On("decided", Approval(approve=self.on_approve, deny=self.on_deny)),
                On("late", Timeout(after=timedelta(hours=1)), Step("chase", self.chase)),
            ),
            Return(self.seen),
        )

    async def fetch(self) -> None:
        await self._use_the_applications_loop("fetch")

    async def on_approve(self, decision: Decision) -> None:
        await self._use_the_applications_loop("approve")
        self.approved = True

    async def on_deny(self, decision: Decision) -> None:
        await self._use_the_applications_loop("deny")

    async def chase(self) -> None:
        await self._use_the_applications_loop("chase")

    async def _use_the_applications_loop(self, label: str) -> None:
        assert LoopBound.queue is not None
        assert asyncio.get_running_loop() is LoopBound.loop, "ran on a private loop"
        await LoopBound.queue.put(label)  # raises if the queue is bound to another loop
        self.seen.append(label)


class Slow(Workflow):
    """A sync step that blocks its thread for a while, as a slow database call would."""

    def definition(self) -> S:
        return S(Step("work", self.work), Return("done"))

    def work(self) -> None:
        time.sleep(0.5)


async def _on_this_loop() -> None:
    LoopBound.loop = asyncio.get_running_loop()
    LoopBound.queue = asyncio.Queue()
    await LoopBound.queue.put("warm")  # binds the queue to this loop
    await LoopBound.queue.get()


def test_async_steps_and_decision_callbacks_run_on_the_applications_loop(sqlite_url: str) -> None:
    async def main() -> tuple[Any, list[str]]:
        await _on_this_loop()
        engine = AsyncEngine(sqlite_url, [Fetch])
        iid = await engine.start(Fetch)
        waiting = await engine.get(iid)
        assert waiting.status == "waiting"
        done = await engine.send(iid, "decided", {"approved": True}, actor="alice")
        assert LoopBound.queue is not None
        labels = [LoopBound.queue.get_nowait() for _ in range(LoopBound.queue.qsize())]
        await engine.close()
        return done, labels

    done, labels = asyncio.run(main())
    assert done.status == "completed"
    assert done.result == ["fetch", "approve"]
    assert labels == ["fetch", "approve"]


def test_awaiting_the_engine_leaves_the_loop_free_for_other_requests(sqlite_url: str) -> None:
    async def main() -> tuple[int, str]:
        engine = AsyncEngine(sqlite_url, [Slow])
        ticks = 0
        stop = asyncio.Event()

        async def ping() -> None:  # what a /ping endpoint would be doing meanwhile
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        pinger = asyncio.create_task(ping())
        iid = await engine.start(Slow)
        stop.set()
        await pinger
        view = await engine.get(iid)
        await engine.close()
        return ticks, view.status

    ticks, status = asyncio.run(main())
    assert status == "completed"
    # the step blocked a worker thread for 0.5 s; a blocked loop would have ticked once
    assert ticks >= 5


def test_a_timer_fired_by_a_scheduler_thread_runs_its_async_step_on_the_applications_loop(
    sqlite_url: str, clock: Clock
) -> None:
    async def main() -> Any:
        await _on_this_loop()
        engine = AsyncEngine(sqlite_url, [Fetch], clock=clock)
        iid = await engine.start(Fetch)
        clock.advance(hours=2)
        # APScheduler calls the sync engine from a thread of its own
        fired = await asyncio.to_thread(engine.engine.run_due)
        assert fired == 1
        view = await engine.get(iid)
        await engine.close()
        return view

    view = asyncio.run(main())
    assert view.status == "completed"
    assert view.result == ["fetch", "chase"]


class Hop(Workflow):
    def definition(self) -> S:
        return S(Step("hop", self.hop), Return("hopped"))

    async def hop(self) -> None:
        await asyncio.sleep(0)


def test_without_an_application_loop_async_steps_run_on_a_private_one(sqlite_url: str) -> None:
    engine = Engine(sqlite_url, [Hop])
    iid = engine.start(Hop)
    assert engine.get(iid).result == "hopped"
