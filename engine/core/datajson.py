"""A workflow's data as the JSON an instance stores (`data_json`), made after every step.

Stored data must fit its fields: a value a step put where no validation saw it (a str appended
to a `list[int]`) is refused, not written as it is. pydantic does that when asked with
`warnings="error"`; but naming that mode costs pydantic more than encoding a small model does
(it parses the argument at every call). So the mode is named only where a value could fail to
fit: not when every field is a plain scalar (`assignment.plain_fields`), holding a value of
exactly its type, with no extra fields, no computed fields and no custom serializers; such a
model encodes the same either way, with nothing to warn about.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from signoff.engine.core.assignment import plain_fields

# per class, worked out once: its serializer (None when the class overrides `model_dump_json`,
# which is then called as such), and the fields whose values are looked at to leave the
# "error" mode out (None: never left out)
_HOW: dict[type[BaseModel], tuple[Any, dict[str, type] | None]] = {}


def data_json(model: BaseModel) -> str:
    """`model.model_dump_json(warnings="error")`: raises `PydanticSerializationError` for a
    value that does not fit its field, or that is no JSON at all."""
    cls = type(model)
    serializer, fields = _HOW.get(cls) or _how(cls)
    if serializer is None:
        return model.model_dump_json(warnings="error")
    warnings: Any = "error"
    if fields is not None and not model.__pydantic_extra__:
        for name, value in model.__dict__.items():
            if type(value) is not fields.get(name):
                break
        else:
            warnings = True  # nothing can warn: the cheaper call, the same JSON
    return serializer.to_json(model, warnings=warnings).decode()  # type: ignore[no-any-return]


def _how(cls: type[BaseModel]) -> tuple[Any, dict[str, type] | None]:
    own = cls.model_dump_json is BaseModel.model_dump_json
    serializer = cls.__pydantic_serializer__ if own else None
    if not cls.__pydantic_complete__:  # not built yet (a forward reference): ask again
        return None, None
    fields: dict[str, type] | None = plain_fields(cls)
    decorators = cls.__pydantic_decorators__
    if (
        not fields
        or set(fields) != set(cls.model_fields)
        or decorators.computed_fields
        or decorators.field_serializers
        or decorators.model_serializers
    ):
        fields = None
    how = _HOW[cls] = (serializer, fields)
    return how
