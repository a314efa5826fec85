"""Read-only questions about where instances stand, for dashboards: which approvals are open
(with their instance's workflow), and how many instances sit on each statement.

Reads the store's tables; writes nothing. Kept beside `store.py` so the store stays the one
module that writes, and these heavier reporting queries stay out of the transition path.
"""

from __future__ import annotations

import json
import logging
import operator
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from signoff.engine.core.records import Stored
from signoff.engine.core.stored import read_state
from signoff.engine.errors import CorruptState
from signoff.engine.storage.search import search_terms
from signoff.engine.storage.store import Store
from signoff.engine.storage.tables import INSTANCES, PARTICIPANTS, WAITS
from signoff.engine.storage.visibility import ANYONE
from sqlalchemy import (
    ColumnElement,
    Connection,
    Exists,
    Float,
    Select,
    Subquery,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

LIVE_NOT_WAITING = ("running", "failed")
log = logging.getLogger("signoff.engine.storage")


# What every listing of open approvals reads of a wait row and its instance.
_APPROVAL_COLUMNS = (
    WAITS.c.instance_id,
    INSTANCES.c.workflow,
    WAITS.c.thread,
    WAITS.c.wait,
    WAITS.c.event,
    WAITS.c.began_at,
    WAITS.c.due_at,
    WAITS.c.approvers,
    WAITS.c.title,
    WAITS.c.wait_key.label("key"),
    WAITS.c.id.label("cursor"),
)


def open_approvals(
    store: Store,
    limit: int = 200,
    *,
    after: tuple[datetime, int] | None = None,
    instance_id: str | None = None,
) -> list[dict[str, Any]]:
    """Open Approval cases, oldest first, each with its instance's workflow; after the keyset
    cursor `after` (a row's began_at and cursor), of one instance if `instance_id` is given.

    Keys: instance_id, workflow, thread, wait, event, began_at, due_at, approvers (list or None,
    already widened by escalation), title, key: the wait's `WaitView.key`, for
    `Engine.send(..., wait_key=)`, and cursor: what orders rows that began at the same moment.
    """
    w, i = WAITS.c, INSTANCES.c
    query = (
        select(*_APPROVAL_COLUMNS)
        .join(INSTANCES, i.id == w.instance_id)
        .where(w.kind == "approval")
        .order_by(w.began_at, w.id)
        .limit(limit)
    )
    if after is not None:
        at, last = after
        # the bound on began_at alone is where an index scan starts (see narrowing.ORDERS)
        query = query.where(w.began_at >= at, or_(w.began_at > at, w.id > last))
    if instance_id is not None:
        query = query.where(w.instance_id == instance_id)
    with store.db.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["approvers"] = json.loads(row["approvers"]) if row["approvers"] else None
        row["key"] = row["key"] or ""
    return rows


def _inbox_filter(
    store: Store,
    identities: Collection[str] | None,
    workflow: str | None,
    search: str | None,
    participants: bool = True,
) -> list[ColumnElement[bool]]:
    """Open approvals that name one of `identities` among their approvers (as stored: widened
    once an escalation fired), or name nobody (anyone may decide); of `workflow`; matching
    `search` as the instances list matches it, or in the request's title. `participants`:
    also as the participants rows say it (the set of their instances, which the database
    can start from), unless the caller tests that row by row."""
    w, i = WAITS.c, INSTANCES.c
    where: list[ColumnElement[bool]] = [w.kind == "approval"]
    if identities is not None:
        named = [
            w.approvers.like(f"%{_like(json.dumps(name))}%", escape="\\")
            for name in sorted(identities)
        ]
        where.append(or_(w.approvers.is_(None), *named))
        if participants:  # the same test as one index range per name, to start from
            where.append(w.instance_id.in_(_asked(identities)))
    if workflow:  # the wait row's copy: one index range, in the page's order
        where.append(w.workflow == workflow)
    if search:
        alternatives: list[ColumnElement[bool]] = []
        for kind, params in search_terms(search, store.is_sqlite):
            compared = _compared(kind, params, store.is_sqlite, store.is_mysql)
            if compared is not None:
                alternatives.append(compared)
            elif kind == "id" and store.is_sqlite:
                alternatives.append(and_(w.instance_id >= params[0], w.instance_id < params[1]))
            elif kind == "id":
                alternatives.append(w.instance_id.like(params[0], escape="\\"))
            elif kind == "field":
                alternatives += [i.data.like(p, escape="\\") for p in params if p]
            else:
                alternatives += [
                    i.data.like(params[0], escape="\\"),
                    w.title.like(params[0], escape="\\"),
                ]
        where.append(or_(*alternatives) if alternatives else literal(False))
    return where


def _few(conn: Connection, identities: Collection[str], few: int) -> bool:
    """Whether `identities` are asked in fewer than `few` instances (a twentieth of the
    window: a page of theirs is then unlikely in it): their inbox is then read from those at
    once (after a count of at most `few` index entries), not looked for in the window first."""
    if few <= 0:
        return False
    asked = _asked(identities).limit(few).subquery()
    return int(conn.execute(select(func.count()).select_from(asked)).scalar() or 0) < few


def _asks(instance_id: ColumnElement[str], identities: Collection[str]) -> Exists:
    """Whether the instance has an open approval that names one of `identities`, or nobody:
    `_asked` as a probe of the participants' index for one instance."""
    p = PARTICIPANTS.c
    return exists().where(
        p.person.in_([*sorted(identities), ANYONE]),
        p.role == "approval",
        p.instance_id == instance_id,
    )


def _asked(identities: Collection[str]) -> Select[tuple[str]]:
    """The instances with an open approval that names one of `identities`, or nobody."""
    return select(PARTICIPANTS.c.instance_id).where(
        PARTICIPANTS.c.person.in_([*sorted(identities), ANYONE]),
        PARTICIPANTS.c.role == "approval",
    )


def change_mark(store: Store) -> str:
    """A token that changes whenever an instance commits or its waits change, read from the
    database (so a change made by any process shows): the latest change time of any instance
    and the newest wait row. Two index lookups: cheap enough to ask every second."""
    i, w = INSTANCES.c, WAITS.c
    with store.db.connect() as conn:
        changed = conn.execute(select(func.max(i.updated_at))).scalar()
        waits = conn.execute(select(func.max(w.id))).scalar()
    return f"{changed.isoformat() if changed is not None else '-'}|{waits or 0}"


def _compared(
    kind: str, params: list[Any], sqlite: bool, mysql: bool = False
) -> ColumnElement[bool] | None:
    """A comparison term of `search_terms` (`amount>200`, `started<2026-12-01`) as SQLAlchemy,
    the same test `search.compare_sql` writes for the instances list; None for other kinds."""
    i = INSTANCES.c
    for op in ("<=", ">=", "<", ">"):
        if kind.endswith(op):
            column = kind[: -len(op)]
            break
    else:
        return None
    compare = {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }[op]
    if column in ("created_at", "updated_at"):
        value = params[0]
        if isinstance(value, str):  # SQLite's stored text: back to a datetime for the column
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        else:
            value = value.replace(tzinfo=UTC)
        return compare(getattr(i, column), value)  # type: ignore[no-any-return]
    found: ColumnElement[Any]
    if sqlite:
        path, _, number = params
        found = case(
            (
                func.json_valid(i.data) == 1,
                case(
                    (
                        func.json_type(i.data, path).in_(["integer", "real"]),
                        func.json_extract(i.data, path),
                    )
                ),
            )
        )
    elif mysql:  # the whole match, `"name":12.5,`: the number follows its last colon
        pattern, number = params
        matched = func.nullif(func.regexp_substr(i.data, pattern), "")
        found = cast(func.substring_index(matched, ":", -1), Float)
    else:
        pattern, number = params
        found = cast(func.substring(i.data, pattern), Float)
    return compare(found, number)  # type: ignore[no-any-return]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# How many open approvals, oldest first, a page of one person's inbox is first looked for among
# (`_inbox_page`): as `pager.WINDOW` for the instances list
INBOX_WINDOW = 20_000


def inbox(
    store: Store,
    identities: Collection[str] | None,
    *,
    workflow: str | None = None,
    search: str | None = None,
    limit: int = 50,
    offset: int = 0,
    window: int | None = None,
) -> list[dict[str, Any]]:
    """One page of the open approvals `_inbox_filter` picks, oldest first: the keys of
    `open_approvals`, plus `deadline` (when a timeout of the same wait fires: the decision's
    deadline, not its next reminder), `version` of the instance, its `data` and `state` (JSON
    text). The page's wait rows are picked first (`_inbox_page`, among the next `window`
    open approvals first: INBOX_WINDOW unless given); only their instances are read."""
    w, i = WAITS.c, INSTANCES.c
    timeouts = WAITS.alias("timeouts")
    deadline = (
        select(func.min(timeouts.c.due_at))
        .where(
            timeouts.c.instance_id == w.instance_id,
            timeouts.c.thread == w.thread,
            timeouts.c.wait == w.wait,
            timeouts.c.kind == "timeout",
        )
        .scalar_subquery()
    )
    columns = (*_APPROVAL_COLUMNS, i.version, i.data, i.state, deadline.label("deadline"))
    with store.db.connect() as conn:
        near = window or INBOX_WINDOW
        page = _inbox_page(conn, store, identities, workflow, search, limit, offset, near)
        if isinstance(page, list):  # the ids, found in the window
            if not page:
                return []
            query = select(*columns).where(w.id.in_(page))
        else:  # the page's ids, as a table to join (LIMIT in an IN subquery: not on MariaDB)
            query = select(*columns).join(page, page.c.id == w.id)
        query = query.join(INSTANCES, i.id == w.instance_id).order_by(w.began_at, w.id)
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["approvers"] = json.loads(row["approvers"]) if row["approvers"] else None
        row["key"] = row["key"] or ""
    return rows


def _inbox_page(
    conn: Connection,
    store: Store,
    identities: Collection[str] | None,
    workflow: str | None,
    search: str | None,
    limit: int,
    offset: int,
    window: int,
) -> list[int] | Subquery:
    """The wait rows of one page of `inbox`: their ids, or the query of them. A person's page
    is looked for first among the next `window` open approvals, oldest first (walked in the
    index of their kind and time, which holds their id and instance: no row is read), kept
    when the person's participants name their instance; only those are read, and their ids
    returned when the page is all there: a whole page, or the window held every open
    approval. Else (a search, everyone's inbox, a person with few of the approvals) the query
    that picks them from all open approvals, without their instances unless the search needs
    them: the database starts from the person's participants then."""
    w = WAITS.c
    if identities is not None and not search and not _few(conn, identities, window // 20):
        kinds = [w.kind == "approval", *([w.workflow == workflow] if workflow else [])]
        ordered = select(w.began_at, w.id).where(*kinds).order_by(w.began_at, w.id)
        edge = conn.execute(ordered.offset(window - 1).limit(1)).first()
        # the window: the open approvals up to the `window`-th, walked in the index of their
        # kind and time and kept, row by row, when a participants row names one of them (an
        # index probe each), until the page is full. Written as `IN (their instances)`, the
        # database first gathered every instance they take part in: 100 ms for someone asked
        # in 60,000 of them, where the walk stops after a page's worth.
        bounded = (
            [w.began_at <= edge.began_at, or_(w.began_at < edge.began_at, w.id <= edge.id)]
            if edge is not None
            else []
        )
        query = (
            select(w.id)
            .where(*kinds, *bounded, _asks(w.instance_id, identities))
            .where(*_inbox_filter(store, identities, workflow, None, participants=False))
            .order_by(w.began_at, w.id)
            .limit(limit)
            .offset(offset)
        )
        found = [r[0] for r in conn.execute(query)]
        if len(found) >= limit or edge is None:
            return found
    query = select(w.id)
    if search:
        query = query.join(INSTANCES, INSTANCES.c.id == w.instance_id)
    return (
        query.where(*_inbox_filter(store, identities, workflow, search))
        .order_by(w.began_at, w.id)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )


def inbox_count(
    store: Store,
    identities: Collection[str] | None,
    *,
    workflow: str | None = None,
    search: str | None = None,
) -> int:
    """How many open approvals `inbox` would list over all its pages."""
    w, i = WAITS.c, INSTANCES.c
    query = select(func.count()).select_from(WAITS)
    if search:
        query = query.join(INSTANCES, i.id == w.instance_id)
    query = query.where(*_inbox_filter(store, identities, workflow, search))
    with store.db.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def load_many(store: Store, ids: Iterable[str]) -> dict[str, Stored]:
    """The stored rows of several instances, by id, in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    with store.db.connect() as conn:
        found = conn.execute(select(INSTANCES).where(INSTANCES.c.id.in_(wanted))).mappings()
        return {r["id"]: Stored(**r) for r in found}


# Threads that stand on a statement without waiting: running it, retrying it, failed or blocked
# in it. `ThreadState.status` defaults to "running"; a JSON state always spells it out, but the
# SQL reads a missing one the same way.
_STANDING = ("running", "retrying", "failed", "blocked")
_STANDING_SQL = ", ".join(f"'{s}'" for s in _STANDING)
_LIVE_SQL = ", ".join(f"'{s}'" for s in LIVE_NOT_WAITING)

# workflow, statement, threads: of at most :scan running or failed instances, inside the
# database (its JSON functions walk each state's $.threads), so Python parses no state
_STANDING_COUNTS = {
    "sqlite": f"""
        SELECT i.workflow, json_extract(t.value, '$.at') AS at, count(*)
        FROM (SELECT workflow, state FROM {{prefix}}signoff_instances
              WHERE status IN ({_LIVE_SQL}) LIMIT :scan) AS i,
             json_each(i.state, '$.threads') AS t
        WHERE coalesce(json_extract(t.value, '$.status'), 'running') IN ({_STANDING_SQL})
          AND coalesce(json_extract(t.value, '$.at'), '') <> ''
        GROUP BY i.workflow, at""",
    "postgresql": f"""
        SELECT i.workflow, t.value ->> 'at' AS at, count(*)
        FROM (SELECT workflow, state FROM {{prefix}}signoff_instances
              WHERE status IN ({_LIVE_SQL}) LIMIT :scan) AS i
        CROSS JOIN LATERAL jsonb_each(CAST(i.state AS jsonb) -> 'threads') AS t
        WHERE coalesce(t.value ->> 'status', 'running') IN ({_STANDING_SQL})
          AND coalesce(t.value ->> 'at', '') <> ''
        GROUP BY i.workflow, t.value ->> 'at'""",
    "mysql": f"""
        SELECT i.workflow, t.at, count(*)
        FROM (SELECT workflow, state FROM {{prefix}}signoff_instances
              WHERE status IN ({_LIVE_SQL}) LIMIT :scan) AS i,
             JSON_TABLE(i.state, '$.threads.*' COLUMNS (
                 at VARCHAR(1000) CHARACTER SET utf8mb4 PATH '$.at',
                 status VARCHAR(40) CHARACTER SET utf8mb4 PATH '$.status')) AS t
        WHERE coalesce(t.status, 'running') IN ({_STANDING_SQL})
          AND coalesce(t.at, '') <> ''
        GROUP BY i.workflow, t.at""",
}
_STANDING_COUNTS["mariadb"] = _STANDING_COUNTS["mysql"]


def statement_counts(store: Store, scan_limit: int = 5000) -> dict[str, dict[str, int]]:
    """workflow -> statement name -> how many instances stand there now.

    Waiting threads are counted from the open-wait table (one per instance and wait); threads
    of running or failed instances from their state (at most `scan_limit` instances), read by
    the database's JSON functions.
    """
    w, i = WAITS.c, INSTANCES.c
    counts: dict[str, Counter[str]] = {}
    with store.db.connect() as conn:
        for workflow, wait, n in conn.execute(
            select(i.workflow, w.wait, func.count(func.distinct(w.instance_id)))
            .join(INSTANCES, i.id == w.instance_id)
            .group_by(i.workflow, w.wait)
        ):
            counts.setdefault(workflow, Counter())[wait] += n
        standing: list[tuple[str, str, int]] | None = None
        sql = _STANDING_COUNTS.get(store.db.dialect.name)
        if sql is not None:
            query = text(sql.replace("{prefix}", store.prefix))
            try:
                standing = [(r[0], r[1], r[2]) for r in conn.execute(query, {"scan": scan_limit})]
            except DBAPIError:  # a stored state that is not JSON: count the others in Python
                conn.rollback()
        if standing is None:  # another database, or one state the database could not read
            standing = _standing_parsed(conn, scan_limit)
        for workflow, at, n in standing:
            counts.setdefault(workflow, Counter())[at] += n
    return {workflow: dict(c) for workflow, c in counts.items()}


def _standing_parsed(conn: Connection, scan_limit: int) -> list[tuple[str, str, int]]:
    """What `_STANDING_COUNTS` finds, from the states parsed here; a state that cannot be read
    is left out (with a warning): one bad row does not hide the others."""
    i = INSTANCES.c
    found: Counter[tuple[str, str]] = Counter()
    query = select(i.id, i.workflow, i.state).where(i.status.in_(LIVE_NOT_WAITING))
    for instance_id, workflow, state in conn.execute(query.limit(scan_limit)):
        try:
            threads = read_state(instance_id, state).threads.values()
        except CorruptState as exc:
            log.warning("%s; not counted", exc, extra={"instance_id": instance_id})
            continue
        for thread in threads:
            if thread.at and thread.status in _STANDING:
                found[(workflow, thread.at)] += 1
    return [(workflow, at, n) for (workflow, at), n in found.items()]


def ping(store: Store) -> None:
    """Raise unless the database answers."""
    with store.db.connect() as conn:
        conn.execute(select(1)).scalar()


def unfinished_page(
    store: Store, statuses: tuple[str, ...], after: str | None, limit: int
) -> list[tuple[str, str, str, str]]:
    """One keyset page of instances in `statuses`, by id, after the id `after`: (id, workflow,
    data, state) each. Paging by the primary key keeps every page one index range scan, so a
    caller walking all instances holds one page at a time."""
    i = INSTANCES.c
    query = (
        select(i.id, i.workflow, i.data, i.state)
        .where(i.status.in_(statuses))
        .order_by(i.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(i.id > after)
    with store.db.connect() as conn:
        return [(r[0], r[1], r[2], r[3]) for r in conn.execute(query)]


def unfinished_pages(
    store: Store, statuses: tuple[str, ...], page_size: int
) -> Iterator[list[tuple[str, str, str, str]]]:
    """Every `unfinished_page`, in order, each next one read (on one thread of its own) while
    the caller works on the one before: waiting for the server and the caller's work overlap,
    and at most two pages are held at once. SQLite reads in this process: one after another."""
    if store.is_sqlite:
        after: str | None = None
        while True:
            rows = unfinished_page(store, statuses, after, page_size)
            yield rows
            if len(rows) < page_size:
                return
            after = rows[-1][0]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-pages") as reader:
        coming = reader.submit(unfinished_page, store, statuses, None, page_size)
        while True:
            rows = coming.result()
            if len(rows) == page_size:
                coming = reader.submit(unfinished_page, store, statuses, rows[-1][0], page_size)
            yield rows
            if len(rows) < page_size:
                return


def parked_on(store: Store, workflow: str, statement: str, limit: int) -> list[str]:
    """Ids of unfinished instances of `workflow` with a thread positioned at `statement`, by id.

    Matches the position as the engine stores it in the state JSON (`"at":"<name>"`), so it
    needs no JSON functions and works on any database; at most `limit` ids."""
    needle = '"at":' + json.dumps(statement, separators=(",", ":"))
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    i = INSTANCES.c
    query = (
        select(i.id)
        .where(i.workflow == workflow)
        .where(i.status.in_(("running", "waiting", "failed")))
        .where(i.state.like(f"%{escaped}%", escape="\\"))
        .order_by(i.id)
        .limit(limit)
    )
    with store.db.connect() as conn:
        return [r[0] for r in conn.execute(query)]


def gauges(store: Store, now: datetime) -> dict[str, Any]:
    """What a metrics scrape shows from the database: instances by workflow and status, and
    the timers whose due time has passed but that are still open (nobody fired them yet),
    with how overdue the oldest is. Two GROUP BY/aggregate reads; callers cache them."""
    i, w = INSTANCES.c, WAITS.c
    with store.db.connect() as conn:
        by_status = {
            (workflow, status): int(n)
            for workflow, status, n in conn.execute(
                select(i.workflow, i.status, func.count()).group_by(i.workflow, i.status)
            )
        }
        overdue, oldest = conn.execute(
            select(func.count(), func.min(w.due_at)).where(w.due_at <= now)
        ).one()
    return {
        "instances": by_status,
        "timers_overdue": int(overdue or 0),
        "oldest_overdue_seconds": (now - oldest).total_seconds() if oldest else 0.0,
    }
