"""Reading what an instance row stores: its state and its data, as signoff wrote them.

A row that does not hold what signoff wrote (a hand edit, a bad restore, a truncated write by
some other tool) raises `CorruptState` naming the instance, so one bad row harms one instance:
callers that list many instances catch it and go on. A valid row costs what parsing it always
cost: the check is the parse itself, and only a failure is looked at more closely.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from signoff.engine.core.state import InstanceState
from signoff.engine.errors import CorruptState

REASON_CHARS = 200  # the reason shown is the parser's first complaint, cut to this length

# a failure of the whole document, rather than of one field in it
_WHOLE = ("json_invalid", "model_type", "dict_type")


def read_state(instance_id: str, text: str) -> InstanceState:
    """The stored state of an instance; `CorruptState` when it cannot be read."""
    try:
        return InstanceState.model_validate_json(text)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise CorruptState(instance_id, unreadable("state", exc)) from None


def read_data(instance_id: str, text: str) -> dict[str, Any]:
    """The stored data of an instance as plain JSON; `CorruptState` unless it is an object.
    The one judge of data: `Working.workflow` asks it why a model refused the data."""
    try:
        found = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptState(instance_id, unreadable("data", exc)) from None
    if not isinstance(found, dict):
        kind = "an array" if isinstance(found, list) else f"a JSON {type(found).__name__}"
        raise CorruptState(instance_id, f"stored data unreadable: {kind}, not an object")
    return found


def peek_state(instance_id: str, text: str) -> dict[str, Any]:
    """The stored state as plain JSON, for a quick look that needs no model (an outcome in a
    list); `CorruptState`, for the reason `read_state` gives, unless it is an object."""
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        found = None
    if not isinstance(found, dict):
        read_state(instance_id, text)  # raises, saying why as everywhere else
        raise CorruptState(instance_id, "stored state unreadable: not a JSON object")
    return found


def data_unreadable(instance_id: str, text: str, exc: BaseException) -> CorruptState | None:
    """When building a workflow model from the stored data `text` raised `exc`, refusing the
    data as a whole, and `read_data` cannot read it either (not JSON, not an object): the
    `CorruptState` to raise, saying why as `read_data` says it. None for anything else, such
    as data with a field that no longer fits the model (a deployment's affair, reported where
    the definition is built)."""
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors()
    if not (errors and errors[0]["loc"] == () and errors[0]["type"] in _WHOLE):
        return None
    try:
        read_data(instance_id, text)
    except CorruptState as corrupt:
        return corrupt
    return None  # Python reads it (pydantic's parser is stricter): left to the definition


def unreadable(what: str, exc: BaseException) -> str:
    """The error an instance shows: "stored <what> unreadable: <the first complaint>"."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = f"{where}: {first['msg']}" if where else str(first["msg"])
        if exc.error_count() > 1:
            reason += f" (and {exc.error_count() - 1} more)"
    elif isinstance(exc, json.JSONDecodeError):
        reason = f"not JSON ({exc})"
    elif isinstance(exc, RecursionError):
        reason = "nested too deeply"
    else:
        reason = str(exc) or type(exc).__name__
    return f"stored {what} unreadable: {reason[:REASON_CHARS]}"
