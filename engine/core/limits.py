"""How deep and how big the JSON an instance takes in (start data, event payloads) may be, and
which text and numbers no database can keep.

The checks walk the value with an explicit stack, never by recursion: a value nested a thousand
deep must be refused, not crash the check (or, once stored, every later read of it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from signoff.engine.core.finite import finite_problem

MAX_JSON_DEPTH = 32
"""Levels of nested objects and lists a payload or start data may have (the value itself is 1)."""

MAX_JSON_BYTES = 256 * 1024
"""Size of a payload or of start data, encoded as JSON."""

NUL = "\x00"
# JSON as stored (UTF-8, anything else as its text), to measure: one encoder for every call
_MEASURE = json.JSONEncoder(ensure_ascii=False, default=str, allow_nan=False)
# the same, refusing anything but plain JSON (no `default`): for `plain_json`
_PLAIN = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def text_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be stored (PostgreSQL keeps no NUL character in text), or None."""
    if NUL in text:
        return f"{what} contains a NUL character (\\u0000), which cannot be stored"
    return None


def plain_json(value: Any) -> str | None:
    """`value` encoded as `json_problem` measures it, when it is plain JSON (objects, arrays,
    text, finite numbers, booleans, null) and can be encoded at all; else None. What it
    returns is what `json_problem` would encode, so it may be handed to it (`encoded=`)."""
    try:
        return _PLAIN.encode(value)
    except Exception:  # not plain JSON, or too deep to encode: the full checks say why
        return None


def json_problem(
    value: Any,
    what: str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_bytes: int = MAX_JSON_BYTES,
    encoded: str | None = None,
) -> str | None:
    """Why `value` (already parsed JSON, or a dict meant to become JSON) is refused, or None:
    nested deeper than `max_depth`, larger than `max_bytes` encoded, holding a NUL, or a number
    that is not finite (NaN, ±Infinity; the field is named). `encoded` is `plain_json(value)`
    when the caller made it already."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return finite_problem(value, what)  # walked again, for the field's name
            continue
        if isinstance(item, str):
            if NUL in item:
                return text_problem(item, f"{what} has a text that")
            continue
        if isinstance(item, dict | list | tuple):
            if depth > max_depth:
                return f"{what} is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, inner in item.items():
                    if isinstance(key, str) and NUL in key:
                        return text_problem(key, f"{what} has a key that")
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
    try:
        size = len((_MEASURE.encode(value) if encoded is None else encoded).encode())
    except (TypeError, ValueError) as exc:
        return f"{what} is not JSON: {exc}"
    if size > max_bytes:
        return f"{what} is larger than {max_bytes // 1024} KiB"
    return None


def raw_json_depth(raw: str | bytes) -> int:
    """The deepest nesting of `[` and `{` in JSON text, counted without parsing it, so that
    text nested too deep for the parser's recursion is measured before it is parsed."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
