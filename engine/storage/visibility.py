"""Who sees which instance, as SQL: the one place the rule is written for the database.

A named actor sees an instance when one of their identities (user name, Slack id, `group:NAME`)
started it, decided or voted on one of its waits, filled in one of its forms (the history's
actors), or may decide one of its open waits now (an approval naming them, or naming nobody; a
form, which anyone may fill in). Lists, counts and searches show exactly those. One instance
asked for by id (`can_see`) is shown also to those an approval of it asked once (the history's
"waiting" entries name them): the request they were sent, by Slack, mail or link, still opens
and tells them how it ended. Operators and viewers see everything: the caller does not ask then
(`Authority.sees_all`).

Lists and counts read the rule from the participants table (`tables.PARTICIPANTS`, kept by
each commit from the rows it writes, `participants`): one index range per identity, whatever
the number of instances; `can_see` reads one instance's own rows.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from signoff.engine.storage.tables import HISTORY, WAITS
from sqlalchemy import literal, or_, select

# the history entries whose actor keeps sight of the instance
SEEN_BY = ("started", "decision", "vote", "event")
# open cases that show the instance to whoever may decide them
DECIDED_BY_PEOPLE = ("approval", "input")


def like_escaped(text: str) -> str:
    """`text` for a LIKE pattern with backslash as the escape character."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _approver_patterns(identities: Collection[str]) -> list[str]:
    # the approvers column holds a JSON list of names: a name is there as its JSON string
    return [f"%{like_escaped(json.dumps(name))}%" for name in sorted(identities)]


# LIKE's escape clause for backslash: MariaDB/MySQL read a backslash in a literal as an escape
# of its own (so '\' would not end there), and escape with backslash by default
ESCAPE = " ESCAPE '\\'"
MYSQL_ESCAPE = ""

# the participants' roles (tables.PARTICIPANTS): took part through a history entry of SEEN_BY;
# named by an open case of DECIDED_BY_PEOPLE (the role is its kind; "" names nobody: anyone)
ACTED = "acted"
ANYONE = ""
MAX_PERSON = 250  # the column's size: `group:` and a name of 200 characters fit


def participants(
    history: Iterable[tuple[str, str | None]], waits: Iterable[tuple[str, list[str] | None]]
) -> list[tuple[str, str]]:
    """The (role, person) rows of one instance for its history entries (kind, actor) and its
    open cases (kind, approvers), each once."""
    found = {(ACTED, actor) for kind, actor in history if actor and kind in SEEN_BY}
    for kind, approvers in waits:
        if kind not in DECIDED_BY_PEOPLE:
            continue
        if approvers is None:
            found.add((kind, ANYONE))
            continue
        # a name no identity can be (empty, longer than `group:` and 200 characters, holding
        # NUL) shows the instance to nobody, as it did when the approvers were matched as text
        found.update((kind, name) for name in approvers if _may_be_someone(name))
    return sorted(found)


def _may_be_someone(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_PERSON and "\x00" not in name


def visible_clause(prefix: str, mark: str, count: int, id_column: str = "id") -> str:
    """SQL text true for the instances that `count` identities see (parameters: `visible_params`
    of those identities, in order); `prefix` is the tables' quoted schema and a dot, if any.
    One index range of the participants per identity, and the cases that name nobody."""
    names = ", ".join([mark] * count)
    return (
        f"{id_column} IN (SELECT p.instance_id FROM {prefix}signoff_participants p "
        f"WHERE p.person IN ({names}, '{ANYONE}'))"
    )


def visible_params(identities: Collection[str]) -> list[Any]:
    return sorted(identities)


def can_see(db: Any, instance_id: str, identities: Sequence[str]) -> bool:
    """Whether these identities see the instance (see the module's rule)."""
    h, w = HISTORY.c, WAITS.c
    involved = (
        select(literal(1))
        .where(h.instance_id == instance_id, h.actor.in_(identities), h.kind.in_(SEEN_BY))
        .limit(1)
    )
    asked = (
        select(literal(1))
        .where(
            w.instance_id == instance_id,
            w.kind.in_(DECIDED_BY_PEOPLE),
            or_(
                w.approvers.is_(None),
                *(w.approvers.like(p, escape="\\") for p in _approver_patterns(identities)),
            ),
        )
        .limit(1)
    )
    was_asked = select(h.detail).where(
        h.instance_id == instance_id,
        h.kind.in_(("waiting", "reassigned")),  # asked when the wait began, or handed a part
        h.detail.like('%"asked"%'),
    )
    with db.connect() as conn:
        if conn.execute(involved).first() is not None or conn.execute(asked).first() is not None:
            return True
        names = set(identities)
        return any(
            names & set(json.loads(detail).get("asked", ()))
            for (detail,) in conn.execute(was_asked)
        )
