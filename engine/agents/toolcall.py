"""The built-in `ToolCall` workflow: one gated call of a function, asked of a person.

    Wait("approval",  On("approval", ToolApproval(...)),  [On("timeout", Timeout(...))])
    If(not approved, Return(error=...))
    Step("run", <the function, with the approved arguments>)
    Return(<its result>)

Everything the request needs is in the instance's data (the function's qualified name, the
arguments, who may decide, the deadline), so any process that knows the function can rebuild it,
decide it and run the step. Functions are known by `gate` registering them here, by qualified
name, when their module is imported: a process that may run the step (the agent's, a dashboard
that decides, a `signoff worker`) must import that module.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import Field
from pydantic_core import PydanticSerializationError, to_jsonable_python
from signoff.engine.agents.arguments import REDACTED, Arguments, call_line, pretty
from signoff.engine.core.branches import If
from signoff.engine.core.handlers import (
    Approval,
    Decision,
    KeepWaiting,
    Reply,
    Timeout,
    WaitInfo,
)
from signoff.engine.core.notices import ApprovalNotice
from signoff.engine.core.steps import Retry, Step
from signoff.engine.core.threads import Return
from signoff.engine.core.tree import S, Statement
from signoff.engine.core.waits import On, Wait
from signoff.engine.core.workflow import Workflow
from signoff.engine.errors import EventRejected

APPROVED, DENIED, TIMED_OUT = "approved", "denied", "timed out"


@dataclass(frozen=True)
class GatedFunction:
    """A function `gate` made into requests: what the step calls and edits are checked against."""

    name: str  # "module:qualname", the key in the instance's data
    function: Callable[..., Any]
    arguments: Arguments
    label: str  # what people read: the function's name

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)


_GATED: dict[str, GatedFunction] = {}
_LOCK = threading.Lock()


def remember(gated: GatedFunction) -> None:
    """Make `gated` known in this process (a module imported again replaces it)."""
    with _LOCK:
        _GATED[gated.name] = gated


def known(name: str) -> GatedFunction:
    """The gated function stored under `name`; LookupError naming the module to import."""
    found = _GATED.get(name)
    if found is None:
        module = name.split(":", 1)[0]
        raise LookupError(
            f"the gated function {name} is not known in this process: import its module "
            f"({module}) here, e.g. `signoff worker --workflows {module}`, so @gate registers it"
        )
    return found


def _kept(default: Any = None, **extra: Any) -> Any:
    """A field the workflow keeps for itself: never taken from a named starter."""
    if "default_factory" in extra:
        return Field(json_schema_extra={"readOnly": True}, **extra)
    return Field(default, json_schema_extra={"readOnly": True}, **extra)


@dataclass
class ToolApproval(Approval):
    """An `Approval` whose approver may also change the call's arguments:
    `{"approved": true, "arguments": {...}}`, merged over the proposed ones and checked against
    the function's signature. Refused (nothing changes, the request stays open): an argument
    the function does not take, a value that does not fit, a redacted argument, arguments with
    a denial, or any edit when `editable` is off or several approvals are required."""

    function: str = ""
    proposed: dict[str, Any] = field(default_factory=dict)
    sealed: dict[str, Any] = field(default_factory=dict)  # the redacted arguments' values
    editable: bool = False
    edit: Callable[[dict[str, Any]], Any] | None = None

    def check(self, wait: WaitInfo, payload: dict[str, Any], actor: str | None) -> None:
        super().check(wait, payload, actor)
        self.edited(payload)

    def edited(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The arguments an approval edits (as stored: redacted ones stay placeholders), or
        None when it edits none; EventRejected when the edit is refused."""
        if "arguments" not in payload:
            return None
        changes = payload["arguments"]
        if payload.get("approved") is not True:
            raise EventRejected("arguments are edited only with an approval")
        if not self.editable or self.required > 1:
            why = "its gate says editable=False" if not self.editable else "it needs a quorum"
            raise EventRejected(f"the arguments of this call may not be edited: {why}")
        if not isinstance(changes, dict):
            raise EventRejected('"arguments" must be a JSON object of argument names to values')
        try:
            gated = known(self.function)
        except LookupError as exc:
            raise EventRejected(str(exc)) from None
        unknown = sorted(set(changes) - set(gated.arguments.names))
        if unknown:
            raise EventRejected(
                f"{gated.label} has no argument(s) {', '.join(map(repr, unknown))}; "
                f"its arguments: {', '.join(gated.arguments.names)}"
            )
        secret = sorted(n for n in changes if n in self.sealed and changes[n] != REDACTED)
        if secret:
            raise EventRejected(f"redacted arguments cannot be edited: {', '.join(secret)}")
        merged = {**self.proposed, **changes, **self.sealed}
        try:
            checked = gated.arguments.as_json(merged)
        except ValueError as exc:
            raise EventRejected(str(exc)) from None
        return {k: (REDACTED if k in self.sealed else v) for k, v in checked.items()}

    def handle(
        self, wait: WaitInfo, payload: dict[str, Any], actor: str | None
    ) -> KeepWaiting | Reply | None:
        self.check(wait, payload, actor)
        changed = self.edited(payload)
        if changed is not None and self.edit is not None:
            wait.services.call(self.edit, changed)
        return super().handle(wait, payload, actor)

    def notice(self, wait: WaitInfo) -> ApprovalNotice:
        shown = {k: v for k, v in wait.data.items() if k not in ToolCall.hidden_fields}
        editable = self.editable and self.required == 1
        edit = {k: v for k, v in self.proposed.items() if k not in self.sealed}
        return replace(super().notice(wait), data=shown, edit_arguments=edit if editable else None)

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        tool: dict[str, Any] = {"function": self.function, "editable": False}
        gated = _GATED.get(self.function)
        if self.editable and self.required == 1 and gated is not None:
            tool["editable"] = True
            tool["schema"] = gated.arguments.schema(self.proposed, self.sealed)
        described["tool"] = tool
        return described


