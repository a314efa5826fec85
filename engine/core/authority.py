"""Who may do what: the one home of signoff's permission rules, asked by every surface.

`actor=None` is the embedding program itself and may do anything; a named actor (a signed-in
user, an API token's actor, a Slack user, `signoff --as NAME`) is checked here:

- operators alone retry, cancel, move threads (goto) and send events other than decisions and
  `Input` forms;
- an `Approval` is decided by its approvers only (names or `group:NAME`; `escalate_to` joins
  them once `escalate_after` has passed), never by the instance's starter when
  `allow_self=False`, and by each approver once when it needs several votes;
- a workflow is started by anyone unless it lists `starters`, and the start data of a named
  actor may not set a read-only field.

Every refusal raises `NotAllowed` (or `InvalidData` for start data) with a sentence that says
why, and is raised before anything changes. Pure: standard library and pydantic only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from signoff.engine.errors import EventRejected, InvalidData, NotAllowed

if TYPE_CHECKING:
    from pydantic import GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema
    from signoff.engine.core.workflow import Workflow

GROUP_PREFIX = "group:"
MAX_REASON_LENGTH = 2000
MAX_NAME_LENGTH = 200


def name_problem(name: object, what: str = "a user name") -> str | None:
    """Why `name` cannot be a person's name (None: it can): not text, empty, longer than 200
    characters, beginning or ending with a space, holding a control or format character (two
    names that look alike), or beginning with `group:` in any case (a group is never an actor:
    whoever took that name would count as every member of the group, and vote as often)."""
    if not isinstance(name, str) or not name.strip():
        return f"{what} must be non-empty text"
    if len(name) > MAX_NAME_LENGTH:
        return f"{what} is longer than {MAX_NAME_LENGTH} characters"
    # ASCII has no format character, and its control characters are what it cannot print
    if (not name.isprintable()) if name.isascii() else _controls(name):
        return f"{what} holds a control character"
    if name != name.strip():
        return f"{what} begins or ends with a space"
    if name.lower().startswith(GROUP_PREFIX):
        return f"{what} may not begin with {GROUP_PREFIX!r}: a group is never an actor"
    return None


def _controls(name: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf") for c in name)


# set while serving an open-access demo's request: the scope is that request, not the engine
_EVERYONE_OPERATES: ContextVar[bool] = ContextVar("signoff_everyone_operates", default=False)


@contextmanager
def everyone_operates() -> Iterator[None]:
    """Within this block (this thread or task, and what it starts), every actor is an operator:
    what an open-access demo's requests run under. The engine's own operators are unchanged, so
    another app or program on the same engine keeps its rules."""
    token = _EVERYONE_OPERATES.set(True)
    try:
        yield
    finally:
        _EVERYONE_OPERATES.reset(token)


def actor_problem(actor: str) -> str | None:
    """Why `actor` cannot be an actor's name, or None (`name_problem`; the name is quoted
    in the answer only when there is one to give)."""
    if name_problem(actor) is None:
        return None
    return name_problem(actor, f"the actor's name {actor[:60]!r}")


def check_actor(actor: str | None) -> None:
    """Raise InvalidData when `actor` (None: the program) cannot be an actor's name."""
    if actor is None:
        return
    if not isinstance(actor, str):
        raise InvalidData("an actor's name must be text")
    problem = actor_problem(actor)
    if problem:
        raise InvalidData(problem)


