"""`Step`: a named action, and the policy that retries it when it raises."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final

from signoff.engine.core.tree import Cursor, Entry, Signal, Statement, old_names


def _check_timeout(timeout: timedelta | None, what: str) -> None:
    if timeout is not None and (not isinstance(timeout, timedelta) or timeout <= timedelta(0)):
        raise ValueError(f"{what} must be a positive timedelta, or None for no timeout")


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a failing step is tried, and how long to wait between tries.

    The delay before try n+1 is `backoff * factor**(n-1)`, capped at `max_backoff`.
    `timeout` bounds each try (see `Step`'s `timeout`, which takes precedence).
    """

    attempts: int = 3
    backoff: timedelta = timedelta(seconds=1)
    factor: float = 2.0
    max_backoff: timedelta = timedelta(minutes=10)
    timeout: timedelta | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1")
        if self.backoff < timedelta(0) or self.factor < 1:
            raise ValueError("Retry.backoff must be >= 0 and Retry.factor >= 1")
        _check_timeout(self.timeout, "Retry.timeout")

    def delay_after(self, attempt: int) -> timedelta | None:
        """The pause before the next try after `attempt` failed, or None when none is left."""
        if attempt >= self.attempts:
            return None
        delay = self.backoff * (self.factor ** (attempt - 1))
        return min(delay, self.max_backoff)


DEFAULT_RETRY: Final = Retry()


@dataclass(slots=True, init=False)
class Step(Statement):
    """`Step(name, action)`: run `action()` (sync or async); raising means the step failed.
    `renamed_from` lists names the step had before: instances standing there move to it.

    `timeout` (default: the retry policy's) bounds how long one try may hold the instance.
    Past it the try counts as failed under the retry policy: an async step is cancelled; a
    sync one cannot be interrupted, so its lease is given up (another driver may run the step
    again) and its late result, if it ever comes, is discarded (docs/concepts.md, "Steps that
    never return")."""

    name: str
    action: Callable[[], Any]
    retry: Retry
    renamed_from: tuple[str, ...]

    def __init__(
        self,
        name: str,
        action: Callable[[], Any],
        *,
        retry: Retry | int | None = None,
        renamed_from: Iterable[str] = (),
        timeout: timedelta | None = None,
    ) -> None:
        # the tree is rebuilt after every step: the common case (no options) is kept short
        self.name = name
        self.action = action
        self.renamed_from = old_names(renamed_from) if renamed_from else ()
        if retry is None:
            self.retry = DEFAULT_RETRY
        elif isinstance(retry, int):
            self.retry = Retry(attempts=retry)
        else:
            self.retry = retry
        if timeout is not None:  # kept in the policy: a step without one costs nothing more
            _check_timeout(timeout, f"the timeout of step '{name}'")
            self.retry = replace(self.retry, timeout=timeout)

    @property
    def timeout(self) -> timedelta | None:
        """How long one try may hold the instance (the retry policy's), or None."""
        return self.retry.timeout

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            if cur.target != self.name:
                return None
            cur.found()
            return None if cur.entry is Entry.AFTER else RunStep(self)
        cur.tick()
        return RunStep(self)


@dataclass(slots=True, init=False)
class RunStep(Signal):
    """Run `step`, the thread standing at it entered as `entry` (AT for a Step; EVENT for a
    WaitFor's `then`: its condition was found true, so a retry runs `then` without asking)."""

    step: Step
    entry: Entry

    def __init__(self, step: Step, entry: Entry = Entry.AT) -> None:
        self.step = step
        self.entry = entry
