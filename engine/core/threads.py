"""`Go(name, body, id=None)` starts a thread; `Return(...)` ends one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from signoff.engine.core.tree import Cursor, Returned, Section, Signal, Statement, old_names


@dataclass(slots=True)
class Go(Statement):
    """Starts `body` as a parallel thread, known by `id` (or by `name` when it has none).

    The body belongs to the new thread: the thread that runs into a Go only spawns it and walks on.
    """

    name: str
    body: Section
    id: str | None = None
    renamed_from: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        body: Statement,
        id: str | None = None,
        *,
        renamed_from: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.body = body if isinstance(body, Section) else Section(body)
        self.id = id
        self.renamed_from = old_names(renamed_from)

    @property
    def thread_id(self) -> str:
        return self.id or self.name

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            return None
        cur.tick()
        cur.spawned.append(self)
        return None

    def children(self) -> Iterator[Statement]:
        yield self.body


@dataclass(slots=True, init=False)
class Return(Statement):
    """Ends the thread: `Return()`, `Return(value)`, `Return(error="...")` or
    `Return(SomeException(...))`. On the main thread it ends the instance."""

    value: Any
    error: str | None

    def __init__(self, value: Any = None, *, error: str | None = None) -> None:
        if isinstance(value, BaseException):
            error, value = f"{type(value).__name__}: {value}", None
        self.value = value
        self.error = error

    def resume(self, cur: Cursor) -> Signal | None:
        if cur.seeking:
            return None
        cur.tick()
        return Returned(self.value, self.error)
