"""An operator's search through the data on PostgreSQL, answered by shape rather than by the
planner's guess (`Lookups`): the trigram index on the data (revision 0015) finds the few
instances a rare term matches, and a walk in the page's order finds a common term's first page
at once.

A planner cannot tell a rare term from a common one (`%emp0042%` and `%emp0%` look alike to
it): for a rare term it may walk the order's index backwards looking for a page that is not
there (every row read), for a common one read the index's whole posting lists before sorting.
So a search here is answered in up to three steps, each one statement:

1. the first `probe` instances in the page's order (after its cursor, under its other filters)
   are searched; when they hold a page, that is the page;
2. else the index looks the term up, reading at most `cap` + 1 matches: when they are fewer,
   they are every match, and the page is sorted from them (the counts are counted from them);
3. else the term is common yet thin in the newest instances: the page is read walking the
   order's index, which finds it after about page size x instances / matches rows (with more
   than `cap` matches spread over a million instances, at most some 50,000), where reading
   every match would cost in proportion to their number.

Counts with a bound (`at_most`) take steps 1 and 2 alike: more than `at_most` matches among
the newest `probe` instances, or in the index, and the counts are lower bounds (`complete`
false); else they are exact.
"""

from __future__ import annotations

from typing import Any

from signoff.engine.storage.narrowing import ORDERS
from signoff.engine.storage.visibility import ESCAPE

PROBE = 5_000  # instances, in the page's order, that a search reads before it looks the term up
CAP = 1_000  # matches the index lookup reads at most; more, and the term is common
INDEX = "ix_signoff_instances_data_trgm"
COLUMNS = "id, workflow, status, error, created_at, updated_at, data, state"
# The data as an expression the trigram index does not answer: a field's own patterns are
# checked on the rows its value found, never looked up (its name is in every row); a person's
# search reads their few instances first (pager.RawPager._narrowed_first).
UNINDEXED = "(data || '')"
# what step 3 turns off for its walk (module doc)
_WALK = {
    "enable_bitmapscan": "off",
    "enable_seqscan": "off",
    "max_parallel_workers_per_gather": "0",
}
# Every statement here reads a bounded number of rows, but the planner prices some as if they
# read them all, past jit_above_cost: compiling them took 12 ms where running took 3 ms. Off
# for the rest of the caller's transaction (which a search rolls back).
_NO_JIT = "SET LOCAL jit = off"


def walked(terms: list[tuple[str, list[str], list[str]]]) -> tuple[str, list[str]]:
    """The SQL test of the search's terms (any may match) on rows at hand, and its parameters."""
    tests, params = [], []
    for kind, patterns, _ in terms:
        column = "id" if kind == "id" else "data"
        tests += [f"{column} LIKE %s{ESCAPE}"] * len(patterns)
        params += patterns
    return "(" + " OR ".join(tests) + ")", params


def looked_up(terms: list[tuple[str, list[str], list[str]]]) -> tuple[str, list[str]]:
    """The SQL test of the search's terms as the indexes answer it: an id prefix through its
    own index, text in the data through the trigrams of its pattern, `field:value` through the
    trigrams of the value (`search.trigram_terms`), checked against the field's patterns."""
    tests, params = [], []
    for kind, patterns, lookups in terms:
        if kind == "id":
            tests.append(f"id LIKE %s{ESCAPE}")
            params += patterns
        elif lookups == patterns:
            tests += [f"data LIKE %s{ESCAPE}"] * len(patterns)
            params += patterns
        else:
            found = " OR ".join([f"data LIKE %s{ESCAPE}"] * len(lookups))
            checked = " OR ".join([f"{UNINDEXED} LIKE %s{ESCAPE}"] * len(patterns))
            tests.append(f"(({found}) AND ({checked}))")
            params += [*lookups, *patterns]
    return "(" + " OR ".join(tests) + ")", params


