"""`Workflow`: a pydantic model whose fields are an instance's data and whose
`definition()` builds the statement tree from them."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict
from signoff.engine.core.tree import Statement


class Workflow(BaseModel):
    """Subclass it: the fields are an instance's data (stored as JSON), `definition()` returns
    the statement tree, rebuilt from the data as it is now before every move. Registered under
    the class name, or `workflow_name` when set."""

    # Assignments are validated so a step that stores the wrong type fails right there; fields a
    # newer definition dropped are kept, so rolling back a deployment loses nothing.
    model_config = ConfigDict(validate_assignment=True, extra="allow")

    workflow_name: ClassVar[str | None] = None

    def definition(self) -> Statement:
        """The workflow as a tree of named statements, built from the current data."""
        raise NotImplementedError(f"{type(self).__name__} must define definition()")

    @classmethod
    def registered_name(cls) -> str:
        """The name instances of this workflow are stored under."""
        return cls.workflow_name or cls.__name__
