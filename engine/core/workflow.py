"""`Workflow`: a pydantic model whose fields are an instance's data and whose
`definition()` builds the statement tree from them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from signoff.engine.core.assignment import plain_fields
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

    def __setattr__(self, name: str, value: Any) -> None:
        # a value that needs no validation is stored as validation would store it (see
        # `assignment`): a step's `self.count += 1` costs a fifth of what pydantic's path does
        if type(value) is plain_fields(type(self)).get(name):
            self.__dict__[name] = value
            self.__pydantic_fields_set__.add(name)
        else:
            super().__setattr__(name, value)

    def definition(self) -> Statement:
        """The workflow as a tree of named statements, built from the current data."""
        raise NotImplementedError(f"{type(self).__name__} must define definition()")

    def instance_title(self) -> str | None:
        """What people call this instance ("Expense: 120 EUR for bob"): the lists, the instance
        page, the inbox and search show it. None (the default): the title of its open approval,
        else the workflow's name. (Not `title`, so a workflow may keep a data field of that
        name.)"""
        return None

    @classmethod
    def summarize(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The `summary_fields` of `data` (an instance's stored data), in their declared order;
        fields the data lacks are left out."""
        return {name: data[name] for name in cls.summary_fields if name in data}

    @classmethod
    def registered_name(cls) -> str:
        """The name instances of this workflow are stored under."""
        return cls.workflow_name or cls.__name__


TITLE_LENGTH = 300  # a title longer than this is cut: it names, it does not describe


def title_of(
    cls: type[Workflow] | None,
    data: dict[str, Any] | None,
    open_titles: Iterable[str | None],
    workflow: str,
) -> str:
    """What an instance is called (the contract: DESIGN, "The instance's name"): the workflow's
    `instance_title()` of `data` when it defines one and it answers, else the first title of
    its open approvals, else `workflow`. The workflow's own code failing never hides the
    instance: its fallback is used."""
    if cls is not None and data is not None and titled(cls):
        try:
            found = cls.model_validate(data).instance_title()
        except Exception:  # the workflow's code: a broken title must not break a list
            found = None
        if isinstance(found, str) and found.strip():
            return _cut(found)
    for title in open_titles:
        if isinstance(title, str) and title.strip():
            return _cut(title)
    return workflow


def titled(cls: type[Workflow]) -> bool:
    """Whether the workflow names its instances itself (defines `instance_title`)."""
    return cls.instance_title is not Workflow.instance_title


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "\u2026"
