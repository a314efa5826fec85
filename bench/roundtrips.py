"""What one approval workflow (start, a step, a wait, the decision, a step, the end) sends
PostgreSQL: each round trip, what it writes, and which are commits, beside the floor's.

Run: `.venv/bin/python bench/roundtrips.py`. Every call psycopg is handed is noted (execute,
executemany, commit, rollback): signoff's hot path runs on DB-API connections of its own in
autocommit mode, which SQLAlchemy's `before_cursor_execute` event never sees, so the count is
taken at the driver. A statement on an autocommit connection is its own transaction: a commit
when it writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT.parent))  # the checkout is the `signoff` package
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from signoff.engine.storage.pgsend import PreparedSender  # noqa: E402

from bench.scale import Signoff, drop, scratch  # noqa: E402
from bench.scale_flows import Expense  # noqa: E402

FLOOR = [
    "start: BEGIN; INSERT row; INSERT history; COMMIT (pipelined: 1 round trip)",
    "step + wait: BEGIN; UPDATE row; INSERT wait; INSERT history; COMMIT (1)",
    "resume read: SELECT row (1)",
    "decision: BEGIN; UPDATE row; DELETE wait; INSERT history; COMMIT (1)",
    "step + end: BEGIN; UPDATE row; INSERT history; COMMIT (1)",
]


def shape(sql: str, params: Any) -> str:
    """What a statement does, in a few words."""
    sql = " ".join(sql.split())
    parts = []
    for verb, table in re.findall(r"\b(INSERT INTO|UPDATE|DELETE FROM|FROM) (\w+)", sql):
        if verb == "FROM" and not sql.startswith("SELECT"):
            continue
        name = table.removeprefix("signoff_")
        parts.append(f"{verb.split()[0]} {name}")
    history = len({k.split("_")[0] for k in (params or {}) if re.fullmatch(r"h\d+_at", k)})
    if "h_rows" in (params or {}):
        history = -1
    text = ", ".join(dict.fromkeys(parts))
    if history:
        text += f" ({history if history > 0 else 'n'} history rows)"
    if "pg_notify" in sql and "notify" in (params or {}):
        text += ", NOTIFY"
    return text


def main() -> None:
    name = "signoff_bench_roundtrips"
    url = scratch(name)
    ours = Signoff(url, 1, 1)
    noted: list[tuple[str, str]] = []
    cursor, connection = psycopg.Cursor, psycopg.Connection
    originals: dict[tuple[Any, str], Any] = {
        (cursor, "execute"): cursor.execute,
        (cursor, "executemany"): cursor.executemany,
        (connection, "commit"): connection.commit,
        (connection, "rollback"): connection.rollback,
        # a commit's statement goes as a prepared statement of signoff's, past the cursor
        (PreparedSender, "first_value"): PreparedSender.first_value,
    }

    def noting(owner: Any, what: str) -> Any:
        original = originals[owner, what]

        def call(this: Any, *args: Any, **kw: Any) -> Any:
            if what == "first_value":  # (conn, sql, params)
                sql = args[1].decode() if isinstance(args[1], bytes) else args[1]
                noted.append(("prepared", shape(sql, args[2])))
            elif what in ("execute", "executemany"):
                noted.append((what, shape(str(args[0]), args[1] if len(args) > 1 else None)))
            else:
                noted.append((what, ""))
            return original(this, *args, **kw)

        return call

    for (owner, what), _ in originals.items():
        setattr(owner, what, noting(owner, what))
    try:
        iid = ours.engine.start(Expense, {"amount": 12})
        first = len(noted)
        ours.engine.send(iid, "decided", {"approved": True}, actor="alice")
    finally:
        for (owner, what), original in originals.items():
            setattr(owner, what, original)
        ours.engine.close()
        drop(name)
    print("signoff, one approval workflow on PostgreSQL (each line one round trip):")
    for n, (what, text) in enumerate(noted, 1):
        where = "start" if n <= first else "send"
        print(f"  {n}. [{where}] {what}: {text}")
    writes = sum(1 for _, text in noted if "UPDATE" in text or "INSERT" in text)
    print(f"  {len(noted)} round trips, {writes} commits (autocommit statements that write)")
    print("the floor (psycopg by hand, bench/scale.py):")
    for line in FLOOR:
        print(f"  {line}")
    print("  5 round trips, 4 commits")


if __name__ == "__main__":
    main()
