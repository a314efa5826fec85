"""signoff's engine: durable workflows as code, with people in the loop."""

from engine.branches import If
from engine.engine import Engine, InvalidData
from engine.errors import (
    AlreadyDecided,
    Conflict,
    DataNotStorable,
    DefinitionError,
    EventRejected,
    InstanceNotFound,
    NotAllowed,
    NotWaiting,
    RunawayLoop,
    SignoffError,
    StatementMissing,
    UnknownWorkflow,
)
from engine.handlers import Approval, Decision, Handler, Input, Services, Timeout, WaitInfo
from engine.loops import Break, Continue, For
from engine.steps import Retry, Step
from engine.threads import Go, Return
from engine.tree import S, Section, Statement
from engine.views import HistoryEntry, InstanceView, ThreadView, WaitView
from engine.waits import On, Wait, WaitFor
from engine.workflow import Workflow

__all__ = [
    "AlreadyDecided",
    "Approval",
    "Break",
    "Conflict",
    "Continue",
    "DataNotStorable",
    "Decision",
    "DefinitionError",
    "Engine",
    "EventRejected",
    "For",
    "Go",
    "Handler",
    "HistoryEntry",
    "If",
    "Input",
    "InstanceNotFound",
    "InstanceView",
    "InvalidData",
    "NotAllowed",
    "NotWaiting",
    "On",
    "Retry",
    "Return",
    "RunawayLoop",
    "S",
    "Section",
    "Services",
    "SignoffError",
    "Statement",
    "StatementMissing",
    "Step",
    "ThreadView",
    "Timeout",
    "UnknownWorkflow",
    "Wait",
    "WaitFor",
    "WaitInfo",
    "WaitView",
    "Workflow",
]
