"""A commit on PostgreSQL as ONE statement (`PgCommit`): CTEs that do the guarded write of the
row, replace its wait rows, append its history, outbox and participants rows, and tell the
schedulers when it falls due (NOTIFY on `DUE_CHANNEL`); atomic without a transaction block."""

from __future__ import annotations

from collections.abc import Sequence

from signoff.engine.storage.columns import (
    CHANGING_COLUMNS,
    HISTORY_COLUMNS,
    INSTANCE_COLUMNS,
    OUTBOX_COLUMNS,
    PROGRESS_COLUMNS,
    WAIT_COLUMNS,
)
from signoff.engine.storage.visibility import ACTED

DUE_CHANNEL = "signoff_due"  # PostgreSQL NOTIFY channel: "<instance id> <due at, ISO 8601>"


_WAIT_TYPES = {"began_at": "timestamp", "due_at": "timestamp"}
_HISTORY_TYPES = {"at": "timestamp"}
_OUTBOX_TYPES = {"attempts": "integer", "next_at": "timestamp", "created_at": "timestamp"}


def _recordset(param: str, names: Sequence[str], types: dict[str, str]) -> str:
    """The rows of a JSON array parameter, typed, numbered in order (column n)."""
    typed = ", ".join(f"{n} {types.get(n, 'text')}" for n in names)
    return (
        f"ROWS FROM (json_to_recordset(%({param})s::json) AS ({typed})) "
        f"WITH ORDINALITY AS x({', '.join(names)}, n)"
    )


# history rows up to this many go in as plain parameters; more as one JSON array
PLAIN_HISTORY = 3
# their parameters' names, by row: h0_instance_id, h0_at, ...
PLAIN_HISTORY_KEYS = [tuple(f"h{i}_{c}" for c in HISTORY_COLUMNS) for i in range(PLAIN_HISTORY)]