class Lookups:
    """The three steps of the module's doc, for `RawPager`: `page` and `counts` take the
    search's `trigram_terms` and the other filters as SQL (`where`, with `params` in order),
    and run on the caller's cursor, inside its time limit. `prefix`: the tables' quoted schema
    and a dot, when they have one."""

    def __init__(self, prefix: str, probe: int = PROBE, cap: int = CAP) -> None:
        self.prefix = prefix
        self.probe = probe
        self.cap = cap
        self.present: bool | None = None  # the index: asked once, at the first search

    def available(self, cur: Any) -> bool:
        """Whether the trigram index is there (and built: a CREATE INDEX CONCURRENTLY that
        failed leaves an invalid one)."""
        if self.present is None:
            cur.execute(
                "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
                [f"{self.prefix}{INDEX}"],
            )
            row = cur.fetchone()
            self.present = bool(row is not None and row[0])
        return self.present

    def page(
        self,
        cur: Any,
        terms: list[tuple[str, list[str], list[str]]],
        where: list[str],
        params: list[Any],
        order: str,
        limit: int,
    ) -> list[Any]:
        """Rows of the page (COLUMNS, in the page's order from steps 1 and 3, in none from
        step 2)."""
        table = f"{self.prefix}signoff_instances"
        ordering, _ = ORDERS[order]
        filters = " WHERE " + " AND ".join(where) if where else ""
        cur.execute(_NO_JIT)
        test, test_params = walked(terms)
        cur.execute(
            f"SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM {table}{filters} "
            f"ORDER BY {ordering} LIMIT {self.probe}) w "
            f"WHERE {test} ORDER BY {ordering} LIMIT %s",
            [*params, *test_params, limit],
        )
        found = list(cur.fetchall())
        if len(found) >= limit:
            return found
        test, test_params = looked_up(terms)
        # the page is sorted from the matches, then read by id: nothing walks the order's index
        cur.execute(
            f"WITH m AS MATERIALIZED (SELECT id, updated_at FROM {table} "
            f"WHERE {' AND '.join([*where, test])} LIMIT {self.cap + 1}) "
            f"SELECT {COLUMNS}, (SELECT count(*) FROM m) FROM {table} "
            f"WHERE id IN (SELECT id FROM m ORDER BY {ordering} LIMIT %s)",
            [*params, *test_params, limit],
        )
        rows = cur.fetchall()
        if not rows or rows[0][-1] <= self.cap:
            return [row[:-1] for row in rows]
        # step 3: the walk, with neither the trigram index (a GIN index is read by bitmap
        # only) nor a read of every row to choose from, nor workers (the planner prices a walk
        # that may read every row high; starting them costs more than the walk). For this
        # statement only.
        for setting, value in _WALK.items():
            cur.execute(f"SET LOCAL {setting} = {value}")
        test, test_params = walked(terms)
        try:
            cur.execute(
                f"SELECT {COLUMNS} FROM {table} WHERE {' AND '.join([*where, test])} "
                f"ORDER BY {ordering} LIMIT %s",
                [*params, *test_params, limit],
            )
            return list(cur.fetchall())
        finally:
            for setting in _WALK:
                cur.execute(f"RESET {setting}")

    def counts(
        self,
        cur: Any,
        terms: list[tuple[str, list[str], list[str]]],
        where: list[str],
        params: list[Any],
        at_most: int | None,
    ) -> tuple[list[Any], bool]:
        """(status, count) rows, and whether they are complete: with `at_most`, a term that
        matches more is counted only that far (each count then a lower bound)."""
        table = f"{self.prefix}signoff_instances"
        test, test_params = looked_up(terms)
        matching = " AND ".join([*where, test])
        cur.execute(_NO_JIT)
        if at_most is None:
            cur.execute(
                f"SELECT status, count(*) FROM {table} WHERE {matching} GROUP BY status",
                [*params, *test_params],
            )
            return list(cur.fetchall()), True
        if at_most < self.probe:  # step 1: a term common in the newest instances
            walk, walk_params = walked(terms)
            filters = " WHERE " + " AND ".join(where) if where else ""
            cur.execute(
                "SELECT status, count(*) FROM (SELECT status FROM "
                f"(SELECT status, id, data FROM {table}{filters} "
                f"ORDER BY updated_at DESC, id DESC LIMIT {self.probe}) w "
                f"WHERE {walk} LIMIT {at_most + 1}) c GROUP BY status",
                [*params, *walk_params],
            )
            found = list(cur.fetchall())
            if sum(n for _, n in found) > at_most:
                return found, False
        cur.execute(
            "SELECT status, count(*) FROM "
            f"(SELECT status FROM {table} WHERE {matching} LIMIT {at_most + 1}) c "
            "GROUP BY status",
            [*params, *test_params],
        )
        found = list(cur.fetchall())
        return found, sum(n for _, n in found) <= at_most
