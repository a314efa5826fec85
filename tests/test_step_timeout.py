"""A step that never returns: `Step(..., timeout=...)` (or `Retry(timeout=...)`) bounds how long
one try may hold its instance.

An async step is cancelled at its timeout and the try fails under its retry policy. A sync one
cannot be interrupted: past its deadline (by the engine's clock) the lease keeper stops renewing
its lease and gives the instance up, counting the try as failed, so another driver runs the
step again; the stuck call's late result, if it comes, is discarded.

The sync stories use the injected clock for the deadline and a short real lease (the keeper
beats every third of it), and wait for what the keeper does with generous bounds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from signoff.engine import Engine, Retry, Return, S, Statement, Step, Workflow

from tests.conftest import Clock

TRACE: list[str] = []
RELEASE = threading.Event()  # lets the stuck first try of `Fetch.fetch` return
LEASE = timedelta(seconds=0.3)  # real seconds between the keeper's beats: a third of it
PATIENCE = 10.0  # real seconds a test waits for the keeper before it fails


class Fetch(Workflow):
    """One sync step whose first try hangs until RELEASE is set."""

    result: str = ""

    def definition(self) -> Statement:
        return S(
            Step(
                "fetch",
                self.fetch,
                timeout=timedelta(seconds=30),
                retry=Retry(attempts=3, backoff=timedelta(seconds=5)),
            ),
            Return(self.result),
        )

    def fetch(self) -> None:
        TRACE.append(f"fetch {len(TRACE) + 1}")
        if TRACE == ["fetch 1"]:
            RELEASE.wait(PATIENCE)
            self.result = "late"
        else:
            self.result = "on time"


class FetchOnce(Workflow):
    """The same hanging step with one try only, its timeout from its retry policy."""

    def definition(self) -> Statement:
        return S(
            Step("fetch", self.fetch, retry=Retry(attempts=1, timeout=timedelta(minutes=2))),
            Return(),
        )

    def fetch(self) -> None:
        TRACE.append("fetch")
        RELEASE.wait(PATIENCE)


class Slow(Workflow):
    """An async step that would sleep for an hour; it is cancelled after 50 ms each try."""

    def definition(self) -> Statement:
        return S(
            Step(
                "slow",
                self.slow,
                timeout=timedelta(seconds=0.05),
                retry=Retry(attempts=2, backoff=timedelta(seconds=1)),
            ),
            Return(),
        )

    async def slow(self) -> None:
        TRACE.append("slow")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            TRACE.append("cancelled")
            raise


class Quick(Workflow):
    """Steps with timeouts that finish in time, sync and async."""

    n: int = 0

    def definition(self) -> Statement:
        return S(
            Step("one", self.one, timeout=timedelta(seconds=30)),
            Step("two", self.two, retry=Retry(timeout=timedelta(seconds=30))),
            Return(self.n),
        )

    def one(self) -> None:
        self.n += 1

    async def two(self) -> None:
        await asyncio.sleep(0)
        self.n += 10


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    TRACE.clear()
    RELEASE.clear()
    yield
    RELEASE.set()  # never leave a stuck step behind
    TRACE.clear()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {PATIENCE} s: {what}")
        time.sleep(0.01)


def in_background(call: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def test_a_stuck_sync_step_is_given_up_at_its_timeout_and_a_second_engine_runs_it_again(
    any_url: str, clock: Clock
) -> None:
    first = Engine(any_url, workflows=[Fetch], clock=clock, lease=LEASE)
    second = Engine(any_url, workflows=[Fetch], clock=clock, lease=LEASE)  # another process
    driving = in_background(lambda: first.start(Fetch, id="f1"))
    eventually(lambda: TRACE == ["fetch 1"], "the first try began")

    # before its timeout the step keeps its instance: the lease is renewed as the clock moves
    clock.advance(seconds=29)
    eventually(
        lambda: (first.store.load("f1").lease_until or clock.now) > clock.now,
        "the lease was renewed",
    )
    assert second.run_due() == 0

    # past it, the try counts as failed and the instance is given up, saying why
    clock.advance(seconds=2)
    eventually(lambda: first.get("f1").threads[0].status == "retrying", "the try was given up")
    failed = [h for h in first.history("f1") if h.kind == "step failed"]
    assert [h.message for h in failed] == [
        "StepTimedOut: step 'fetch' passed its timeout of 30 s; its lease is no longer renewed"
    ]
    assert failed[0].detail is not None and failed[0].detail["attempt"] == 1
    assert first.get("f1").threads[0].attempts == 1

    # after the retry policy's backoff, another engine runs the step again, and finishes
    clock.advance(seconds=5)
    assert second.run_due() == 1
    done = second.get("f1")
    assert (done.status, done.result) == ("completed", "on time")

    # the stuck call returns at last: its result is discarded, nothing is applied twice
    RELEASE.set()
    driving.join(PATIENCE)
    assert not driving.is_alive()
    done = first.get("f1")
    assert (done.status, done.result, done.data) == ("completed", "on time", {"result": "on time"})
    assert TRACE == ["fetch 1", "fetch 2"]
    assert [h.kind for h in first.history("f1")].count("step") == 1
    first.close()
    second.close()


def test_a_stuck_sync_step_without_tries_left_fails_its_instance(
    sqlite_url: str, clock: Clock
) -> None:
    engine = Engine(sqlite_url, workflows=[FetchOnce], clock=clock, lease=LEASE)
    driving = in_background(lambda: engine.start(FetchOnce, id="f1"))
    eventually(lambda: TRACE == ["fetch"], "the try began")
    clock.advance(minutes=2)
    eventually(lambda: engine.get("f1").status == "failed", "the instance failed")
    assert engine.get("f1").error == (
        "step 'fetch' failed after 1 attempt(s): StepTimedOut: step 'fetch' passed its "
        "timeout of 120 s; its lease is no longer renewed"
    )
    RELEASE.set()
    driving.join(PATIENCE)
    view = engine.get("f1")
    assert view.status == "failed"  # the late return changed nothing
    assert "merged" in [h.kind for h in engine.history("f1")]
    engine.close()


def test_an_async_step_is_cancelled_at_its_timeout_and_counts_as_a_failed_try(
    sqlite_url: str, clock: Clock
) -> None:
    engine = Engine(sqlite_url, workflows=[Slow], clock=clock)
    started = time.monotonic()
    iid = engine.start(Slow)
    assert engine.get(iid).threads[0].status == "retrying"
    clock.advance(seconds=1)
    engine.run_due()
    assert time.monotonic() - started < PATIENCE  # not an hour
    view = engine.get(iid)
    assert view.status == "failed"
    assert view.error == (
        "step 'slow' failed after 2 attempt(s): StepTimedOut: step 'slow' passed its timeout "
        "of 0.05 s; it was cancelled"
    )
    assert TRACE == ["slow", "cancelled", "slow", "cancelled"]


def test_steps_that_finish_in_time_are_untouched(sqlite_url: str, clock: Clock) -> None:
    engine = Engine(sqlite_url, workflows=[Quick], clock=clock)
    iid = engine.start(Quick)
    view = engine.get(iid)
    assert (view.status, view.result) == ("completed", 11)
    assert [h.kind for h in engine.history(iid)].count("step failed") == 0


def test_a_timeout_is_a_positive_duration() -> None:
    assert Step("a", print).timeout is None
    assert Step("a", print, retry=Retry(timeout=timedelta(seconds=3))).timeout == timedelta(
        seconds=3
    )
    assert Step(
        "a", print, timeout=timedelta(seconds=1), retry=Retry(timeout=timedelta(seconds=3))
    ).timeout == timedelta(seconds=1)
    for bad in (timedelta(0), timedelta(seconds=-1), 30):
        with pytest.raises(ValueError, match="positive timedelta"):
            Step("a", print, timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive timedelta"):
            Retry(timeout=bad)  # type: ignore[arg-type]
