"""Only finite numbers: where a value holds NaN, Infinity or -Infinity.

JSON has no such numbers. Python's `json` reads and writes them anyway, and pydantic writes
them as null, so one that got in would be stored as a literal no strict reader accepts, or as
a null the workflow's own model then refuses. They are refused where they come in (start
data, payloads, `Input` forms) and looked for after every step.

The look after a step is meant to cost next to nothing: `Workflow` writes its data with NaN
and Infinity as bare literals (`ser_json_inf_nan="constants"`), so a substring test on the JSON
about to be stored finds every candidate; only then is the value walked to name the field (a
text that merely contains "NaN" is cleared by the walk). A model nested in the data writes
with its own settings, which may turn the number into null: a workflow whose fields hold such
models has its data walked after every step instead.
"""

from __future__ import annotations

import dataclasses
import json
import math
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

Found = tuple[str, float | Decimal]
"""Where a number that is not finite sits (`items[2].price`; "" for the value itself) and it."""


def nonfinite_at(value: Any) -> Found | None:
    """The first NaN or ±Infinity in `value` and the path to it, or None.

    Walks dicts, lists, tuples, sets, pydantic models (their fields and extras) and dataclasses,
    with an explicit stack (a value nested a thousand deep must not crash the walk)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return path, item
        elif isinstance(item, str | int | bool) or item is None:
            continue
        elif isinstance(item, dict):
            stack.extend((v, _key(path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, BaseModel):
            fields = dict(item.__dict__)
            fields.update(item.__pydantic_extra__ or {})
            stack.extend((v, _key(path, k)) for k, v in reversed(fields.items()))
        elif isinstance(item, Decimal):
            if not item.is_finite():
                return path, item
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(
                (getattr(item, f.name), _key(path, f.name))
                for f in reversed(dataclasses.fields(item))
            )
    return None


def nonfinite_text(found: Found) -> str:
    """ "a value that is not a finite number in field 'ratio' (inf)", to end a sentence."""
    path, number = found
    where = f" in field '{path}'" if path else ""
    return f"a value that is not a finite number{where} ({number})"


def finite_problem(value: Any, what: str) -> str | None:
    """Why `value` (start data, a payload, a request body) is refused for a number that is not
    finite, naming the field; or None."""
    found = nonfinite_at(value)
    return None if found is None else f"{what} has {nonfinite_text(found)}"


def stored_nonfinite(model: BaseModel, data_json: str) -> Found | None:
    """The NaN or ±Infinity in `model`, whose data is about to be stored as `data_json` (its
    `model_dump_json()`), or None. Cheap when there is none, which is always but once."""
    if "NaN" in data_json or "Infinity" in data_json:
        found = nonfinite_at(json.loads(data_json))  # what would be stored, as stored
        if found is not None:
            return found
    if _writes_null(type(model)):
        return nonfinite_at(model)
    return None


# per class, worked out once (a plain dict: its lookup is part of every step's cost)
_WRITES_NULL: dict[type[BaseModel], bool] = {}


def _writes_null(cls: type[BaseModel]) -> bool:
    """Whether `cls` may write a number that is not finite as null: it does not write them as
    literals itself, or its fields hold models of other classes that do not (each model writes
    with its own settings). Worked out once per class, from its schema."""
    known = _WRITES_NULL.get(cls)
    if known is None:
        schema = getattr(cls, "__pydantic_core_schema__", None)
        known = (
            not _literal(cls)
            or not isinstance(schema, dict)  # not built yet: look at every value
            or any(not _literal(inner) for inner in _models_in(schema))
        )
        _WRITES_NULL[cls] = known
    return known


def _literal(cls: type[BaseModel]) -> bool:
    return cls.model_config.get("ser_json_inf_nan") == "constants"


def _models_in(schema: Any) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            cls = node.get("cls")
            if node.get("type") == "model" and isinstance(cls, type):
                found.add(cls)
            stack.extend(v for k, v in node.items() if k != "cls")
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return found


def _key(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
