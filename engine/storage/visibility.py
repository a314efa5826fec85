"""Who sees which instance, as SQL: the one place the rule is written for the database.

A named actor sees an instance when one of their identities (user name, Slack id, `group:NAME`)
started it, decided or voted on one of its waits, filled in one of its forms (the history's
actors), or may decide one of its open waits now (an approval naming them, or naming nobody; a
form, which anyone may fill in). Lists, counts and searches show exactly those. One instance
asked for by id (`can_see`) is shown also to those an approval of it asked once (the history's
"waiting" entries name them): the request they were sent, by Slack, mail or link, still opens
and tells them how it ended. Operators and viewers see everything: the caller does not ask then
(`Authority.sees_all`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
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


def visible_clause(
    prefix: str, mark: str, count: int, id_column: str = "id", escape: str = ESCAPE
) -> str:
    """SQL text true for the instances that `count` identities see (parameters: `visible_params`
    of those identities, in order); `prefix` is the tables' quoted schema and a dot, if any;
    `escape` says LIKE's escape is backslash (`ESCAPE`, or `MYSQL_ESCAPE` there)."""
    names = ", ".join([mark] * count)
    seen_by = ", ".join(f"'{kind}'" for kind in SEEN_BY)
    decided = ", ".join(f"'{kind}'" for kind in DECIDED_BY_PEOPLE)
    named = " OR ".join([f"w.approvers LIKE {mark}{escape}"] * count)
    return (
        f"({id_column} IN (SELECT h.instance_id FROM {prefix}signoff_history h "
        f"WHERE h.actor IN ({names}) AND h.kind IN ({seen_by})) "
        f"OR {id_column} IN (SELECT w.instance_id FROM {prefix}signoff_waits w "
        f"WHERE w.kind IN ({decided}) AND (w.approvers IS NULL OR {named})))"
    )


def visible_params(identities: Collection[str]) -> list[Any]:
    return [*sorted(identities), *_approver_patterns(identities)]


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
