"""signoff's engine: durable workflows as code, with people in the loop."""

from signoff.engine.async_engine import AsyncEngine
from signoff.engine.core.addresses import address_problem, checked_address
from signoff.engine.core.authority import ReadOnly, actor_problem, everyone_operates, name_problem
from signoff.engine.core.branches import Case, Default, If, Switch
from signoff.engine.core.deploy import DeploymentReport, Finding, Tally
from signoff.engine.core.enums import HistoryKind, Status, ThreadStatus, Via
from signoff.engine.core.finite import finite_problem
from signoff.engine.core.handlers import (
    Approval,
    Decision,
    Handler,
    Input,
    KeepWaiting,
    Reply,
    Services,
    Timeout,
    WaitInfo,
)
from signoff.engine.core.limits import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    json_problem,
    raw_json_depth,
    text_problem,
)
from signoff.engine.core.loops import Break, Continue, For
from signoff.engine.core.notices import ApprovalNotice, Notifier, Vote
from signoff.engine.core.outcome import OUTCOMES, outcome_of
from signoff.engine.core.outline import Node, goto_targets, outline, statement_names
from signoff.engine.core.releases import Release
from signoff.engine.core.renames import Renames, declared_renames
from signoff.engine.core.steps import Retry, Step
from signoff.engine.core.threads import Go, Return
from signoff.engine.core.tree import S, Section, Statement
from signoff.engine.core.waits import On, Wait, WaitFor
from signoff.engine.core.workflow import Workflow
from signoff.engine.engine import Engine
from signoff.engine.errors import (
    AlreadyDecided,
    Busy,
    Conflict,
    CorruptState,
    DefinitionError,
    EventRejected,
    InstanceNotFound,
    InvalidData,
    NewerRelease,
    NotAllowed,
    NotReachable,
    NotWaiting,
    RunawayLoop,
    SchemaOutdated,
    SignoffError,
    StatementMissing,
    StepTimedOut,
    StorageError,
    Unavailable,
    UnknownWorkflow,
)
from signoff.engine.runtime.linktokens import (
    LinkClaim,
    make_link_token,
    read_link_token,
    signed_link_maker,
)
from signoff.engine.runtime.mail import Mailer
from signoff.engine.runtime.metrics import Histogram, Metrics
from signoff.engine.runtime.metrics import Snapshot as MetricsSnapshot
from signoff.engine.runtime.scheduler import Scheduler
from signoff.engine.runtime.slack import APPROVE_ACTION as SLACK_APPROVE_ACTION
from signoff.engine.runtime.slack import DENY_ACTION as SLACK_DENY_ACTION
from signoff.engine.runtime.slack import EDIT_ACTION as SLACK_EDIT_ACTION
from signoff.engine.runtime.slack import REASSIGN_ACTION as SLACK_REASSIGN_ACTION
from signoff.engine.runtime.slack import read_button_value as read_slack_button
from signoff.engine.storage.store import upgrade_database
from signoff.engine.views import (
    Counts,
    DecisionView,
    HistoryEntry,
    InstanceSummary,
    InstanceView,
    OutcomeView,
    ThreadView,
    WaitingOn,
    WaitView,
)

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "OUTCOMES",
    "SLACK_APPROVE_ACTION",
    "SLACK_DENY_ACTION",
    "SLACK_EDIT_ACTION",
    "SLACK_REASSIGN_ACTION",
    "AlreadyDecided",
    "Approval",
    "ApprovalNotice",
    "AsyncEngine",
    "Break",
    "Busy",
    "Case",
    "Conflict",
    "Continue",
    "CorruptState",
    "Counts",
    "Decision",
    "DecisionView",
    "Default",
    "DefinitionError",
    "DeploymentReport",
    "Engine",
    "EventRejected",
    "Finding",
    "For",
    "Go",
    "Handler",
    "Histogram",
    "HistoryEntry",
    "HistoryKind",
    "If",
    "Input",
    "InstanceNotFound",
    "InstanceSummary",
    "InstanceView",
    "InvalidData",
    "KeepWaiting",
    "LinkClaim",
    "Mailer",
    "Metrics",
    "MetricsSnapshot",
    "NewerRelease",
    "Node",
    "NotAllowed",
    "NotReachable",
    "NotWaiting",
    "Notifier",
    "On",
    "OutcomeView",
    "ReadOnly",
    "Release",
    "Renames",
    "Reply",
    "Retry",
    "Return",
    "RunawayLoop",
    "S",
    "Scheduler",
    "SchemaOutdated",
    "Section",
    "Services",
    "SignoffError",
    "Statement",
    "StatementMissing",
    "Status",
    "Step",
    "StepTimedOut",
    "StorageError",
    "Switch",
    "Tally",
    "ThreadStatus",
    "ThreadView",
    "Timeout",
    "Unavailable",
    "UnknownWorkflow",
    "Via",
    "Vote",
    "Wait",
    "WaitFor",
    "WaitInfo",
    "WaitView",
    "WaitingOn",
    "Workflow",
    "actor_problem",
    "address_problem",
    "checked_address",
    "declared_renames",
    "everyone_operates",
    "finite_problem",
    "goto_targets",
    "json_problem",
    "make_link_token",
    "name_problem",
    "outcome_of",
    "outline",
    "raw_json_depth",
    "read_link_token",
    "read_slack_button",
    "signed_link_maker",
    "statement_names",
    "text_problem",
    "upgrade_database",
]
