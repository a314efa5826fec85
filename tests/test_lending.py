"""The hot path's own connections: never more open than allowed, lent again once given back,
a borrower waits for one when all are out, and a broken one frees its place."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import pytest
from signoff.engine.errors import Busy
from signoff.engine.storage.lending import Lending
from signoff.engine.storage.store import Store


class Opener:
    """Stands for the database: numbers the connections it opens and notes which it closed."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.lock = threading.Lock()

    def open(self) -> int:
        with self.lock:
            self.opened.append(len(self.opened))
            return self.opened[-1]

    def close(self, conn: int) -> None:
        self.closed.append(conn)


def test_a_connection_given_back_is_lent_again_before_a_new_one_is_opened() -> None:
    db = Opener()
    lending = Lending(db.open, db.close, most=3)
    first = lending.take(1)
    lending.give(first)
    assert lending.take(1) == first
    assert db.opened == [0]


def test_no_more_than_most_are_open_and_a_borrower_waits_for_one_given_back() -> None:
    db = Opener()
    lending = Lending(db.open, db.close, most=2)
    a, b = lending.take(1), lending.take(1)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(lending.take(5)))
    waiter.start()
    time.sleep(0.1)
    assert got == [] and db.opened == [0, 1]  # waiting, not opening a third
    lending.give(b)
    waiter.join(5)
    assert got == [b]
    lending.give(a)


def test_with_every_connection_out_a_borrower_is_told_busy_after_its_timeout() -> None:
    db = Opener()
    lending = Lending(db.open, db.close, most=1)
    lending.take(1)
    with pytest.raises(Busy, match="busy"):
        lending.take(0.05)


def test_a_dropped_connection_is_closed_and_frees_its_place_for_a_waiter() -> None:
    db = Opener()
    lending = Lending(db.open, db.close, most=1)
    broken = lending.take(1)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(lending.take(5)))
    waiter.start()
    time.sleep(0.1)
    lending.drop(broken)
    waiter.join(5)
    assert db.closed == [broken] and got == [1]  # a new one, opened in the freed place


def test_an_open_that_fails_frees_its_place() -> None:
    def refuse() -> int:
        raise OSError("connection refused")

    lending = Lending(refuse, lambda conn: None, most=1)
    for _ in range(3):  # each failure gives its place back; no Busy
        with pytest.raises(OSError):
            lending.take(0.05)


def test_many_threads_borrowing_at_once_never_share_a_connection() -> None:
    db = Opener()
    lending = Lending(db.open, db.close, most=3)
    in_use: set[int] = set()
    clashes: list[int] = []
    guard = threading.Lock()

    def borrow_often() -> None:
        for _ in range(300):
            conn = lending.take(5)
            with guard:
                if conn in in_use:
                    clashes.append(conn)
                in_use.add(conn)
            with guard:
                in_use.discard(conn)
            lending.give(conn)

    threads = [threading.Thread(target=borrow_often) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert clashes == [] and len(db.opened) <= 3


def test_close_closes_the_idle_connections_now_and_those_in_use_when_given_back() -> None:
    db = Opener()
    lending = Lending(db.open, db.close, most=3)
    a, b = lending.take(1), lending.take(1)
    lending.give(a)
    lending.close()
    assert db.closed == [a]
    lending.give(b)  # in use during close: closed as it comes back, not kept
    assert db.closed == [a, b] and lending.opened == 0
    c = lending.take(1)  # still usable: a new connection, kept as usual
    lending.give(c)
    assert c not in db.closed and lending.take(1) == c


def test_a_connection_that_cannot_even_roll_back_is_dropped_not_leaked(tmp_path: Any) -> None:
    """A commit failing on a connection that then fails its rollback too (a disk error, a
    closed handle): the connection is closed and its place freed, so the next load does not
    wait for a connection nobody will give back."""
    store = Store(f"sqlite:///{tmp_path}/a.db", pool_size=1)
    lending = store.raw.lending
    assert lending is not None
    for _ in range(lending.most + 1):
        with pytest.raises(sqlite3.ProgrammingError), store.raw.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.close()  # its rollback can only fail now
            conn.execute("SELECT 1")
    assert lending.opened == 0
    assert store.load("nothing") is None  # answered at once, not Busy after 30 s
    store.close()