class _ReadOnly:
    """`Annotated[bool, ReadOnly]`: a field the workflow keeps for itself. Start data from a
    named actor may not set it, and its JSON schema says `readOnly` (the start form skips it)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["readOnly"] = True
        return schema

    def __repr__(self) -> str:
        return "ReadOnly"


ReadOnly = _ReadOnly()


@dataclass
class Authority:
    """The engine's operators and groups, and the Slack ids its users go by. One object,
    shared by the engine and its handlers (`Engine.add_operators` widens it in place).

    `signed_in` holds the groups an identity provider or an authenticating proxy vouched for
    when a user last signed in (user name -> group names), beside the configured `groups`:
    `remember_groups` replaces a user's entry at each sign-in."""

    operators: frozenset[str] = frozenset()  # user names, Slack ids or group:NAME
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    slack_users: Mapping[str, str] = field(default_factory=dict)  # user name -> Slack id
    viewers: frozenset[str] = frozenset()  # see every instance, change nothing
    signed_in: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        operators: Iterable[str] | None = None,
        groups: Mapping[str, Iterable[str]] | None = None,
        slack_users: Mapping[str, str] | None = None,
        viewers: Iterable[str] | None = None,
    ) -> Authority:
        for name, given in (("operators", operators), ("viewers", viewers)):
            if isinstance(given, str):
                raise TypeError(f'{name} is a list of names, e.g. ["carol", "group:ops"]')
        return cls(
            frozenset(operators or ()),
            {name: frozenset(members) for name, members in (groups or {}).items()},
            dict(slack_users or {}),
            frozenset(viewers or ()),
        )

    # --- who someone is ------------------------------------------------------------------------

    def identities(self, actor: str) -> set[str]:
        """Every name `actor` goes by: their user name, their Slack id, and `group:NAME` for
        each group that lists either."""
        if actor_problem(actor):  # never anyone: a group's name, an empty one
            return set()
        names = {actor}
        if actor in self.slack_users:
            names.add(self.slack_users[actor])
        names.update(name for name, sid in self.slack_users.items() if sid == actor)
        vouched = [g for name in names for g in self.signed_in.get(name, ())]
        names.update(
            GROUP_PREFIX + group for group, members in self.groups.items() if names & members
        )
        names.update(GROUP_PREFIX + group for group in vouched)
        return names

    def remember_groups(self, user: str, groups: Iterable[str]) -> None:
        """Make `user` a member of exactly `groups` (names without `group:`) besides the
        configured ones, until the next call for them: what their identity provider said at
        sign-in. An empty `groups` forgets them."""
        if isinstance(groups, str):
            raise TypeError('groups is a list of group names, e.g. ["finance"]')
        found = frozenset(groups)
        if not found:
            self.signed_in.pop(user, None)
        elif self.signed_in.get(user) != found:
            self.signed_in[user] = found  # one assignment: readers on other threads see either

    def matches(self, actor: str, allowed: Iterable[str]) -> bool:
        """Whether `actor` is one of `allowed` (names, Slack ids or group:NAME)."""
        return bool(self.identities(actor) & set(allowed))

    def same_person(self, one: str, other: str) -> bool:
        """Whether two actor names are the same person (a user name and their Slack id)."""
        mine = self.identities(one)
        return any(not n.startswith(GROUP_PREFIX) and n in mine for n in self.identities(other))

    # --- operators -----------------------------------------------------------------------------

    def is_operator(self, actor: str | None) -> bool:
        """The program (None) always is; "*" among the operators makes every actor one."""
        return (
            actor is None
            or "*" in self.operators
            or _EVERYONE_OPERATES.get()
            or self.matches(actor, self.operators)
        )

    def sees_all(self, actor: str | None) -> bool:
        """Whether `actor` sees every instance: the program, an operator or a viewer. Anyone
        else sees the instances they take part in (storage.visibility says which)."""
        return self.is_operator(actor) or self.matches(actor or "", self.viewers)

    def require_operator(self, actor: str | None, action: str) -> None:
        """Raise NotAllowed unless `actor` may `action` ("retry instance X")."""
        if self.is_operator(actor):
            return
        raise NotAllowed(
            f"{actor} may not {action}: only operators may"
            + (f" ({', '.join(sorted(self.operators))})" if self.operators else " (none is set)")
        )

    # --- starting ------------------------------------------------------------------------------

    def check_start(
        self, workflow: type[Workflow], data: Mapping[str, Any], actor: str | None
    ) -> None:
        """Raise NotAllowed when `actor` may not start `workflow`, InvalidData when the data
        sets a field the workflow keeps for itself."""
        if actor is None:
            return
        starters = getattr(workflow, "starters", None)
        name = workflow.registered_name()
        if starters is not None and not self.matches(actor, starters):
            raise NotAllowed(
                f"{actor} may not start {name}; who may: {', '.join(starters) or 'nobody'}"
            )
        kept = [f for f in read_only_fields(workflow) if f in data]
        if kept:
            raise InvalidData(
                f"{name}: {', '.join(kept)} {'is' if len(kept) == 1 else 'are'} read-only: "
                "the workflow sets it itself, start data may not"
            )

    # --- approvals -----------------------------------------------------------------------------

    def check_decision(
        self,
        actor: str | None,
        approvers: Sequence[str] | None,
        *,
        starter: str | None,
        allow_self: bool,
        voters: Iterable[str] = (),
        excused: Iterable[str] = (),
    ) -> None:
        """Raise NotAllowed unless `actor` may decide an approval that `approvers` (None: anyone)
        may decide now, started by `starter`, on which `voters` have already voted; `excused`
        handed their part to someone else (see `core.handover`)."""
        if actor is None:
            return
        if approvers is not None and not self.matches(actor, approvers):
            raise NotAllowed(
                f"{actor} may not decide this: only {', '.join(approvers) or 'nobody'} may"
            )
        if any(self.same_person(actor, e) for e in excused):
            raise NotAllowed(f"{actor} handed their part of this to someone else")
        if not allow_self and starter is not None and self.same_person(actor, starter):
            raise NotAllowed(
                f"{actor} started this instance and may not decide it (separation of duties)"
            )
        if any(self.same_person(actor, v) for v in voters if v):
            raise NotAllowed(f"{actor} has already voted on this; each approver votes once")

    def check_handover(
        self,
        actor: str | None,
        giver: str,
        to: str,
        *,
        deciders: Sequence[str] | None,
        starter: str | None,
        allow_self: bool,
        voters: Sequence[str] = (),
        excused: Iterable[str] = (),
    ) -> None:
        """Raise unless `actor` may hand `giver`'s part of an approval to `to`: the giver holds
        a part (may decide it now, by `deciders` after earlier hand-overs) and has not voted
        with it; the actor is the giver, deciding it themselves, or an operator; `to` is one
        person (never a group), not the giver nor the actor, not the starter of an approval
        with `allow_self=False`, and neither decides it already nor has voted on it. Refusals
        are `NotAllowed` (who may not) or `InvalidData` (a hand-over that makes no sense)."""
        problem = name_problem(to, "the person to hand it to")
        if problem:
            raise InvalidData(problem)
        excused = list(excused)
        if deciders is None:
            raise InvalidData("anyone may decide this: there is no part to hand over")
        if not self.is_operator(actor):
            assert actor is not None  # the program is an operator
            if not self.same_person(actor, giver):
                raise NotAllowed(
                    f"{actor} may not hand over {giver}'s part: only {giver} or an operator may"
                )
            self.check_decision(
                actor,
                deciders,
                starter=starter,
                allow_self=allow_self,
                voters=voters,
                excused=excused,
            )
        if not self.matches(giver, deciders) or any(self.same_person(giver, e) for e in excused):
            raise NotAllowed(f"{giver} may not decide this, so has no part to hand over")
        if any(self.same_person(giver, v) for v in voters):
            raise NotAllowed(f"{giver} has already voted on this: their part is spent")
        if self.same_person(to, giver) or (actor is not None and self.same_person(to, actor)):
            raise InvalidData(f"{to} cannot hand a part to themselves")
        if not allow_self and starter is not None and self.same_person(to, starter):
            raise NotAllowed(
                f"{to} started this instance and may not decide it (separation of duties)"
            )
        if any(self.same_person(to, v) for v in voters):
            raise NotAllowed(f"{to} has already voted on this; each approver votes once")
        if self.matches(to, deciders) and not any(self.same_person(to, e) for e in excused):
            raise InvalidData(f"{to} may already decide this: hand it to someone who may not")


def approvers_now(
    approvers: Sequence[str] | None, escalate_to: Sequence[str] | None, escalated: bool
) -> list[str] | None:
    """Who may decide an approval now: its approvers, widened by `escalate_to` once escalated.
    None: anyone."""
    if approvers is None:
        return None
    return [*approvers, *(escalate_to or [])] if escalated else list(approvers)


def checked_reason(approved: bool, reason: object, *, required: bool) -> str:
    """The reason of a decision, stripped; EventRejected when it is not text, too long, or
    missing from a denial that needs one."""
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise EventRejected('"reason" must be text')
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise EventRejected(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    if not approved and required and not reason:
        raise EventRejected("a reason is required to deny: say why")
    return reason


def read_only_fields(workflow: type[Workflow]) -> list[str]:
    """The fields of `workflow` that start data may not set: those marked `ReadOnly` or whose
    JSON schema says `readOnly` (`Field(..., json_schema_extra={"readOnly": True})`)."""
    found = []
    for name, info in workflow.model_fields.items():
        extra = info.json_schema_extra
        if (isinstance(extra, dict) and extra.get("readOnly")) or any(
            m is ReadOnly for m in info.metadata
        ):
            found.append(name)
    return found
