"""A search of the instances list read into terms: an id prefix, `field:value` in the data, a
comparison (`amount>200`, `started<2026-12-01`) or text anywhere in the data; and the SQL of a
comparison, per database."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from signoff.engine.errors import InvalidData
from signoff.engine.storage.columns import when

_ID_CHARS = re.compile(r"[A-Za-z0-9._:-]+")  # what an instance id may hold
# `field:value` searches the data: `amount:120`, `employee:bob`
_FIELD_SEARCH = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,99}):\s*(.+)", re.DOTALL)


def _like(text: str) -> str:
    """`text` with LIKE's wildcards taken literally (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# `amount>200`, `started<2026-12-01`: a field, an operator, a value
_COMPARISON = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,99})\s*(<=|>=|<|>)\s*(\S.*)", re.DOTALL)
# the instance's own times, by the names people use for them
TIME_FIELDS = {
    "started": "created_at",
    "created": "created_at",
    "changed": "updated_at",
    "updated": "updated_at",
}
COMPARE_HINT = (
    "compare a number in the data (amount>200, amount<=50) or when an instance started or "
    "last changed with a date (started<2026-12-01, changed>=2026-11-01T09:00)"
)


def comparison(search: str) -> tuple[str, str, str, float | datetime] | None:
    """`search` read as a comparison: (column, field, operator, value), where column is
    "data" (a number in the data's `field`), "created_at" or "updated_at" (a datetime, UTC
    unless the text names a zone). None when it is no comparison; InvalidData, with a hint,
    when it looks like one that cannot be read (`amount>lots`).

    A bare date compares whole days: `started<=2026-12-01` includes that day, `started>`
    it starts the day after."""
    found = _COMPARISON.fullmatch(search.strip())
    if not found:
        return None
    field, op, text = found.group(1), found.group(2), found.group(3).strip()
    column = TIME_FIELDS.get(field.lower())
    if column is None:
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if not math.isfinite(number):
            raise InvalidData(f"'{search}' cannot be read: {COMPARE_HINT}")
        return "data", field, op, number
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidData(f"'{search}' cannot be read: {COMPARE_HINT}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if len(text) == 10 and op in ("<=", ">"):  # a whole day: up to its end, or after it
        at, op = at + timedelta(days=1), "<" if op == "<=" else ">="
    return column, field, op, at.astimezone(UTC)


def search_terms(search: str, sqlite: bool) -> list[tuple[str, list[Any]]]:
    """The ways `search` may match an instance, each (kind, parameters): an id prefix ("id":
    a range of the primary key on SQLite, a LIKE 'prefix%' on PostgreSQL), `field:value` in the
    data ("field": the stored JSON has the field with that value, or a string value starting
    with it), a comparison ("data<", "created_at>=", ...: see `comparison`; it is the only
    term then), or else the text anywhere in the data ("data")."""
    compared = comparison(search)
    if compared is not None:
        column, name, op, bound = compared
        if isinstance(bound, datetime):
            return [(f"{column}{op}", [when(bound, sqlite)])]
        if sqlite:
            path = f'$."{name}"'
            return [(f"data{op}", [path, path, bound])]
        return [(f"data{op}", [number_pattern(name), bound])]
    terms: list[tuple[str, list[Any]]] = []
    if _ID_CHARS.fullmatch(search):
        terms.append(("id", [search, search + "\x7f"] if sqlite else [_like(search) + "%"]))
    field = _field(search)
    if field is not None:
        key, values = _like(json.dumps(field[0])) + ":", field[1]
        patterns = [f"%{key}{_like(values[0])}%"]  # a string starting with the value
        if len(values) > 1:  # or the number, true, false or null itself, ending there
            patterns += [f"%{key}{_like(values[1])},%", f"%{key}{_like(values[1])}}}%"]
        terms.append(("field", patterns))  # one pattern or three: each has text to look up
    else:
        terms.append(("data", [f"%{_like(search)}%"]))
    return terms


def _field(search: str) -> tuple[str, list[str]] | None:
    """`field:value` read: the field's name and the texts of the value as stored JSON holds
    them: the opening of a string (`"value`, escaped as JSON), and, when the value is a
    number, true, false or null, that literal too. None when `search` is no such search."""
    found = _FIELD_SEARCH.fullmatch(search)
    if not found:
        return None
    name, value = found.group(1), found.group(2).strip()
    texts = [json.dumps(value, ensure_ascii=False)[:-1]]  # an open string: a prefix
    try:
        literal = json.loads(value)
    except ValueError:
        literal = None
    if isinstance(literal, int | float | bool) or value == "null":
        texts.append(json.dumps(literal))
    return name, texts


# What pg_trgm can look up: three letters or digits in a row give it a trigram (it reads only
# letters and digits; ASCII ones are letters in every locale). Text without gives it nothing to
# look up but every row.
_TRIGRAM = re.compile(r"[A-Za-z0-9]{3}")


def trigram_terms(search: str) -> list[tuple[str, list[str], list[str]]] | None:
    """PostgreSQL with the trigram index on the data (revision 0015): the terms of
    `search_terms`, each with the LIKE patterns of the data that the index looks up for it,
    any of which may match: text anywhere, its own pattern; `field:value`, the value's texts
    alone, since the field's name is in every instance of its workflow and looking its
    trigrams up reads an entry per instance (the term's own patterns then check the rows
    found; a value without three letters or digits in a row, `amount:5`, looks the name up
    instead); an id prefix, none (its own index answers it). None when a term has nothing the
    index can look up (a comparison; no three letters or digits in a row): such a search
    reads the rows."""
    if comparison(search) is not None:
        return None
    found: list[tuple[str, list[str], list[str]]] = []
    for kind, params in search_terms(search, sqlite=False):
        lookups: list[str] = []
        if kind == "data":
            if not _TRIGRAM.search(search):
                return None
            lookups = params
        elif kind == "field":
            field = _field(search)
            assert field is not None
            texts = list(dict.fromkeys(t.removeprefix('"') for t in field[1]))
            if all(_TRIGRAM.search(t) for t in texts):
                lookups = [f"%{_like(t)}%" for t in texts]
            elif _TRIGRAM.search(field[0]):  # `amount:5`: the name's trigrams, then
                lookups = params
            else:
                return None
        found.append((kind, params, lookups))
    return found


def number_pattern(field: str) -> str:
    """PostgreSQL: the regular expression whose group is the number `field` holds in stored
    JSON text (stored compact: `"amount":120`), only ever text a number cast accepts."""
    return f'"{field}":(-?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?)[,}}\\]]'


def compare_sql(kind: str, m: str, sqlite: bool, mysql: bool = False) -> str | None:
    """The SQL of a comparison term (`search_terms`), with `m` as the parameter mark; None for
    any other kind. Data that is not valid JSON, or holds no number there, never matches and
    never fails the query."""
    for op in ("<=", ">=", "<", ">"):
        if kind.endswith(op):
            column = kind[: -len(op)]
            break
    else:
        return None
    if column in ("created_at", "updated_at"):
        return f"{column} {op} {m}"
    if column != "data":
        return None
    if sqlite:
        return (
            f"(CASE WHEN json_valid(data) THEN CASE WHEN json_type(data, {m}) IN "
            f"('integer', 'real') THEN json_extract(data, {m}) END END) {op} {m}"
        )
    if mysql:  # the whole match, `"name": 12.5`; the number is what follows its last colon
        return (
            f"CAST(SUBSTRING_INDEX(NULLIF(REGEXP_SUBSTR(data, {m}), ''), ':', -1) AS DOUBLE) "
            f"{op} {m}"
        )
    return f"CAST(substring(data from {m}) AS double precision) {op} {m}"
