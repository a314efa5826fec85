"""The few database connections the hot path keeps for itself, lent out one per load or commit.

A load or commit borrows at every transition, so the common case, an idle connection at hand,
is a list pop and a list append: no lock, no condition, no context-manager generator. Only when
none is idle does a borrower take the lock, to open one more (up to `most`) or to wait for one
to come back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import monotonic
from typing import Any

from signoff.engine.errors import Busy


class Lending:
    """Connections opened by `open_one`, at most `most` at a time; `take` one, then `give` it
    back, or `drop` it when it is broken (it is closed and no longer counts)."""

    def __init__(
        self, open_one: Callable[[], Any], close_one: Callable[[Any], None], most: int
    ) -> None:
        self.open_one, self.close_one = open_one, close_one
        self.most = max(most, 1)
        self.idle: list[Any] = []  # list.pop and list.append are atomic: the fast path
        self.opened = 0  # connections in use and idle
        self.waiting = 0
        self.lent: set[Any] = set()  # every connection open now, idle or in use
        self.retiring: set[Any] = set()  # in use when `close` was called: closed when back
        self.changed = threading.Condition(threading.Lock())

    def take(self, timeout: float) -> Any:
        try:
            return self.idle.pop()
        except IndexError:
            pass
        deadline = monotonic() + timeout
        with self.changed:
            # counted before looking, so a `give` after the look knows to wake us
            self.waiting += 1
            try:
                while True:
                    try:
                        return self.idle.pop()
                    except IndexError:
                        pass
                    if self.opened < self.most:
                        self.opened += 1
                        break
                    left = deadline - monotonic()
                    if left <= 0:
                        raise Busy("every database connection is busy; try again shortly")
                    self.changed.wait(left)
            finally:
                self.waiting -= 1
        try:
            conn = self.open_one()
        except BaseException:
            self._forget()
            raise
        with self.changed:
            self.lent.add(conn)
        return conn

    def give(self, conn: Any) -> None:
        if self.retiring and conn in self.retiring:
            self.retiring.discard(conn)
            self.drop(conn)
            return
        self.idle.append(conn)
        if self.waiting:
            with self.changed:
                self.changed.notify()

    def drop(self, conn: Any) -> None:
        try:
            self.close_one(conn)
        finally:
            with self.changed:
                self.lent.discard(conn)
            self._forget()

    def close(self) -> None:
        """Close the idle connections now and those in use when they are given back. A later
        `take` opens new ones (a store stays usable after `close`, as an SQLAlchemy engine
        does after `dispose`)."""
        with self.changed:
            self.retiring |= self.lent
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                return
            self.retiring.discard(conn)
            self.drop(conn)

    def _forget(self) -> None:
        with self.changed:
            self.opened -= 1
            self.changed.notify()
