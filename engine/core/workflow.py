"""`Workflow`: a pydantic model whose fields are an instance's data and whose
`definition()` builds the statement tree from them."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from signoff.engine.core.tree import Statement


class Workflow(BaseModel):
    """Subclass it: the fields are an instance's data (stored as JSON), `definition()` returns
    the statement tree, rebuilt from the data as it is now before every move. Registered under
    the class name, or `workflow_name` when set."""

    # Assignments are validated so a step that stores the wrong type fails right there; fields a
    # newer definition dropped are kept, so rolling back a deployment loses nothing. NaN and
    # Infinity are written as literals, never as null, so the look for them after a step is a
    # substring test (see `finite`).
    model_config = ConfigDict(validate_assignment=True, extra="allow", ser_json_inf_nan="constants")

    workflow_name: ClassVar[str | None] = None
    # The data fields that say what an instance is about at a glance (e.g. ["amount",
    # "employee"]): the dashboard shows them as columns of the instances list and beside each
    # request in the approvals inbox, and `Engine.list`/`Engine.inbox` return them as `summary`.
    # (Not called `summary`, so a workflow may still have a data field of that name.)
    summary_fields: ClassVar[list[str]] = []
    # Data fields that are stored but never shown: absent from `Engine.get(...).data` (so from
    # the dashboard, the JSON API and the command line) and from what approvals announce. They
    # are still in the database, in the instance's data; protect it as you protect them.
    hidden_fields: ClassVar[list[str]] = []

    def definition(self) -> Statement:
        """The workflow as a tree of named statements, built from the current data."""
        raise NotImplementedError(f"{type(self).__name__} must define definition()")

    @classmethod
    def summarize(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The `summary_fields` of `data` (an instance's stored data), in their declared order;
        fields the data lacks are left out."""
        return {name: data[name] for name in cls.summary_fields if name in data}

    @classmethod
    def registered_name(cls) -> str:
        """The name instances of this workflow are stored under."""
        return cls.workflow_name or cls.__name__
