"""Which of a workflow's fields take an assigned value as it is, with no validation to run.

Steps and handlers assign data fields all the time (`self.count += 1`, `self.approved = True`),
and a workflow validates every assignment: pydantic's validation of one field costs about a
microsecond, several times the rest of a step's bookkeeping in the interpreter. For a plain
`int`, `str`, `bool` or `float` field, with no constraint, no validator and no configuration
that reshapes values, a value of exactly that type validates to itself: storing it is all
validation would do. `plain_fields` finds those fields once per class; every other assignment
(a value of another type, a constrained field, a class with validators) goes through pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel

# The field types whose exactly-typed values pydantic returns unchanged: no coercion, no copy.
# (A subclass value, `True` for an `int` field or an `IntEnum`, is not exactly typed.)
SELF_VALIDATING: frozenset[type] = frozenset({int, str, bool, float})

# Settings that never change what validating an exactly-typed scalar gives. Any other setting
# (str_strip_whitespace, str_max_length, allow_inf_nan, frozen, ...), or one pydantic adds
# later, makes the whole class take the general path: unknown means not safe.
HARMLESS_SETTINGS = frozenset(
    {
        "validate_assignment",
        "extra",
        "ser_json_inf_nan",
        "title",
        "json_schema_extra",
        "strict",
        "populate_by_name",
        "validate_by_name",
        "validate_by_alias",
        "arbitrary_types_allowed",
        "protected_namespaces",
        "use_enum_values",
        "validate_default",
        "revalidate_instances",
        "from_attributes",
        "defer_build",
        "ser_json_timedelta",
        "ser_json_bytes",
        "hide_input_in_errors",
        "use_attribute_docstrings",
    }
)

_PLAIN: dict[type, dict[str, type]] = {}


def plain_fields(cls: type[BaseModel]) -> dict[str, type]:
    """The fields of `cls` an exactly-typed value may be stored in directly, by name, with
    their type; {} when the class has validators or settings that could change a value."""
    found = _PLAIN.get(cls)
    if found is None:
        found = _find(cls)
        if cls.__pydantic_complete__:  # else not built yet (a forward reference): ask again
            _PLAIN[cls] = found
    return found


def _find(cls: type[BaseModel]) -> dict[str, type]:
    if not cls.__pydantic_complete__:
        return {}
    if not set(cls.model_config) <= HARMLESS_SETTINGS:
        return {}
    decorators = cls.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
    ):
        return {}
    return {
        name: info.annotation
        for name, info in cls.model_fields.items()
        if info.annotation in SELF_VALIDATING and not info.metadata and not info.frozen
    }