class PgCommit:
    """A commit on PostgreSQL as one statement, of one shape per kind of commit:

    - the row: inserted, updated in full, or updated in data, state and version only
      ("progress", which leaves every indexed column alone, so the update can be HOT);
    - the wait rows: kept, cleared, or replaced by new ones (one JSON array, which the server
      turns back into rows in order);
    - the history rows: up to `PLAIN_HISTORY` as plain parameters, more as one JSON array;
    - whether schedulers are told the instance falls due (NOTIFY).

    A shape's text is fixed whatever the values, so each is prepared once per connection; a
    commit carries no part it does not need (an empty JSON array still costs the server a
    function scan and the client a dump)."""

    def __init__(self, instances: str, waits: str, history: str, outbox: str, people: str) -> None:
        self.instances, self.waits, self.history = instances, waits, history
        self.outbox, self.people = outbox, people
        # (row, waits, notified, history rows: a count, or -1 for JSON, outbox rows,
        # participants: (any rows, deciders replaced)) -> SQL, as bytes when it is ASCII (psycopg
        # would encode the text at every execute, and hash it anew to find its parsed form)
        self.shapes: dict[tuple[str, str, bool, int, bool, tuple[bool, bool]], str | bytes] = {}

    def sql(
        self,
        row: str,
        waits: str,
        notified: bool,
        history: int,
        outbox: bool = False,
        people: tuple[bool, bool] = (False, False),
    ) -> str | bytes:
        key = (row, waits, notified, history, outbox, people)
        found = self.shapes.get(key)
        if found is None:
            text = self._shape(*key)
            # ASCII is the same bytes in every client encoding PostgreSQL has
            found = self.shapes[key] = text.encode("ascii") if text.isascii() else text
        return found

    def _shape(
        self,
        row: str,
        waits: str,
        notified: bool,
        history: int,
        outbox: bool,
        people: tuple[bool, bool],
    ) -> str:
        cols = ("id", *INSTANCE_COLUMNS)
        if row == "insert":
            head = (
                f"INSERT INTO {self.instances} ({', '.join(cols)}) "
                f"VALUES ({', '.join(f'%({c})s' for c in cols)}) RETURNING id"
            )
        else:
            written = PROGRESS_COLUMNS if row == "progress" else CHANGING_COLUMNS
            head = (
                f"UPDATE {self.instances} SET {', '.join(f'{c} = %({c})s' for c in written)} "
                "WHERE id = %(b_id)s AND version = %(b_expected)s RETURNING id"
            )
        # k holds the row's id when the write happened, no row when the version check
        # failed: every other part joins k, so a failed check writes nothing at all
        ctes = [f"k AS ({head})"]
        if waits != "keep" and row != "insert":
            ctes.append(f"d AS (DELETE FROM {self.waits} WHERE instance_id IN (SELECT id FROM k))")
        if waits == "replace":
            w_cols = WAIT_COLUMNS[1:]
            ctes.append(
                f"w AS (INSERT INTO {self.waits} ({', '.join(WAIT_COLUMNS)}) "
                f"SELECT k.id, {', '.join('x.' + c for c in w_cols)} "
                f"FROM k, {_recordset('w_rows', w_cols, _WAIT_TYPES)} ORDER BY x.n)"
            )
        h_cols = HISTORY_COLUMNS[1:]
        into = f"INSERT INTO {self.history} ({', '.join(HISTORY_COLUMNS)})"
        if history < 0:
            ctes.append(
                f"h AS ({into} SELECT k.id, {', '.join('x.' + c for c in h_cols)} "
                f"FROM k, {_recordset('h_rows', h_cols, _HISTORY_TYPES)} ORDER BY x.n)"
            )
        elif history == 1:
            plain = ", ".join(f"%(h0_{c})s" for c in h_cols)
            ctes.append(f"h AS ({into} SELECT k.id, {plain} FROM k)")
        elif history > 1:
            # typed like the columns, as the branches of a UNION are not typed by the INSERT
            rows = " UNION ALL ".join(
                f"SELECT {i} AS n, "
                + ", ".join(f"%(h{i}_{c})s::{_HISTORY_TYPES.get(c, 'text')} AS {c}" for c in h_cols)
                for i in range(history)
            )
            ctes.append(
                f"h AS ({into} SELECT k.id, {', '.join('x.' + c for c in h_cols)} "
                f"FROM k, ({rows}) AS x ORDER BY x.n)"
            )
        if outbox:
            o_cols = OUTBOX_COLUMNS
            ctes.append(
                f"o AS (INSERT INTO {self.outbox} ({', '.join(o_cols)}) "
                f"SELECT {', '.join('x.' + c for c in o_cols)} "
                f"FROM k, {_recordset('o_rows', o_cols, _OUTBOX_TYPES)} ORDER BY x.n "
                "ON CONFLICT (id) DO NOTHING)"
            )
        rows_of = "json_to_recordset(%(p_rows)s::json) AS x(role text, person text)"
        people_written, deciders = people
        if deciders:
            # every CTE reads one snapshot: a row deleted here would still block its own
            # insert below, so the rows still named are kept rather than deleted and inserted
            kept = (
                f" AND NOT EXISTS (SELECT 1 FROM {rows_of} "
                "WHERE x.role = p.role AND x.person = p.person)"
                if people_written
                else ""
            )
            ctes.append(
                f"pd AS (DELETE FROM {self.people} p WHERE p.instance_id IN (SELECT id FROM k) "
                f"AND p.role <> '{ACTED}'{kept})"
            )
        if people_written:
            ctes.append(
                f"pi AS (INSERT INTO {self.people} (instance_id, role, person) "
                f"SELECT k.id, x.role, x.person FROM k, {rows_of} ON CONFLICT DO NOTHING)"
            )
        done = "SELECT (SELECT count(*) FROM k)"
        if notified:
            # tells the schedulers LISTENing on DUE_CHANNEL that the instance is due at a new
            # time (sent when the statement commits, and only if it wrote); a commit that
            # leaves nothing due goes without it, as the part costs even when it sends nothing
            ctes.append(f"n AS (SELECT pg_notify('{DUE_CHANNEL}', %(notify)s) FROM k)")
            done += ", (SELECT count(*) FROM n)"
        return f"WITH {', '.join(ctes)} {done}"