class ToolCall(Workflow):
    """One gated call: asks, then runs the function with the approved arguments, once."""

    workflow_name: ClassVar[str | None] = "ToolCall"
    starters: ClassVar[list[str]] = []  # made by a gated call (the program), never by a person
    hidden_fields: ClassVar[list[str]] = ["sealed"]
    summary_fields: ClassVar[list[str]] = ["label", "outcome"]

    function: str = _kept("", description="the gated function, as module:qualname")
    label: str = _kept("")
    call_id: str | None = _kept()
    arguments: dict[str, Any] = _kept(default_factory=dict, description="as the call proposed")
    sealed: dict[str, Any] = _kept(default_factory=dict)  # redacted arguments' real values
    approved_arguments: dict[str, Any] | None = _kept()
    edited: bool = _kept(False)
    call_title: str = _kept("")
    text: str = _kept("")
    approvers: list[str] | None = _kept()
    required: int = _kept(1)
    allow_self: bool = _kept(True)
    escalate_to: list[str] | None = _kept()
    escalate_after_seconds: float | None = _kept()
    remind_every_seconds: float | None = _kept()
    slack_channel: str | None = _kept()
    timeout_seconds: float | None = _kept()
    editable: bool = _kept(True)
    attempts: int = _kept(3)
    backoff_seconds: float = _kept(1.0)
    outcome: str = _kept("", description="approved, denied or timed out")
    decided_by: str | None = _kept()
    reason: str = _kept("")
    result: Any = _kept()

    def instance_title(self) -> str | None:
        return self.call_title or None

    def definition(self) -> Statement:
        approval = ToolApproval(
            approve=self.on_approve,
            deny=self.on_deny,
            edit=self.on_edit,
            title=self.call_title or None,
            text=self.text or None,
            approvers=self.approvers,
            slack_channel=self.slack_channel,
            remind_every=_seconds(self.remind_every_seconds),
            escalate_after=_seconds(self.escalate_after_seconds),
            escalate_to=self.escalate_to,
            required=self.required,
            allow_self=self.allow_self,
            function=self.function,
            proposed=self.arguments,
            sealed=self.sealed,
            editable=self.editable,
        )
        cases = [On("approval", approval)]
        if self.timeout_seconds is not None:
            after = timedelta(seconds=self.timeout_seconds)
            cases.append(On("timeout", Timeout(after=after), Step("timed out", self.on_timeout)))
        retry = Retry(
            attempts=max(1, self.attempts), backoff=timedelta(seconds=self.backoff_seconds)
        )
        return S(
            Wait("approval", *cases),
            If(self.outcome != APPROVED, Return(error=self.ending())),
            Step("run", self.run, retry=retry),
            Return(self.result),
        )

    def ending(self) -> str:
        if self.outcome == DENIED:
            return f"denied by {self.decided_by or 'the program'}: {self.reason}"
        return f"{TIMED_OUT}: nobody decided {self.label} in time"

    # --- what the approval and the timeout do ------------------------------------------------

    def on_edit(self, arguments: dict[str, Any]) -> None:
        self.approved_arguments = arguments
        self.edited = arguments != self.arguments

    def on_approve(self, decision: Decision) -> None:
        self.outcome, self.decided_by = APPROVED, decision.actor
        self.reason = decision.reason
        if self.approved_arguments is None:
            self.approved_arguments = self.arguments

    def on_deny(self, decision: Decision) -> None:
        self.outcome, self.decided_by, self.reason = DENIED, decision.actor, decision.reason

    def on_timeout(self) -> None:
        self.outcome = TIMED_OUT

    # --- the step -------------------------------------------------------------------------------

    def run(self) -> Any:
        """Call the function with the approved arguments (the redacted ones' real values put
        back); keep its result, which must be JSON (a pydantic model or dataclass is dumped)."""
        gated = known(self.function)
        values = {**(self.approved_arguments or self.arguments), **self.sealed}
        args, kwargs = gated.arguments.call_parts(values)
        if gated.is_async:

            async def run_async() -> None:
                self.keep(await gated.function(*args, **kwargs))

            return run_async()
        self.keep(gated.function(*args, **kwargs))
        return None

    def keep(self, value: Any) -> None:
        try:
            self.result = to_jsonable_python(value)
        except PydanticSerializationError:
            raise TypeError(
                f"{self.label} returned a {type(value).__name__}, which is not JSON: return "
                "JSON values (a pydantic model or a dataclass is dumped)"
            ) from None


def _seconds(value: float | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None


def request_data(
    gated: GatedFunction,
    proposed: dict[str, Any],
    sealed: dict[str, Any],
    *,
    title: str | None,
    call_id: str | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The data of a new `ToolCall` instance for one call."""
    shown = {k: (REDACTED if k in sealed else v) for k, v in proposed.items()}
    return {
        "function": gated.name,
        "label": gated.label,
        "call_id": call_id,
        "arguments": shown,
        "sealed": sealed,
        "call_title": title or call_line(gated.label, shown),
        "text": f"{gated.label} wants to run with these arguments:\n{pretty(shown)}",
        **options,
    }
