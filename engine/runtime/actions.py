"""Calling the application's code: steps, handler callbacks and handlers' setup/handle/teardown.

A sync callable is simply called. An `async def` one returns a coroutine, which must run on an
event loop: on the application's loop when the engine is used through `AsyncEngine` (or mounted
in a running dashboard), so it can use the application's own async clients; otherwise on a
private loop. The engine's own work happens in worker threads, so the application's loop stays
free to run the coroutine while the worker waits for its result.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class ActionRunner:
    """Calls the application's callables; awaits what they return when it is awaitable."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None  # the application's loop, if any

    def __call__(self, action: Callable[..., Any], *args: Any) -> Any:
        result = action(*args)
        if result is None or not inspect.isawaitable(result):  # most steps return nothing
            return result
        return self.wait_for(result)

    def wait_for(self, awaitable: Awaitable[Any]) -> Any:
        """Run `awaitable` to completion from a worker thread and return its result."""
        loop = self.loop

        async def outcome() -> Any:
            return await awaitable

        if loop is not None and loop.is_running() and not _running_on(loop):
            return asyncio.run_coroutine_threadsafe(outcome(), loop).result()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(outcome())
        # called synchronously from inside a running loop: that loop cannot be waited on
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, outcome()).result()


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
