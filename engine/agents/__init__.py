"""Gating an AI agent's actions on a person: `@gate(engine, approvers=[...])` makes each call of
a function (a tool an agent calls) a durable approval request, an instance of the built-in
`ToolCall` workflow. See docs/agents.md."""

from signoff.engine.agents.arguments import REDACTED
from signoff.engine.agents.gate import Gate, gate, register
from signoff.engine.agents.toolcall import GatedFunction, ToolApproval, ToolCall
from signoff.engine.errors import Denied, TimedOut, ToolFailed

__all__ = [
    "REDACTED",
    "Denied",
    "Gate",
    "GatedFunction",
    "TimedOut",
    "ToolApproval",
    "ToolCall",
    "ToolFailed",
    "gate",
    "register",
]
