"""What a step stores: the workflow's data (`engine/core/datajson`), always what
`model_dump_json(warnings="error")` gives, refusals included, whether or not the "error" mode
had to be named; and its history detail, written out as the JSON encoder writes it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import computed_field, field_serializer
from pydantic_core import PydanticSerializationError
from signoff.engine import S, Step, Workflow
from signoff.engine.core.datajson import data_json
from signoff.engine.core.records import Record, step_detail_json
from signoff.engine.storage.commitrows import detail_text


class Scalars(Workflow):
    count: int = 0
    note: str = ""
    done: bool = False
    ratio: float = 0.0

    def definition(self) -> S:
        return S(Step("noop", lambda: None))


class WithList(Scalars):
    numbers: list[int] = []


class Computed(Scalars):
    @computed_field  # type: ignore[prop-decorator]
    @property
    def twice(self) -> int:
        return self.__dict__["count"] * 2  # type: ignore[no-any-return]


class Serialized(Scalars):
    @field_serializer("count")
    def _count(self, value: Any) -> Any:
        return value


class OwnDump(Scalars):
    def model_dump_json(self, **kwargs: Any) -> str:
        return '{"own": true}'


def same(model: Workflow) -> None:
    """`data_json(model)` gives what pydantic's strict dump gives, or fails as it does."""
    try:
        expected = model.model_dump_json(warnings="error")
    except PydanticSerializationError:
        with pytest.raises(PydanticSerializationError):
            data_json(model)
        return
    assert data_json(model) == expected


@given(
    count=st.integers(),
    note=st.text(),
    done=st.booleans(),
    ratio=st.floats(allow_nan=True, allow_infinity=True),
)
def test_scalars_as_pydantic_gives_them(count: int, note: str, done: bool, ratio: float) -> None:
    same(Scalars(count=count, note=note, done=done, ratio=ratio))


@pytest.mark.parametrize(
    ("name", "value"),
    [("count", "seven"), ("count", True), ("count", 2.5), ("note", 3), ("ratio", 1), ("done", 0)],
)
def test_a_value_not_of_its_fields_type_is_stored_or_refused_as_pydantic_does(
    name: str, value: Any
) -> None:
    model = Scalars()
    model.__dict__[name] = value  # where no validation sees it
    same(model)
    if isinstance(value, str) or name == "note":
        with pytest.raises(PydanticSerializationError):
            data_json(model)


def test_a_list_mutated_in_place_with_the_wrong_type_is_refused() -> None:
    model = WithList(numbers=[1, 2])
    model.numbers.append("three")  # type: ignore[arg-type]
    with pytest.raises(PydanticSerializationError):
        data_json(model)
    model.numbers[-1] = 3
    assert data_json(model) == model.model_dump_json(warnings="error")


def test_extra_fields_are_encoded_and_refused_as_pydantic_does() -> None:
    model = Scalars.model_validate({"count": 1, "dropped": [1, "a"]})
    same(model)
    assert '"dropped":[1,"a"]' in data_json(model)
    model.__pydantic_extra__["dropped"] = object()  # type: ignore[index]
    with pytest.raises(PydanticSerializationError):
        data_json(model)


def test_computed_fields_and_serializers_as_pydantic_gives_them() -> None:
    computed = Computed(count=2)
    assert data_json(computed) == computed.model_dump_json(warnings="error")
    assert '"twice":4' in data_json(computed)
    computed.__dict__["count"] = "x"
    same(computed)
    serialized = Serialized(count=3)
    assert data_json(serialized) == serialized.model_dump_json(warnings="error")


def test_a_class_with_its_own_model_dump_json_is_asked() -> None:
    assert data_json(OwnDump()) == '{"own": true}'


@given(attempt=st.integers(min_value=1), ms=st.floats(allow_nan=False, allow_infinity=False))
def test_a_steps_detail_is_written_out_as_the_json_encoder_writes_it(
    attempt: int, ms: float
) -> None:
    written = step_detail_json(attempt, ms)
    assert written == json.dumps({"attempt": attempt, "ms": ms})
    record = Record(datetime.now(UTC), "step", detail={"attempt": attempt, "ms": ms})
    assert detail_text(record) == written
    record.detail_json = written
    assert detail_text(record) == written
