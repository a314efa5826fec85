"""The workflows an engine runs, by name: each checked when it is registered (its definition
built from its defaults and validated) and recorded as one of this process's releases."""

from __future__ import annotations

from typing import Any

from signoff.engine.core.releases import release_of
from signoff.engine.core.validate import validate
from signoff.engine.core.workflow import Workflow
from signoff.engine.errors import DefinitionError, UnknownWorkflow
from signoff.engine.runtime.arguments import error_text
from signoff.engine.runtime.releases import Releases


class Registry:
    """`workflows` is the engine's own dict (`Engine.workflows`), shared with whatever reads
    it as it grows."""

    def __init__(self, workflows: dict[str, type[Workflow]], releases: Releases) -> None:
        self.workflows = workflows
        self.releases = releases

    def register(self, workflow: type[Workflow]) -> None:
        if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
            raise DefinitionError(f"{workflow!r} is not a Workflow subclass")
        name = workflow.registered_name()
        try:
            definition = workflow.model_construct(**_placeholders(workflow)).definition()
        except DefinitionError:
            raise
        except Exception as exc:
            raise DefinitionError(
                f"workflow {name}: building the definition from its defaults failed: "
                f"{error_text(exc)} (fields without a default get a placeholder such as 0, '' "
                "or None here: give such a field a default if definition() needs more)"
            ) from exc
        validate(definition, name)
        self.workflows[name] = workflow
        self.releases.add(release_of(name, definition))

    def class_of(self, workflow: str | type[Workflow]) -> type[Workflow]:
        name = workflow if isinstance(workflow, str) else workflow.registered_name()
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflow(
                f"no workflow named '{name}' is registered (known: {known})"
            ) from None

    def summary_fields(self, workflow: str, data: dict[str, Any]) -> dict[str, Any]:
        cls = self.workflows.get(workflow)
        return cls.summarize(data) if cls is not None else {}

    def hidden(self, workflow: str) -> list[str]:
        """The data fields `workflow` stores but never shows (`Workflow.hidden_fields`)."""
        cls = self.workflows.get(workflow)
        return cls.hidden_fields if cls is not None else []


def _placeholders(workflow: type[Workflow]) -> dict[str, Any]:
    """Stand-ins for required fields, so a definition can be built before any data exists."""
    simple: dict[Any, Any] = {int: 0, float: 0.0, str: "", bool: False, list: [], dict: {}}
    values: dict[str, Any] = {}
    for name, info in workflow.model_fields.items():
        if info.is_required():
            origin = getattr(info.annotation, "__origin__", info.annotation)
            values[name] = simple.get(origin)
    return values
