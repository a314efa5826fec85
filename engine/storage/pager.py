"""The dashboard's most frequent reads, spoken straight to the DB-API driver: one keyset page
of instances and the count of each status under the same filters (`RawPager`). Building and
compiling SQLAlchemy statements for them cost more than running them; the SQL of each shape of
filter is built once and kept."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from time import monotonic
from typing import Any

from signoff.engine.errors import Busy
from signoff.engine.storage.columns import aware, when
from signoff.engine.storage.drivers import MYSQL_TOO_SLOW, is_mysql, mysql_code
from signoff.engine.storage.lookup import UNINDEXED, Lookups
from signoff.engine.storage.narrowing import NO_NARROWING, ORDERS, Narrowing, narrow_clauses
from signoff.engine.storage.search import compare_sql, search_terms, trigram_terms
from signoff.engine.storage.visibility import ESCAPE, MYSQL_ESCAPE, visible_clause, visible_params

SEARCH_TIMEOUT = 2.0  # seconds one search may read for
# How many instances, in a page's order, a page of one person's instances is first looked for
# among (`RawPager.window_sql`): when at least one in WINDOW / page size of them is theirs,
# the page is there, at the cost of walking this many index entries; else the page is read
# from their participants rows, which are few then.
WINDOW = 20_000


def _too_slow(seconds: float) -> Busy:
    return Busy(
        f"the search took longer than {seconds:g} s and was stopped: search for an id, or for "
        "longer, rarer text"
    )


class RawPager:
    """`Store.page` and `Store.counts`: one keyset page of instances with the events each waits
    for, and how many instances each status has, under the same filters. The SQL of each
    shape of filter is built once and kept."""

    def __init__(
        self, db: Any, sqlite: bool, prefix: str = "", search_timeout: float = SEARCH_TIMEOUT
    ) -> None:
        self.db = db
        self.sqlite = sqlite
        self.mysql = is_mysql(db)
        self.escape = MYSQL_ESCAPE if self.mysql else ESCAPE
        self.prefix = prefix  # the quoted schema and a dot, when the tables have one
        self.mark = "?" if sqlite else "%s"
        self.queries: dict[tuple[Any, ...], str] = {}
        self.search_timeout = search_timeout
        self.window = WINDOW
        # PostgreSQL with the trigram index on the data: an operator's search looks terms up
        self.lookups = Lookups(prefix)

    @contextmanager
    def time_limit(self, conn: Any, cur: Any) -> Iterator[None]:
        """A search through the data reads every row: stop it after `search_timeout` seconds
        (PostgreSQL's statement_timeout, MariaDB's max_statement_time, MySQL's
        max_execution_time; on SQLite a progress handler that interrupts it)."""
        if self.mysql:
            mariadb = bool(getattr(self.db.dialect, "is_mariadb", False))
            variable = "max_statement_time" if mariadb else "max_execution_time"
            limit = self.search_timeout if mariadb else int(self.search_timeout * 1000)
            cur.execute(f"SET SESSION {variable} = {limit}")
            try:
                yield
            except self.db.dialect.dbapi.OperationalError as exc:
                if mysql_code(exc) in MYSQL_TOO_SLOW:
                    raise _too_slow(self.search_timeout) from exc
                raise
            finally:
                cur.execute(f"SET SESSION {variable} = DEFAULT")
            return
        if not self.sqlite:
            cur.execute(f"SET LOCAL statement_timeout = {int(self.search_timeout * 1000)}")
            try:
                yield
            except self.db.dialect.dbapi.OperationalError as exc:  # QueryCanceled is one
                raise _too_slow(self.search_timeout) from exc
            return  # SET LOCAL ends with the transaction, which the page rolls back
        driver = conn.driver_connection
        deadline = monotonic() + self.search_timeout
        driver.set_progress_handler(lambda: monotonic() > deadline, 100_000)
        try:
            yield
        except self.db.dialect.dbapi.OperationalError as exc:  # "interrupted"
            raise _too_slow(self.search_timeout) from exc
        finally:
            driver.set_progress_handler(None, 0)

    def _match(self, kind: str, patterns: int = 1, unindexed: bool = False) -> str:
        """The SQL of a term of `search_terms`; `patterns`: how many LIKE patterns it has;
        `unindexed`: the data as an expression the trigram index does not answer."""
        m, escape = self.mark, self.escape
        compared = compare_sql(kind, m, self.sqlite, self.mysql)
        if compared is not None:
            return compared
        if kind == "id":
            return f"id >= {m} AND id < {m}" if self.sqlite else f"id LIKE {m}{escape}"
        data = UNINDEXED if unindexed else "data"
        return " OR ".join([f"{data} LIKE {m}{escape}"] * patterns)

    def _narrowed_first(self, cur: Any, viewer: Collection[str] | None) -> bool:
        """Whether a person's search must keep the trigram index out of its plan: their
        instances are few and are read first (the participants' index); looking up a field's
        whole pattern in the trigram index instead reads an entry per instance of the
        workflow (measured at 100k: 7.9 ms where 5.0 ms without the index)."""
        return (
            viewer is not None and not (self.sqlite or self.mysql) and self.lookups.available(cur)
        )

    def _trigram_terms(
        self, cur: Any, search: str, viewer: Collection[str] | None
    ) -> list[tuple[str, list[str], list[str]]] | None:
        """The terms of an operator's search as the trigram index looks them up (see
        `lookup`), when this is PostgreSQL with that index and the index can; else None (the
        rows are read). A person's search stays as it is: their instances are few, and
        narrowed first."""
        if self.sqlite or self.mysql or viewer is not None:
            return None
        terms = trigram_terms(search)
        if terms is None or not self.lookups.available(cur):
            return None
        return terms

    def _filters(
        self,
        status: str | None,
        workflow: str | None,
        before: tuple[datetime, str] | None,
        order: str,
        narrow: Narrowing | None,
    ) -> tuple[list[str], list[Any]]:
        """The page's filters other than the search and who sees what, as SQL and parameters."""
        m = self.mark
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append(f"status = {m}")
            params.append(status)
        if workflow:
            where.append(f"workflow = {m}")
            params.append(workflow)
        if narrow is not None:
            where += narrow_clauses(self.prefix, m, *narrow.shape())
            params += narrow.params(self.sqlite)
        if before is not None:
            where.append(ORDERS[order][1].format(m=m))
            params += self._cursor(before, order)
        return where, params

    def _cursor(self, before: tuple[datetime, str], order: str) -> list[Any]:
        """The parameters of the keyset condition that continues after `before` (ORDERS)."""
        if order == "id":
            return [before[1]]
        at = when(before[0], self.sqlite)
        return [at, at, before[1]]

    def sql(
        self,
        status: bool,
        workflow: bool,
        search: str,
        before: bool,
        order: str,
        viewer: int = 0,
        narrow: tuple[int, bool, bool, bool] = NO_NARROWING,
        patterns: int = 1,
        unindexed: bool = False,
    ) -> str:
        """`search` is "" (none), "id", "field" or "data" (see `search_terms`; the last two read
        rows, so they run under a time limit), with `patterns` LIKE patterns (`unindexed`: see
        `_match`); `viewer`: how many identities the rows must be visible to (0: every row)."""
        shape = (
            "page", status, workflow, search, before, order, viewer, narrow, patterns, unindexed
        )  # fmt: skip
        found = self.queries.get(shape)
        if found is None:
            m = self.mark
            where = []
            if status:
                where.append(f"status = {m}")
            if workflow:
                where.append(f"workflow = {m}")
            if search:
                where.append(f"({self._match(search, patterns, unindexed)})")
            if viewer:
                where.append(visible_clause(self.prefix, m, viewer))
            where += narrow_clauses(self.prefix, m, *narrow)
            ordering, after = ORDERS[order]
            if before:
                where.append(after.format(m=m))
            # SQLite would count on the workflow/status index (made for the counts) and sort
            # every row of the workflow; walking an index in the page's order stops at the page
            hint = ""
            if self.sqlite and workflow and order != "id":
                index = "status_recent" if status else "workflow_recent"
                hint = f" INDEXED BY ix_signoff_instances_{index}"
            found = self.queries[shape] = (
                "SELECT id, workflow, status, error, created_at, updated_at, data, state "
                f"FROM {self.prefix}signoff_instances{hint}"
                + (" WHERE " + " AND ".join(where) if where else "")
                + f" ORDER BY {ordering} LIMIT {m}"
            )
        return found

    def page(
        self,
        status: str | None,
        workflow: str | None,
        search: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        order: str = "recent",
        viewer: Collection[str] | None = None,
        narrow: Narrowing | None = None,
    ) -> list[dict[str, Any]]:
        """Without `search`, one query. With it, one per way it may match (`search_terms`),
        merged in the page's order. Rows carry their data and state as stored (JSON text).
        `viewer`: only the instances these identities see (None: all); `narrow`: see
        `Narrowing`."""
        if (viewer is not None and not viewer) or (narrow is not None and narrow.nobody):
            return []  # nobody: sees nothing (never "no filter")
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            if self.sqlite:
                cur.execute("BEGIN")  # every read sees one snapshot
            if not search:
                found = self._windowed(cur, status, workflow, limit, before, order, viewer, narrow)
                if found is None:
                    found = self._select(
                        cur, status, workflow, "", [], limit, before, order, viewer, narrow
                    )
            elif (terms := self._trigram_terms(cur, search, viewer)) is not None:
                where, params = self._filters(status, workflow, before, order, narrow)
                with self.time_limit(conn, cur):  # PostgreSQL's trigram index: see `lookup`
                    found = self.lookups.page(cur, terms, where, params, order, limit)
            else:
                found = self._searched(
                    conn, cur, search, status, workflow, limit, before, order, viewer, narrow
                )
            rows = {
                iid: {
                    "id": iid,
                    "workflow": wf,
                    "status": st,
                    "error": error,
                    "created_at": aware(created),
                    "updated_at": aware(updated),
                    "waiting_for": [],
                    "data": data,
                    "state": state,
                }
                for iid, wf, st, error, created, updated, data, state in found
            }
            if order == "id":
                page = sorted(rows.values(), key=lambda r: r["id"])
            else:
                page = sorted(
                    rows.values(),
                    key=lambda r: (r["updated_at"], r["id"]),
                    reverse=order == "recent",
                )
            page = page[:limit]
            if page:
                by_id = {r["id"]: r for r in page}
                for r in page:
                    r["waits"] = []
                marks = ", ".join([self.mark] * len(by_id))
                cur.execute(
                    "SELECT instance_id, event, thread, wait, kind, title, approvers, began_at, "
                    f"due_at FROM {self.prefix}signoff_waits WHERE instance_id IN ({marks}) "
                    "ORDER BY id",
                    list(by_id),
                )
                for iid, event, *rest in cur.fetchall():
                    by_id[iid]["waiting_for"].append(event)
                    thread, wait, kind, title, approvers, began, due = rest
                    by_id[iid]["waits"].append(
                        {
                            "event": event,
                            "thread": thread,
                            "wait": wait,
                            "kind": kind,
                            "title": title,
                            "approvers": json.loads(approvers) if approvers else None,
                            "began_at": aware(began),
                            "due_at": aware(due) if due is not None else None,
                        }
                    )
            conn.rollback()
            return page
        finally:
            conn.close()

    def _searched(
        self,
        conn: Any,
        cur: Any,
        search: str,
        status: str | None,
        workflow: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        order: str,
        viewer: Collection[str] | None,
        narrow: Narrowing | None,
    ) -> list[Any]:
        """A page of a search, one query per way it may match (`search_terms`), each a page
        in its own right (merged and cut by `page`); those through the data under the time
        limit."""
        found: list[Any] = []
        for kind, params in search_terms(search, self.sqlite):
            args = (cur, status, workflow, kind, params, limit, before, order, viewer, narrow)
            if kind == "id":
                found += self._select(*args)
                continue
            with self.time_limit(conn, cur):
                found += self._select(*args)
        return found

    def counts(
        self,
        workflow: str | None,
        search: str | None,
        viewer: Collection[str] | None = None,
        narrow: Narrowing | None = None,
        at_most: int | None = None,
    ) -> tuple[dict[str, int], bool]:
        """How many instances each status has, of `workflow` and matching `search` (as `page`
        matches it), visible to `viewer`'s identities when given, narrowed by `narrow`; and
        whether that is all of them. A search's matches are counted only up to `at_most` + 1
        when given: a search that matches more has counts that are lower bounds (not
        complete). A search reads rows, under the time limit."""
        if (viewer is not None and not viewer) or (narrow is not None and narrow.nobody):
            return {}, True
        m = self.mark
        where, params = [], []
        if workflow:
            where.append(f"workflow = {m}")
            params.append(workflow)
        if narrow is not None:
            where += narrow_clauses(self.prefix, m, *narrow.shape())
            params += narrow.params(self.sqlite)
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            complete = True
            if not search:
                cur.execute(self._count_sql(where, viewer), [*params, *self._shown(viewer)])
                found = cur.fetchall()
            elif (terms := self._trigram_terms(cur, search, viewer)) is not None:
                with self.time_limit(conn, cur):  # PostgreSQL's trigram index: see `lookup`
                    found, complete = self.lookups.counts(cur, terms, where, params, at_most)
            else:
                matched = search_terms(search, self.sqlite)
                unindexed = self._narrowed_first(cur, viewer)
                tests = [f"({self._match(k, len(ps), unindexed)})" for k, ps in matched]
                where.append("(" + " OR ".join(tests) + ")")
                params += [p for _, ps in matched for p in ps]
                with self.time_limit(conn, cur):
                    cur.execute(
                        self._count_sql(where, viewer, at_most), [*params, *self._shown(viewer)]
                    )
                    found = cur.fetchall()
                complete = at_most is None or sum(int(n) for _, n in found) <= at_most
            conn.rollback()
            return {status: int(n) for status, n in found}, complete
        finally:
            conn.close()

    @staticmethod
    def _shown(viewer: Collection[str] | None) -> list[Any]:
        return visible_params(viewer) if viewer is not None else []

    def _count_sql(
        self, where: list[str], viewer: Collection[str] | None, at_most: int | None = None
    ) -> str:
        """The counts per status of the instances `where` keeps and `viewer` sees (its
        parameters last); of the first `at_most` + 1 of them, when given."""
        if viewer is not None:
            where = [*where, visible_clause(self.prefix, self.mark, len(viewer))]
        rows = f"{self.prefix}signoff_instances" + (
            " WHERE " + " AND ".join(where) if where else ""
        )
        if at_most is None:
            return f"SELECT status, count(*) FROM {rows} GROUP BY status"
        return (
            f"SELECT status, count(*) FROM (SELECT status FROM {rows} LIMIT {at_most + 1}) c "
            "GROUP BY status"
        )

    def window_sql(
        self,
        status: bool,
        workflow: bool,
        before: bool,
        order: str,
        viewer: int,
        narrow: tuple[int, bool, bool, bool],
        full: bool = False,
    ) -> str:
        """The page of `sql` (no search) read from a window: the first `self.window` instances
        in the page's order that the status, workflow and cursor leave, walked in an index
        that holds their order and id (no row is read), kept when their ids are among the
        participants of `viewer` identities (and the `narrow` deciders); only then are the
        rows read. `full`: instead, whether the window is full (its last place taken)."""
        shape = ("window", self.window, status, workflow, before, order, viewer, narrow, full)
        found = self.queries.get(shape)
        if found is None:
            m, p = self.mark, self.prefix
            base = []
            if status:
                base.append(f"status = {m}")
            if workflow:
                base.append(f"workflow = {m}")
            ordering, after = ORDERS[order]
            if before:
                base.append(after.format(m=m))
            hint = ""
            if self.sqlite and workflow and order != "id":
                hint = (
                    f" INDEXED BY ix_signoff_instances_{'status' if status else 'workflow'}_recent"
                )
            window = (
                f"SELECT id FROM {p}signoff_instances{hint}"
                + (" WHERE " + " AND ".join(base) if base else "")
                + f" ORDER BY {ordering}"
            )
            if full:
                found = self.queries[shape] = f"{window} LIMIT 1 OFFSET {self.window - 1}"
                return found
            deciders, overdue, started_from, started_before = narrow
            kept = [visible_clause(p, m, viewer, "win.id")] if viewer else []
            kept += narrow_clauses(p, m, deciders, False, id_column="win.id")
            where = [
                f"id IN (SELECT win.id FROM ({window} LIMIT {self.window}) win "
                f"WHERE {' AND '.join(kept)})",
                *narrow_clauses(p, m, 0, overdue, started_from, started_before),
            ]
            found = self.queries[shape] = (
                "SELECT id, workflow, status, error, created_at, updated_at, data, state "
                f"FROM {p}signoff_instances WHERE {' AND '.join(where)} "
                f"ORDER BY {ordering} LIMIT {m}"
            )
        return found

    def _windowed(
        self,
        cur: Any,
        status: str | None,
        workflow: str | None,
        limit: int,
        before: tuple[datetime, str] | None,
        order: str,
        viewer: Collection[str] | None,
        narrow: Narrowing | None,
    ) -> list[Any] | None:
        """The rows of `window_sql`, when they are the page: a whole page, or the window held
        every instance left. None when the window filled up with too few of the person's
        instances among them (they are few): `_select` reads the page from theirs then."""
        deciders = list(narrow.deciders or ()) if narrow is not None else []
        if viewer is None and not deciders:
            return None  # nothing narrows the page to a person's instances
        base: list[Any] = []
        if status:
            base.append(status)
        if workflow:
            base.append(workflow)
        if before is not None:
            base += self._cursor(before, order)
        shown = len(viewer) if viewer is not None else 0
        shape = narrow.shape() if narrow is not None else NO_NARROWING
        params = [*base, *(visible_params(viewer) if viewer is not None else ()), *deciders]
        if narrow is not None:
            params += narrow.params(self.sqlite)[len(deciders) :]
        args = (bool(status), bool(workflow), before is not None, order, shown, shape)
        cur.execute(self.window_sql(*args), [*params, limit])
        found = list(cur.fetchall())
        if len(found) >= limit:
            return found
        cur.execute(self.window_sql(*args, full=True), base)
        return None if cur.fetchone() is not None else found

    def _select(
        self,
        cur: Any,
        status: str | None,
        workflow: str | None,
        search: str,
        search_params: list[str],
        limit: int,
        before: tuple[datetime, str] | None,
        order: str,
        viewer: Collection[str] | None = None,
        narrow: Narrowing | None = None,
    ) -> list[Any]:
        params: list[Any] = []
        if status:
            params.append(status)
        if workflow:
            params.append(workflow)
        params += search_params
        if viewer is not None:
            params += visible_params(viewer)
        if narrow is not None:
            params += narrow.params(self.sqlite)
        if before is not None:
            params += self._cursor(before, order)
        params.append(limit)
        shown = len(viewer) if viewer is not None else 0
        shape = narrow.shape() if narrow is not None else NO_NARROWING
        sql = self.sql(
            bool(status), bool(workflow), search, before is not None, order, shown, shape,
            len(search_params) if search in ("data", "field") else 1,
            bool(search) and self._narrowed_first(cur, viewer),
        )  # fmt: skip
        cur.execute(sql, params)
        return list(cur.fetchall())
