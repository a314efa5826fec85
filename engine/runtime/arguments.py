"""The checks the engine's calls make of their arguments before anything is read or written:
text a database can store, names of people, an event's payload, ids, searches, delegations.
Bad input is refused here with `InvalidData` (or `EventRejected`), naming the argument."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from signoff.engine.core.authority import check_actor, name_problem
from signoff.engine.core.finite import finite_problem
from signoff.engine.core.limits import MAX_JSON_BYTES, json_problem, plain_json, text_problem
from signoff.engine.errors import EventRejected, InvalidData
from signoff.engine.storage.delegations import Delegate

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")  # always fullmatch: `$` lets "\n" in
MAX_PAYLOAD_BYTES = MAX_JSON_BYTES
MAX_SEARCH = 200
MAX_DELEGATION = timedelta(days=366)


def error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def brief(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'data'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)


def checked_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    if payload is None:
        return {}
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise EventRejected("an event's payload must be a JSON object")
    checked = dict(payload)
    # plain JSON, as nearly every payload is, holds no number that is not finite and encodes:
    # one encoding answers both and is the one measured; anything else is looked at in full
    encoded = plain_json(checked)
    if encoded is None:
        problem = finite_problem(checked, "the payload")
        if problem:
            raise InvalidData(problem)
    problem = json_problem(checked, "the payload", encoded=encoded)
    if problem:
        raise EventRejected(problem)
    if encoded is None:
        try:
            json.dumps(checked, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise EventRejected(f"the payload is not JSON: {exc}") from None
    return checked


def check_text(**values: Any) -> None:
    """Refuse text arguments a database cannot store, naming the argument, and an `actor` or
    `user` that cannot be a person's name (a group, empty, control characters)."""
    for name, value in values.items():
        if name in ("actor", "user"):
            check_actor(value)
        if isinstance(value, str):
            problem = text_problem(value, name.replace("_", " "))
            if problem:
                raise InvalidData(problem)


def checked_delegates(
    delegates: Mapping[str, tuple[str, datetime]], now: datetime | None = None
) -> dict[str, Delegate]:
    """Delegations as given, checked: names of people, never oneself, aware times (in the
    future, when `now` is given)."""
    checked: dict[str, Delegate] = {}
    for user, given in delegates.items():
        if not (isinstance(given, tuple) and len(given) == 2):
            raise InvalidData('a delegation is (to, until), e.g. {"alice": ("erin", until)}')
        to, until = given
        check_actor(user)
        check_actor(to)
        if to == user:
            raise InvalidData(f"{user} cannot delegate to themselves")
        if not isinstance(until, datetime) or until.tzinfo is None:
            raise InvalidData("a delegation's end (until) must be an aware datetime")
        if now is not None and until <= now:
            raise InvalidData("a delegation's end (until) must be in the future")
        if now is not None and until > now + MAX_DELEGATION:
            raise InvalidData(f"a delegation lasts at most {MAX_DELEGATION.days} days")
        checked[user] = (to, until.astimezone(UTC))
    return checked


def checked_groups(user: str, groups: Iterable[str]) -> list[str]:
    """The group names `user` is to be a member of, as a list; refused unless each is a name."""
    if isinstance(groups, str):
        raise TypeError('groups is a list of group names, e.g. ["finance"]')
    names = list(groups)
    problem = name_problem(user) or next(
        (p for g in names if (p := name_problem(g, f"the group name {g!r}"))), None
    )
    if problem:
        raise InvalidData(problem)
    return names
