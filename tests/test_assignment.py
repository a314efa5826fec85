"""A workflow's data assignments: a value needing no validation is stored directly, and the
result is always what pydantic's validated assignment gives.

Steps assign fields all the time, so `Workflow.__setattr__` skips pydantic's validation for an
exactly-typed value of a plain `int`, `str`, `bool` or `float` field (`engine/core/assignment`).
Each test sets one assignment against the same assignment made through pydantic itself
(`BaseModel.__setattr__`): same stored value, same type, same fields set, same refusals.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from signoff.engine import S, Step, Workflow
from signoff.engine.core.assignment import plain_fields


class Plain(Workflow):
    count: int = 0
    note: str = ""
    done: bool = False
    ratio: float = 0.0
    maybe: int | None = None
    tags: list[str] = []
    positive: Annotated[int, Field(gt=0)] = 1

    def definition(self) -> S:
        return S(Step("noop", lambda: None))


def through_pydantic(model: Workflow, name: str, value: Any) -> Workflow:
    """A copy of `model` with `name` assigned by pydantic's own (validated) path."""
    twin = model.model_copy(deep=True)
    BaseModel.__setattr__(twin, name, value)
    return twin


def outcome(model: Workflow, name: str, value: Any) -> tuple[str, Any, type, set[str]]:
    """What assigning does: ("stored", value, its type, fields set) or ("refused", ...)."""
    try:
        setattr(model, name, value)
    except ValidationError:
        return ("refused", None, type(None), set(model.model_fields_set))
    stored = getattr(model, name)
    return ("stored", stored, type(stored), set(model.model_fields_set))


def same(a: Any, b: Any) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def assert_as_pydantic(name: str, value: Any) -> None:
    ours, theirs = Plain(), Plain()
    fast = outcome(ours, name, value)
    try:
        BaseModel.__setattr__(theirs, name, value)
        stored = getattr(theirs, name)
        slow = ("stored", stored, type(stored), set(theirs.model_fields_set))
    except ValidationError:
        slow = ("refused", None, type(None), set(theirs.model_fields_set))
    assert fast[0] == slow[0] and fast[2] is slow[2] and fast[3] == slow[3], (name, value)
    assert same(fast[1], slow[1]), (name, value, fast, slow)
    assert ours.model_dump_json() == theirs.model_dump_json()


def test_only_plain_scalar_fields_take_values_directly() -> None:
    # an optional, a list and a constrained field are validated as before
    assert plain_fields(Plain) == {"count": int, "note": str, "done": bool, "ratio": float}


@given(
    st.sampled_from(["count", "note", "done", "ratio", "maybe", "tags", "positive"]),
    st.one_of(
        st.integers(),
        st.integers(min_value=2**70),
        st.text(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.none(),
        st.lists(st.text(), max_size=2),
    ),
)
def test_any_assignment_ends_as_pydantic_would_end_it(name: str, value: Any) -> None:
    assert_as_pydantic(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("count", True),  # a bool is an int to Python, not exactly one: pydantic decides
        ("count", "7"),  # coerced by pydantic to 7
        ("count", 7.0),
        ("count", "seven"),  # refused
        ("ratio", 3),  # an int for a float field: pydantic makes it 3.0? it decides
        ("note", 5),  # refused: pydantic does not turn numbers into text by default
        ("done", "yes"),
        ("positive", 0),  # refused by the constraint
        ("positive", 5),
    ],
)
def test_values_of_another_type_still_go_through_validation(name: str, value: Any) -> None:
    assert_as_pydantic(name, value)


def test_a_refused_assignment_changes_nothing() -> None:
    model = Plain(count=3)
    with pytest.raises(ValidationError):
        model.count = "not a number"  # type: ignore[assignment]
    assert model.count == 3 and model.model_fields_set == {"count"}


class Validated(Workflow):
    count: int = 0

    @field_validator("count")
    @classmethod
    def even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even")
        return value

    def definition(self) -> S:
        return S(Step("noop", lambda: None))


class Checked(Workflow):
    low: int = 0
    high: int = 10

    @model_validator(mode="after")
    def ordered(self) -> Checked:
        if self.low > self.high:
            raise ValueError("low above high")
        return self

    def definition(self) -> S:
        return S(Step("noop", lambda: None))


class Stripped(Workflow):
    model_config = ConfigDict(str_strip_whitespace=True)
    name: str = ""

    def definition(self) -> S:
        return S(Step("noop", lambda: None))


class Frozen(Workflow):
    fixed: int = Field(default=1, frozen=True)

    def definition(self) -> S:
        return S(Step("noop", lambda: None))


class StrictChild(Plain):
    """Inherits plain fields, then adds a validator: its assignments are all validated."""

    @field_validator("count")
    @classmethod
    def small(cls, value: int) -> int:
        if value > 100:
            raise ValueError("too big")
        return value


def test_field_validators_still_run_on_assignment() -> None:
    model = Validated()
    with pytest.raises(ValidationError, match="must be even"):
        model.count = 3
    assert model.count == 0
    assert plain_fields(Validated) == {}


def test_model_validators_still_run_on_assignment() -> None:
    model = Checked()
    with pytest.raises(ValidationError, match="low above high"):
        model.low = 11
    assert plain_fields(Checked) == {}


def test_settings_that_reshape_values_still_apply() -> None:
    model = Stripped()
    model.name = "  ada  "
    assert model.name == "ada"
    assert plain_fields(Stripped) == {}


def test_a_frozen_field_still_refuses() -> None:
    with pytest.raises(ValidationError):
        Frozen().fixed = 2
    assert "fixed" not in plain_fields(Frozen)


def test_a_subclass_adding_a_validator_is_validated_again() -> None:
    model = StrictChild()
    with pytest.raises(ValidationError, match="too big"):
        model.count = 101
    assert plain_fields(StrictChild) == {}
    assert "count" in plain_fields(Plain)  # the parent is unchanged


def test_extra_and_private_attributes_are_kept_as_before() -> None:
    model = Plain()
    model.unknown_field = 5  # extra="allow": kept among the extras
    assert model.model_extra == {"unknown_field": 5}
    assert through_pydantic(Plain(), "unknown_field", 5).model_extra == {"unknown_field": 5}
