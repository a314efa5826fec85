"""A gated function's arguments: bound and checked against its signature (a pydantic model built
from it), stored as JSON, and shown to people (pretty JSON, long values folded, secrets
redacted)."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticSerializationError
from signoff.engine.core.finite import finite_problem
from signoff.engine.core.limits import json_problem

REDACTED = "[redacted]"
FOLD_TEXT = 200  # a text longer than this is shown cut, with its length
FOLD_ITEMS = 20  # a list or object with more items shows this many and a count of the rest
MAX_TITLE = 120


class Arguments:
    """The signature of a gated function, as a pydantic model that validates its arguments.

    Parameters are validated as `pydantic.validate_call` would (lax mode: "30" for an int is
    taken); an argument the signature does not name is refused. `*args` / `**kwargs` are not
    supported: every argument must have a name an approver can read and edit."""

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self.name = name
        self.label = name.rsplit(".", 1)[-1].rsplit(":", 1)[-1]  # what messages call it
        self.signature = inspect.signature(function)
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # a forward reference it cannot resolve: take annotations as written
            hints = {}
        fields: dict[str, Any] = {}
        for position, parameter in enumerate(self.signature.parameters.values()):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(
                    f"gate: {name} takes *{parameter.name}: a gated function's arguments must "
                    "all be named, so an approver can read and edit them"
                )
            if parameter.name == "call_id":
                raise TypeError(
                    f"gate: {name} has a parameter named call_id, which the gate takes for itself"
                )
            annotation = hints.get(parameter.name, parameter.annotation)
            if annotation is inspect.Parameter.empty:
                annotation = Any
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            # aliased, so a parameter may be called `json` or `copy` without shadowing BaseModel
            fields[f"p{position}"] = (annotation, Field(default, alias=parameter.name))
        try:
            self.model: type[BaseModel] = create_model(
                f"{name.replace(':', '.').replace('.', '_')}_arguments",
                __config__=ConfigDict(extra="forbid", populate_by_name=False),
                **fields,
            )
            self.model.model_json_schema(by_alias=True)
        except Exception as exc:
            raise TypeError(
                f"gate: the arguments of {name} cannot be checked as JSON: {exc} (annotate them "
                "with JSON types, pydantic models or dataclasses)"
            ) from exc
        self.names = list(self.signature.parameters)

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name, defaults filled in; TypeError as Python would raise."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def problem(self, values: Mapping[str, Any]) -> str | None:
        """Why `values` (arguments by name) do not fit the signature, or None."""
        try:
            self.model.model_validate(dict(values))
        except ValidationError as exc:
            return "; ".join(_error_text(err) for err in exc.errors())
        return None

    def as_json(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments, validated, as JSON values (ValueError says why not)."""
        problem = self.problem(values)
        if problem:
            raise ValueError(f"invalid arguments for {self.label}: {problem}")
        model = self.model.model_validate(dict(values))
        nonfinite = finite_problem(
            model.model_dump(by_alias=True), f"the arguments of {self.label}"
        )
        if nonfinite:  # dumped as JSON, NaN would become null
            raise ValueError(nonfinite)
        try:
            dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            raise ValueError(f"the arguments of {self.label} are not JSON: {exc}") from None
        problem = json_problem(dumped, f"the arguments of {self.label}")
        if problem:
            raise ValueError(problem)
        return dumped

    def call_parts(self, values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments to call the function with, from stored JSON values
        validated again (so an `int`, a `datetime` or a model arrives as one)."""
        model = self.model.model_validate(dict(values))
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for position, parameter in enumerate(self.signature.parameters.values()):
            value = getattr(model, f"p{position}")
            if parameter.kind == parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[parameter.name] = value
        return args, kwargs

    def schema(self, proposed: Mapping[str, Any], hidden: Collection[str]) -> dict[str, Any]:
        """The JSON schema of the arguments an approver may edit, the proposed values as
        defaults (what a form shows first); `hidden` (redacted) arguments are left out."""
        schema = self.model.model_json_schema(by_alias=True)
        properties = schema.get("properties", {})
        for name in list(properties):
            if name in hidden:
                del properties[name]
            elif name in proposed:
                properties[name]["default"] = proposed[name]
        schema["required"] = [n for n in schema.get("required", []) if n not in hidden]
        schema["title"] = f"Arguments of {self.label}"
        return schema


def _error_text(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
    if err.get("type") == "extra_forbidden":
        return f"{where}: not an argument of this function"
    return f"{where}: {err.get('msg')}"


def redacted(values: Mapping[str, Any], names: Collection[str]) -> dict[str, Any]:
    """`values` with each of `names` replaced by a placeholder."""
    return {k: (REDACTED if k in names else v) for k, v in values.items()}


def fold(value: Any) -> Any:
    """`value` with long texts cut and long lists and objects shortened, for reading."""
    if isinstance(value, str) and len(value) > FOLD_TEXT:
        return f"{value[:FOLD_TEXT]}… ({len(value)} characters)"
    if isinstance(value, list):
        shown = [fold(v) for v in value[:FOLD_ITEMS]]
        if len(value) > FOLD_ITEMS:
            shown.append(f"… {len(value) - FOLD_ITEMS} more")
        return shown
    if isinstance(value, dict):
        items = list(value.items())
        folded = {k: fold(v) for k, v in items[:FOLD_ITEMS]}
        if len(items) > FOLD_ITEMS:
            folded["…"] = f"{len(items) - FOLD_ITEMS} more"
        return folded
    return value


def pretty(values: Mapping[str, Any]) -> str:
    """The arguments as people read them: indented JSON, long values folded."""
    return json.dumps(fold(dict(values)), indent=2, ensure_ascii=False)


def call_line(label: str, values: Mapping[str, Any], limit: int = MAX_TITLE) -> str:
    """`refund(order="A-1", amount=30)`, cut to `limit` characters."""
    parts = ", ".join(
        f"{k}={json.dumps(fold(v), ensure_ascii=False, separators=(',', ':'))}"
        for k, v in values.items()
    )
    line = f"{label}({parts})"
    return line if len(line) <= limit else line[: limit - 2] + "…)"
