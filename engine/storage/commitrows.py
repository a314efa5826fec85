"""What a commit's rows hold beyond their columns: a history entry's detail as JSON text (one C
encoder made once), who took part (`commit_participants`), and datetimes as ISO text in JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from signoff.engine.core.records import Record, WaitRecord
from signoff.engine.errors import DataNotStorable
from signoff.engine.storage.visibility import participants

# a history row's detail as JSON, anything else as its text (one encoder for every row); NaN
# and Infinity are no JSON, and a row holding one would make the history unreadable
_DETAIL = json.JSONEncoder(default=str, allow_nan=False)


# The same encoder's C part, made once: `JSONEncoder.encode` makes it anew for every call,
# which cost more than the encoding of a step's detail. Without the check for circular
# references (a per-call dict, which could not be shared between threads): a detail is built
# from JSON the engine read or took in, and one that nests into itself ends in RecursionError.
def _c_detail() -> Any:
    """The C encoder with `_DETAIL`'s settings, or None where there is none (another Python
    implementation, or a version whose private constructor takes other arguments)."""
    if c_make_encoder is None:
        return None
    try:
        made = c_make_encoder(
            None, str, encode_basestring_ascii, None, ": ", ", ", False, False, False
        )
        probe = {"a": [1, 2.5, None, True, "é"]}
        return made if "".join(made(probe, 0)) == _DETAIL.encode(probe) else None
    except Exception:
        return None


_C_DETAIL: Any = _c_detail()


def detail_text(h: Record) -> str:
    if h.detail_json is not None:  # written out by its maker
        return h.detail_json
    try:
        if _C_DETAIL is None or isinstance(h.detail, str):
            return _DETAIL.encode(h.detail)
        return "".join(_C_DETAIL(h.detail, 0))
    except (ValueError, RecursionError) as exc:  # what is taken in is checked first: this is
        # the last guard
        raise DataNotStorable(f"the history entry '{h.kind}' cannot be stored: {exc}") from exc


def commit_participants(
    history: Sequence[Record], waits: Sequence[WaitRecord] | None
) -> list[tuple[str, str]]:
    """(role, person) of what a commit writes: who acted in its history entries, and when it
    writes the waits, whom the open ones name."""
    if waits is None and not any(h.actor for h in history):
        return []  # a step's commit: nobody acted and no wait is written
    return participants(
        ((str(h.kind), h.actor) for h in history),
        ((w.kind, w.approvers) for w in waits or ()),
    )


def iso_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
