"""HTML forms generated from a pydantic model's JSON schema (a workflow's data, an `Input`
wait's payload), and the submitted form turned back into the dict the model validates.

Simple fields (text, numbers, yes/no, a choice) get their own input; anything else (lists,
nested models) a JSON text area. The model itself stays the judge of what is valid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from signoff.web.limits import loads
from starlette.datastructures import FormData

PREFIX = "f."
MAX_FIELDS = 60


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: str  # text | textarea | integer | number | checkbox | select | json
    required: bool
    value: str  # what the input shows first
    checked: bool = False
    options: tuple[str, ...] = ()
    help: str = ""
    minimum: str = ""
    maximum: str = ""
    nullable: bool = False  # `X | None`: an emptied input means None

    @property
    def input_name(self) -> str:
        return PREFIX + self.name


def fields_from_schema(schema: dict[str, Any], *, skip: tuple[str, ...] = ()) -> list[FormField]:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    fields: list[FormField] = []
    for name, raw in list(schema.get("properties", {}).items())[:MAX_FIELDS]:
        if name in skip or not isinstance(raw, dict) or raw.get("readOnly"):
            continue  # readOnly: kept by the workflow itself, not asked for when starting
        prop = _resolve(raw, defs)
        title = str(prop.get("title") or raw.get("title") or name.replace("_", " ").capitalize())
        default = raw.get("default", prop.get("default"))
        help_text = str(raw.get("description") or prop.get("description") or "")
        kind, options = _kind(prop, defs)
        value = "" if default is None else (json.dumps(default) if kind == "json" else str(default))
        fields.append(
            FormField(
                name=name,
                label=title,
                kind=kind,
                required=name in required,
                value=value,
                checked=default is True,
                options=options,
                help=help_text,
                minimum=_num(prop.get("minimum", prop.get("exclusiveMinimum"))),
                maximum=_num(prop.get("maximum", prop.get("exclusiveMaximum"))),
                nullable=any(
                    isinstance(p, dict) and p.get("type") == "null" for p in raw.get("anyOf") or ()
                ),
            )
        )
    return fields


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.split("/")[-1])
        if isinstance(target, dict):
            return {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    any_of = prop.get("anyOf")
    if isinstance(any_of, list):  # Optional[X]: X | None
        real = [p for p in any_of if isinstance(p, dict) and p.get("type") != "null"]
        if len(real) == 1:
            return {**_resolve(real[0], defs), **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


def _kind(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    if "enum" in prop and all(isinstance(v, str) for v in prop["enum"]):
        return "select", tuple(prop["enum"])
    if "const" in prop and isinstance(prop["const"], str):
        return "select", (prop["const"],)
    match prop.get("type"):
        case "boolean":
            return "checkbox", ()
        case "integer":
            return "integer", ()
        case "number":
            return "number", ()
        case "string":
            long = prop.get("maxLength", 0) > 200 or prop.get("format") == "textarea"
            return ("textarea" if long else "text"), ()
    return "json", ()


def _num(value: Any) -> str:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""


def parse_submission(
    fields: list[FormField], form: FormData
) -> tuple[dict[str, Any], dict[str, str]]:
    """The dict to validate, and per-field problems the form itself shows (not JSON, ...)."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        raw = form.get(field.input_name)
        if field.kind == "checkbox":
            data[field.name] = raw is not None and raw != "false"
            continue
        text = raw if isinstance(raw, str) else ""
        if text.strip() == "":
            # an emptied input means empty, never the default it showed before
            if raw is None:
                continue  # not in the form at all: the model's default
            if field.nullable:
                data[field.name] = None
            elif field.kind in ("text", "textarea") or (field.kind == "select" and field.required):
                data[field.name] = text
            elif field.kind in ("integer", "number") and (field.value or field.required):
                errors[field.name] = "give a number (it cannot be left empty)"
            elif field.kind == "json" and (field.value or field.required):
                errors[field.name] = "give a JSON value (it cannot be left empty)"
            continue  # nothing asked for and nothing given: the model's default
        match field.kind:
            case "integer":
                try:
                    data[field.name] = int(text.strip())
                except ValueError:
                    errors[field.name] = "must be a whole number"
            case "number":
                try:
                    number = float(text.strip())
                except ValueError:
                    errors[field.name] = "must be a number"
                else:  # float() takes "nan" and "inf"; no form means them
                    if math.isfinite(number):
                        data[field.name] = number
                    else:
                        errors[field.name] = "must be a finite number"
            case "json":
                try:
                    data[field.name] = loads(text)
                except json.JSONDecodeError as exc:
                    errors[field.name] = f"not valid JSON: {exc.msg} (line {exc.lineno})"
            case _:
                data[field.name] = text
    return data, errors
