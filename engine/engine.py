"""`Engine`: the public API. Every call is one explicit transition; there is no loop of its own.

`Engine` is the door: it builds the runtime's parts and hands each call to the service of its
concern (engine/runtime/: `intake` starts instances and takes events, `repairs` and
`reassignment` are operators' and approvers' changes, `due` fires what falls due, `reading` and
`lists` answer reads as for an actor, `messaging` the messages sent, `deployment` the checks
before a deploy, `tokens` what the dashboard remembers).

A transition loads the instance, takes a short lease on it (so one process drives its steps),
walks its threads until each one blocks, and commits after every step with a version check.
Another writer that commits meanwhile (an event for another thread, a cancel) is merged in.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy
from signoff.engine.core.authority import Authority
from signoff.engine.core.deploy import DeploymentReport
from signoff.engine.core.handlers import Services
from signoff.engine.core.outbound import LinkMaker, Reach, checked_emails
from signoff.engine.core.releases import Release
from signoff.engine.core.workflow import Workflow
from signoff.engine.errors import (
    InvalidData,
)
from signoff.engine.runtime.actions import ActionRunner
from signoff.engine.runtime.arguments import (
    checked_delegates,
    checked_groups,
)
from signoff.engine.runtime.cases import OpenCases
from signoff.engine.runtime.deployment import Deployment
from signoff.engine.runtime.due import DueListeners, DueWork
from signoff.engine.runtime.intake import Intake
from signoff.engine.runtime.linktokens import link_maker_from_environment
from signoff.engine.runtime.lists import Lists
from signoff.engine.runtime.loader import Loader
from signoff.engine.runtime.mail import Mailer
from signoff.engine.runtime.messaging import Messaging
from signoff.engine.runtime.metrics import Metrics
from signoff.engine.runtime.outbox import Outbox
from signoff.engine.runtime.reading import Reading
from signoff.engine.runtime.reassignment import Reassignment
from signoff.engine.runtime.registry import Registry
from signoff.engine.runtime.releases import Releases
from signoff.engine.runtime.repairs import Repairs
from signoff.engine.runtime.runner import Runner
from signoff.engine.runtime.sight import Sight
from signoff.engine.runtime.slack import SlackNotifier
from signoff.engine.runtime.slack_client import base_url_from_environment, client_from_environment
from signoff.engine.runtime.slack_directory import SlackDirectory, slack_actor
from signoff.engine.runtime.tokens import Tokens
from signoff.engine.runtime.unreadable import Unreadable
from signoff.engine.runtime.vigil import Vigil
from signoff.engine.storage import placement
from signoff.engine.storage.delegations import Delegate, Delegations
from signoff.engine.storage.failures import guard_storage
from signoff.engine.storage.liveness import Liveness
from signoff.engine.storage.once import Once
from signoff.engine.storage.seen import Seen
from signoff.engine.storage.sessions import Sessions
from signoff.engine.storage.store import Store
from signoff.engine.views import (
    Counts,
    HistoryEntry,
    InstanceSummary,
    InstanceView,
    OutcomeView,
    WaitView,
)

# How long an instance stays with a process that stopped answering. Short, because it is
# renewed by commits once half of it is spent and, while a step runs, by the lease keeper every
# third of it: a killed process's instances are taken over this long after its last beat (plus
# a sweep).
DEFAULT_LEASE = timedelta(seconds=10)


def utcnow() -> datetime:
    return datetime.now(UTC)


@guard_storage  # a database's refusal reaches callers as StorageError
class Engine:
    """The engine: starts instances of registered workflows, applies events and operators'
    repairs to them, and fires what falls due, each transition committed to `database`.

    It has no loop of its own: every transition is a call (`start`, `send`, `retry`, `cancel`,
    `goto`, `run_due`), so it embeds anywhere; `Scheduler` calls `run_due` on time. Named actors
    are checked here whatever surface they came from (see `Authority`); `actor=None` is the
    program itself. Safe to share between threads; `AsyncEngine` wraps it for asyncio.
    """

    def __init__(
        self,
        database: str | sqlalchemy.Engine = "sqlite:///signoff.db",
        workflows: Iterable[type[Workflow]] = (),
        clock: Callable[[], datetime] | None = None,
        slack: Any = None,
        slack_users: Mapping[str, str] | None = None,
        operators: Iterable[str] | None = None,
        groups: Mapping[str, Iterable[str]] | None = None,
        *,
        viewers: Iterable[str] | None = None,
        base_url: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
        synchronous: str = "FULL",
        migrate: bool = True,
        delegates: Mapping[str, tuple[str, datetime]] | None = None,
        mailer: Mailer | None = None,
        emails: Mapping[str, str] | None = None,
    ) -> None:
        """`database` is a SQLAlchemy URL or the application's own SQLAlchemy `Engine` (then its
        pool, connect arguments and schema are the application's; signoff's tables go where its
        unqualified tables go, `schema_translate_map` or search_path).

        `lease` is how long an instance stays with a process that stopped answering before
        another takes it over (renewed every third of it while a step runs).

        `migrate=True` brings the database to the current schema first (under a database lock,
        so processes starting together are safe); with `migrate=False` a database that is not
        at the current schema raises `SchemaOutdated`, naming the command that upgrades it.

        `operators` may retry, cancel, move threads and send any event; `viewers` see every
        instance and change nothing (names, Slack ids or `group:NAME` of `groups`). Anyone else
        sees the instances they started, may decide or have decided: `get`, `list`, `history`
        and `counts` take `actor=` and answer as for that person.

        `slack` is a `slack_sdk.WebClient` (made from SLACK_BOT_TOKEN and SLACK_API_URL when not
        given; Slack is off without a token). `base_url` is where the dashboard is served
        (default: SIGNOFF_BASE_URL), for the links in Slack messages and emails.

        `mailer=Mailer("smtp://...", sender=...)` emails each approver with an address (from
        `emails={"alice": "alice@example.com"}`, or an approver named by their address) when
        an approval begins, at each reminder and at escalation, with their own Approve / Deny
        links (signed with SIGNOFF_SECRET_KEY, or as the dashboard installs them). Messages go
        through the outbox: written with the commit that made them due, sent after it.

        `delegates` ({"alice": ("erin", until)}) hands alice's part of every approval that
        begins before `until` to erin (see `reassign`; users set their own with `set_delegate`).
        """
        delegated = checked_delegates(delegates or {})
        self.store = Store(database, synchronous=synchronous, migrate=migrate)
        self.clock = clock or utcnow
        # counters and histograms of what this process commits (`/metrics` shows them)
        self.metrics = Metrics()
        # the releases this process runs, recorded in the database (rolling deploys, rollbacks)
        self.releases = Releases(self.store, self._now, self.metrics)
        self.workflows: dict[str, type[Workflow]] = {}
        self.registry = Registry(self.workflows, self.releases)
        self.loader = Loader(self.store, self.workflows, self.releases, self._now)
        self.slack = slack if slack is not None else client_from_environment()
        self.base_url = base_url if base_url is not None else base_url_from_environment()
        self.actions = ActionRunner()
        self.authority = Authority.of(operators, groups, slack_users, viewers)
        self.slack_directory = (
            SlackDirectory(self.slack, self.authority) if self.slack is not None else None
        )
        try:
            known = checked_emails(emails)
        except ValueError as exc:
            raise InvalidData(str(exc)) from None
        self.reach = Reach(
            emails=known,
            link_maker=link_maker_from_environment(self.base_url),
            base_url=self.base_url,
            summarize=self.registry.summary_fields,
            mail=mailer is not None,
        )
        self.outbox = Outbox(self.store, self._now, mailer=mailer, slack=self.slack)
        self.services = Services(
            clock=self._now,
            slack=self.slack,
            authority=self.authority,
            call=self.actions,
            notifier=(
                SlackNotifier(self.slack, self.authority, self.base_url)
                if self.slack is not None
                else None
            ),
            learn_slack_ids=self.slack_directory.learn_addresses if self.slack_directory else None,
            reach=self.reach if self.outbox.active else None,
        )
        self.seen = Seen(self.store)
        self.delegations = Delegations(self.store, delegated)
        self.due_listeners = DueListeners()
        self.runner = Runner(
            self.store,
            self.services,
            lease,
            self.due_listeners,
            self.metrics,
            self.delegations.active,
            self.outbox.queued,
        )
        self.sessions = Sessions(self.store)
        self.once = Once(self.store)
        self.cases = OpenCases(self.services)
        self.sight = Sight(self.store, self.authority, self.workflows)
        self.unreadable = Unreadable(self.store, self.metrics)
        self.reading = Reading(self.store, self.loader, self.registry, self.sight, self.cases)
        self.intake = Intake(
            self.store,
            self.registry,
            self.loader,
            self.reading,
            self.authority,
            self.releases,
            self.runner,
            self.metrics,
            self._now,
        )
        self.due = DueWork(
            self.store,
            self.workflows,
            self.runner,
            self.releases,
            self.outbox,
            self.unreadable,
            self._now,
        )
        self.repairs = Repairs(
            self.loader, self.reading, self.authority, self.runner, self.unreadable, self._now
        )
        self.reassignment = Reassignment(
            self.repairs, self.reading, self.due, self.runner, self.delegations, self._now
        )
        self.messaging = Messaging(
            self.store,
            self.outbox,
            self.loader,
            self.workflows,
            self.authority,
            self.sight,
            self.cases,
            self._now,
        )
        self.deployment = Deployment(
            self.store, self.workflows, self.releases, self.services, self._now
        )
        self.tokens = Tokens(self.sessions, self.once, self.seen, self._now)
        self.lists = Lists(
            self.store,
            self.workflows,
            self.authority,
            self.sight,
            self.cases,
            self.reading,
            self._now,
        )
        self.runner.releases = self.releases
        self.runner.committer.release_of = self.releases.fingerprint
        # PostgreSQL: the lock that tells other processes this one lives, held from the first
        # lease until the engine closes, and the probe for the locks of the dead
        # (engine/runtime/vigil.py)
        self.liveness = Liveness(self.store) if self.store.notifies else None
        self.vigil = (
            Vigil(self.liveness, self.runner.committer.tokens, self._now, self.due_listeners)
            if self.liveness is not None
            else None
        )
        for workflow in workflows:
            self.register(workflow)
        self.releases.start()

    # --- setup ---------------------------------------------------------------------------------

    def register(self, workflow: type[Workflow]) -> None:
        """Register a workflow class; its definition is checked now, built from its defaults."""
        self.registry.register(workflow)

    def add_operators(self, *names: str) -> None:
        """Make more actors operators (names, Slack ids, `group:NAME`, or "*" for everyone: the
        dashboard's open-access demo mode does that)."""
        self.authority.operators = self.authority.operators | frozenset(names)

    def remember_groups(self, user: str, groups: Iterable[str]) -> None:
        """Make `user` a member of `group:NAME` for each of `groups`, in this process, until
        the next call for them, besides the groups configured with `groups=`: what a dashboard
        does each time someone signs in through an identity provider or an authenticating
        proxy that vouches for their groups. It counts wherever `group:NAME` does: approvers,
        operators and starters. An empty list forgets them."""
        self.authority.remember_groups(user, checked_groups(user, groups))

    def use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run `async def` steps and handlers on `loop` (the application's) from now on, while it
        runs; `AsyncEngine` and the dashboard do this for the loop they serve on."""
        self.actions.loop = loop

    def set_link_maker(self, link_maker: LinkMaker | None) -> None:
        """How the Approve / Deny links in emails are made: `(instance id, approver, thread,
        event, wait key, expires at) -> (approve URL, deny URL)`; the dashboard installs its
        own. Without one, links come from SIGNOFF_BASE_URL and SIGNOFF_SECRET_KEY."""
        self.reach.link_maker = link_maker

    def deliver_notices(self, now: datetime | None = None) -> int:
        """Send the outbox's messages that are due (emails, Slack links), each claimed first
        so no two processes send one at once; returns how many went. The `Scheduler` calls it;
        `run_due` does too."""
        return self.messaging.deliver_notices(now)

    def notices(self, instance_id: str) -> list[dict[str, Any]]:
        """The messages queued for an instance (oldest first): to whom (`person`, `address`),
        how (`channel`), about what (`what`, `thread`, `wait_key`), and how it went
        (`status`: pending, sent, failed, dropped; `attempts`, `error`, `sent_at`)."""
        return self.messaging.notices(instance_id)

    def deliveries(self, instance_id: str, actor: str | None = None) -> list[dict[str, Any]]:
        """How the instance's messages fared, the latest per wait, person and channel: each
        with `thread`, `wait_key`, `person`, `channel` (email, slack), `what`, `status`,
        `attempts`, `error`, `at` (when it went, or when it is tried next) and `words`
        ("emailed alice 10:02", "Slack message to bob failed: ..., retrying in 4 s"). `actor`
        as for `get`; the `address` is there only for operators (and the program)."""
        return self.messaging.deliveries(instance_id, actor)

    def announcements(self, instance_id: str, wait_key: str) -> list[dict[str, str]]:
        """The Slack messages that announced that opening of a wait, once sent:
        `[{"channel": ..., "ts": ...}]` (the interactivity endpoint accepts a click only from
        one of these)."""
        return self.messaging.announcements(instance_id, wait_key)

    def send_link(
        self,
        instance_id: str,
        person: str,
        *,
        actor: str | None,
        event: str | None = None,
        thread: str | None = None,
        links: LinkMaker | None = None,
    ) -> str:
        """Send `person` their own link to decide the instance's open approval (by email, or a
        Slack direct message), asked for by `actor` (an operator); the link is never shown to
        the one who asks. Returns where it went ("dave by email (dave@example.com)"); the
        history says who asked, for whom and where. Raises `NotReachable` when it cannot reach
        them, `NotAllowed` when `actor` is no operator or `person` may not decide it. `links`
        makes the link when the engine has no link maker of its own (no SIGNOFF_BASE_URL)."""
        return self.messaging.send_link(
            instance_id,
            person,
            actor=actor,
            event=event,
            thread=thread,
            links=links,
        )

    def on_due(self, listener: Callable[[str, datetime], None]) -> None:
        """Call `listener(instance_id, due_at)` whenever an instance gets something due."""
        self.due_listeners.add(listener)

    def close(self) -> None:
        """Release the database connections this engine opened (not an application's)."""
        if self.vigil is not None:
            self.vigil.close()
        self.store.close()

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the engine's clock must return aware UTC datetimes")
        return now

    # --- transitions ---------------------------------------------------------------------------

    def start(
        self,
        workflow: str | type[Workflow],
        data: Mapping[str, Any] | None = None,
        id: str | None = None,
        *,
        actor: str | None = None,
        via: str = "api",
    ) -> str:
        """Create an instance and run it until every thread blocks; returns its id."""
        return self.intake.start(workflow, data, id, actor=actor, via=via)

    def send(
        self,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
        thread: str | None = None,
        via: str = "api",
        *,
        wait_key: str | None = None,
        link: str | None = None,
    ) -> InstanceView:
        """Deliver `event`; returns once it is applied, raises if it is refused.

        `link` is the id of the approval link the decision came through, kept in the history
        entry beside `via="link"`.

        `wait_key` (a WaitView's `key`) names the one opening of a wait the sender saw; if that
        wait has ended, the event is refused as already decided rather than given to a later
        wait of the same name. An event that arrives while the instance is mid-transition,
        before the wait for it has begun, is kept and delivered when that wait begins; its
        payload and the actor's right are checked before it is kept.

        Who may send what is the engine's `Authority`: an `Approval`'s approvers, anyone for
        an `Input` form, operators for every other event; a refusal raises `NotAllowed`. A
        `Timeout` decides its wait at its due time: an event after that raises
        `AlreadyDecided`, even when the timer has not fired yet (it fires here then).
        """
        return self.intake.send(
            instance_id,
            event,
            payload,
            actor,
            thread,
            via,
            wait_key=wait_key,
            link=link,
        )

    def check_event(
        self,
        instance_id: str,
        event: str,
        payload: Mapping[str, Any] | None = None,
        actor: str | None = None,
        thread: str | None = None,
        via: str = "api",
        *,
        wait_key: str | None = None,
    ) -> WaitView:
        """Would `send` with these arguments be taken now? Raises what `send` would raise (the
        actor may not decide, the payload is refused, the wait was already decided, ...) and
        returns the open wait it would go to; changes nothing and runs no workflow code.

        For a surface that must answer at once and apply later (a Slack click is acknowledged
        within three seconds, and the decision may run steps for longer): check, answer, then
        send. A race lost between the two shows up as the send's refusal."""
        return self.intake.check_event(
            instance_id,
            event,
            payload,
            actor,
            thread,
            via,
            wait_key=wait_key,
        )

    def retry(
        self,
        instance_id: str,
        thread: str | None = None,
        actor: str | None = None,
        *,
        via: str = "api",
    ) -> InstanceView:
        """Re-enter the statement a failed (or backing-off) thread stopped at. Operators only."""
        return self.repairs.retry(instance_id, thread, actor, via=via)

    def cancel(
        self,
        instance_id: str,
        reason: str | None = None,
        actor: str | None = None,
        *,
        via: str = "api",
    ) -> InstanceView:
        """Stop every thread and end the instance as cancelled. Operators only."""
        return self.repairs.cancel(instance_id, reason, actor, via=via)

    def goto(
        self,
        instance_id: str,
        thread: str,
        step: str,
        actor: str | None = None,
        *,
        via: str = "api",
    ) -> InstanceView:
        """Operator repair: continue `thread` at the named statement. Operators only."""
        return self.repairs.goto(instance_id, thread, step, actor, via=via)

    def reassign(
        self,
        instance_id: str,
        to: str,
        actor: str | None = None,
        reason: str | None = None,
        thread: str | None = None,
        event: str | None = None,
        *,
        of: str | None = None,
        via: str = "api",
        wait_key: str | None = None,
    ) -> InstanceView:
        """Hand a part of the instance's open approval (the one of `thread` and `event`, when it
        has several; of the opening `wait_key` names, when given) to `to`: `of`'s part
        (default: the actor's own). An approver may hand on their own part before voting with
        it; an operator (or the program) anyone's. From then on `to` may decide it and the
        giver may not (unless they are an approver by another name too); quorum still counts
        distinct people, and never the starter of an `allow_self=False` approval. `to` is told
        on their channels (a Slack message) right after the commit. The history records it:
        "alice handed their part to erin: on leave". Refused (`NotAllowed`, `InvalidData`,
        `NotWaiting`), with nothing changed: a group or the giver as `to`, someone who decides
        it already or voted on it, or an actor who may not."""
        return self.reassignment.reassign(
            instance_id,
            to,
            actor,
            reason,
            thread,
            event,
            of=of,
            via=via,
            wait_key=wait_key,
        )

    def set_delegate(self, user: str, to: str, until: datetime) -> None:
        """`user` is away until `until`: the approvals that begin meanwhile hand their part to
        `to` (as `delegates=` does; this one is kept in the database, for every process, and
        wins over a configured one). What the dashboard's "away" page sets."""
        self.reassignment.set_delegate(user, to, until)

    def clear_delegate(self, user: str) -> None:
        """`user` is back: their new requests come to them again."""
        self.reassignment.clear_delegate(user)

    def delegate_of(self, user: str) -> Delegate | None:
        """(to whom, until when) `user`'s new requests go now, or None."""
        return self.reassignment.delegate_of(user)

    def run_due(self, now: datetime | None = None, *, limit: int = 100) -> int:
        """Fire due timers, step retries and owed setup/teardown work; returns instances woken.

        Each instance is first claimed in the database (`Store.claim_due`), so several processes
        calling this at once share the work and never fire one timer twice."""
        return self.due.run_due(now, limit=limit)

    def drain_due(
        self, *, most: int = 100_000, stop: Callable[[], bool] | None = None
    ) -> tuple[int, bool]:
        """Fire what is due one instance at a time, each claimed at the time it is taken, until
        nothing due is left to claim. Returns the instances woken, and whether the drain ran
        dry (False: `most` were taken and more may be due, bounded should something fall due
        again and again; or `stop()` said to stop). One at a time, so that several threads
        and processes draining at once share the work evenly (what the `Scheduler` does when
        timers fire together)."""
        return self.due.drain_due(most=most, stop=stop)

    def wake(self, instance_id: str, now: datetime | None = None) -> bool:
        """Do what is due for one instance, if it is due and nobody else is at it (what the
        scheduler's timer for that instance calls). False: nothing was due here."""
        return self.due.wake(instance_id, now)

    # --- reading -------------------------------------------------------------------------------

    def get(self, instance_id: str, actor: str | None = None) -> InstanceView:
        """The instance as it is now. Its waits describe the definition deployed now (its
        approvers, title, ...), not the one in force when they began. With `actor`, an
        instance that person may not see is not found, as one that does not exist."""
        return self.reading.get(instance_id, actor)

    def history(self, instance_id: str, actor: str | None = None) -> list[HistoryEntry]:
        """The instance's audit trail, oldest first: every step, event, vote, decision (who,
        via what, when), failure, retry and repair. `actor` as for `get`."""
        return self.reading.history(instance_id, actor)

    # --- who sees what ---------------------------------------------------------------------------

    def sees_all(self, actor: str | None) -> bool:
        """Whether `actor` sees every instance (the program, an operator, a viewer)."""
        return self.authority.sees_all(actor)

    def may_see(self, instance_id: str, actor: str | None) -> bool:
        """Whether `actor` sees this instance (False when there is none): what `get` asks. A
        surface that refuses someone an action on an instance they may not see tells them it
        does not exist, as the dashboard and the API do, so a refusal reveals nothing."""
        return self.reading.may_see(instance_id, actor)

    def list(
        self,
        status: str | None = None,
        workflow: str | type[Workflow] | None = None,
        limit: int = 50,
        *,
        search: str | None = None,
        before: tuple[datetime, str] | None = None,
        order: str = "recent",
        actor: str | None = None,
        decider: str | None = None,
        overdue: bool = False,
        started_from: datetime | None = None,
        started_before: datetime | None = None,
    ) -> builtins.list[InstanceSummary]:
        """Instances in `order`: "recent" (most recently changed first, the default), "oldest"
        (least recently changed first) or "id". `before` is the (updated_at, id) of the last
        row of the previous page (keyset pagination). `search` is at most MAX_SEARCH
        characters: an id prefix, `field:value` (the data field has that value, or a text
        value starting with it), or else text anywhere in the data. Each row carries the
        workflow's `summary_fields` of its data and its outcome. With `actor`, only the
        instances that person sees. A search may also compare: `amount>200` (a number in the
        data), `started<2026-12-01`, `changed>=2026-11-01T09:00` (InvalidData, with a hint,
        when it cannot be read). `decider`: only instances with an open approval that person
        may decide; `overdue`: only those with a wait past its deadline (a timeout not fired
        yet); `started_from` / `started_before`: only those started at or after / before
        these (aware) times."""
        return self.lists.list(
            status,
            workflow,
            limit,
            search=search,
            before=before,
            order=order,
            actor=actor,
            decider=decider,
            overdue=overdue,
            started_from=started_from,
            started_before=started_before,
        )

    def counts(
        self,
        *,
        workflow: str | type[Workflow] | None = None,
        search: str | None = None,
        actor: str | None = None,
        decider: str | None = None,
        overdue: bool = False,
        started_from: datetime | None = None,
        started_before: datetime | None = None,
        at_most: int | None = None,
    ) -> Counts:
        """How many instances there are in each status (a dict); of `workflow`, and matching
        `search` (as `list` matches it), when given; of those `actor` sees, when given;
        narrowed by `decider`, `overdue`, `started_from` and `started_before` as `list` is.
        A search reads instances' data (on PostgreSQL, an operator's looks it up in the
        trigram index when there is one). `at_most`: count a search's matches only that far;
        when it matches more, the result's `complete` is False and each count is a lower
        bound (a dashboard shows "more than at_most" in a few milliseconds instead of
        counting a million rows)."""
        return self.lists.counts(
            workflow=workflow,
            search=search,
            actor=actor,
            decider=decider,
            overdue=overdue,
            started_from=started_from,
            started_before=started_before,
            at_most=at_most,
        )

    def outcome(
        self, instance_id: str, history: Sequence[HistoryEntry] | None = None
    ) -> OutcomeView:
        """How the instance ended or stands (see `InstanceSummary.outcome`), the step failed
        threads stopped at, the reason it was cancelled, and every decision taken on it, oldest
        first: who, through what, when, with what reason, and the votes that led to it.
        `history` is the instance's `history()` when the caller has read it already."""
        return self.reading.outcome(instance_id, history)

    def gauges(self) -> dict[str, Any]:
        """Figures for monitoring, read from the database (so the same in every process):
        `instances` {(workflow, status): count}, `timers_overdue` (timers past their due time
        that nobody fired yet) and `oldest_overdue_seconds`. Two aggregate queries: cache it."""
        return placement.gauges(self.store, self._now())

    # --- for dashboards ------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The database this engine stores instances in (its password is the caller's to hide)."""
        return self.store.url

    def ping(self) -> None:
        """Raise unless the database answers: what a health check asks."""
        placement.ping(self.store)

    def change_mark(self) -> str:
        """A short token that changes whenever any process commits an instance or changes its
        waits: a dashboard asks it every second or so and refreshes when it moved."""
        return placement.change_mark(self.store)

    def open_approvals(
        self,
        limit: int = 200,
        *,
        after: tuple[datetime, int] | None = None,
        instance_id: str | None = None,
        actor: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Open approval requests, oldest first, in keyset pages.

        Each is a dict with instance_id, workflow, thread, wait, event, began_at, due_at,
        approvers (who may decide now, by the definition deployed now; None: anyone), title,
        required and votes (approvals still needed: required - votes), require_reason, key
        (the wait key for `send(..., wait_key=)`) and cursor: pass `(began_at, cursor)` of the
        last row as `after` for the next page; may_decide and refusal: whether `actor` may decide it
        (None: the program, who may), and if not, why, in a sentence."""
        return self.lists.open_approvals(limit, after=after, instance_id=instance_id, actor=actor)

    def inbox(
        self,
        actor: str | None,
        *,
        workflow: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[dict[str, Any]]:
        """One page of the open approvals `actor` is asked to decide, oldest first: those that
        name one of the actor's identities (user name, Slack id, `group:NAME`) among the
        approvers who may decide now, or name no approvers at all; of `workflow`, matching
        `search` (as `list` matches it, or in the request's title). `actor=None` (the program)
        gets every open approval. Count them all with `inbox_count`.

        Each row has the keys of `open_approvals` (may_decide and refusal answer for `actor`
        exactly: a request they started with `allow_self=False`, or one they already voted on,
        is listed with the refusal that says so), plus `text` (the request's text), `summary`
        (the workflow's `summary_fields` of the instance's data), `deadline` (when a timeout
        of the same wait decides it; None without one), `needed` (approvals still needed) and
        `instance_title` (what people call the instance: `InstanceView.title`).
        """
        return self.lists.inbox(actor, workflow=workflow, search=search, limit=limit, offset=offset)

    def inbox_count(
        self, actor: str | None, *, workflow: str | None = None, search: str | None = None
    ) -> int:
        """How many open approvals `inbox` lists for `actor` over all its pages."""
        return self.lists.inbox_count(actor, workflow=workflow, search=search)

    # --- single-use keys (approval links) ------------------------------------------------------

    def spend_once(self, key: str, expires_at: datetime) -> bool:
        """Record that `key` (e.g. an approval link's id) has been used, in the database every
        process shares; False if it had been before. Keep it until `expires_at`."""
        return self.tokens.spend_once(key, expires_at)

    def refund_once(self, key: str) -> None:
        """Undo `spend_once(key)`: what the key was spent on did not happen after all."""
        self.tokens.refund_once(key)

    def spent_at(self, key: str) -> datetime | None:
        """When `key` was spent with `spend_once`, or None."""
        return self.tokens.spent_at(key)

    def decision_refusals(
        self, instance_id: str, actor: str | None
    ) -> dict[tuple[str, str], str | None]:
        """For each open approval of the instance, by (thread, event): None when `actor` may
        decide it now, else why not, in a sentence (what the dashboard shows beside it)."""
        return self.reading.decision_refusals(instance_id, actor)

    def is_operator(self, actor: str | None) -> bool:
        """Whether `actor` may retry, cancel, move threads and send any event."""
        return self.authority.is_operator(actor)

    def deny_needs_reason(self, instance_id: str, thread: str, event: str) -> bool:
        """Whether denying this approval needs a reason (`Approval(require_reason=...)`, as
        deployed now); True when it is not an open approval."""
        return self.reading.deny_needs_reason(instance_id, thread, event)

    def statement_counts(self) -> dict[str, dict[str, int]]:
        """workflow -> statement name -> how many instances stand there now."""
        return placement.statement_counts(self.store)

    # --- sign-in sessions (for dashboards) -------------------------------------------------

    def open_session(self, user: str, lifetime: timedelta) -> str:
        """Record a signed-in session of `user` ending `lifetime` from now, whatever happens
        meanwhile; returns its token (a secret: only its hash is stored)."""
        return self.tokens.open_session(user, lifetime)

    def session_user(self, token: str) -> str | None:
        """The user of a session that has neither ended nor expired, else None."""
        return self.tokens.session_user(token)

    def end_session(self, token: str) -> None:
        """Sign one session out, in every process at once."""
        self.tokens.end_session(token)

    def end_sessions(self, user: str) -> int:
        """Sign `user` out everywhere; returns how many sessions ended."""
        return self.tokens.end_sessions(user)

    def parked_on(self, workflow: str, statement: str, limit: int = 10) -> builtins.list[str]:
        """Ids of unfinished instances of `workflow` with a thread standing at `statement`
        (first `limit` by id): e.g. the instances a deployment left on a name it removed."""
        return placement.parked_on(self.store, workflow, statement, max(1, min(limit, 500)))

    def check_deployment(self, *, examples: int = 5, page_size: int = 500) -> DeploymentReport:
        """Hold the workflows registered here (the code about to be deployed) against every
        stored instance that is not finished (running, waiting or failed), as
        `signoff check` does.

        Each instance's definition is built from that instance's own data with this code, and
        its threads' positions are looked up in it, after the declared renames
        (`renamed_from`) are applied as its next transition would apply them. The report
        counts, per workflow and per statement or event, the instances the deployment would
        strand (a position, Go thread or open wait's event that is gone, a workflow no longer
        registered, a definition that cannot be built from the data), those it would carry
        over to a renamed statement, and, as warnings, those whose open timers or approvers
        would change; each with up to `examples` instance ids. The database is read in
        keyset pages of `page_size` rows, so memory stays flat however many instances there
        are. Reads only: nothing is changed."""
        return self.deployment.check_deployment(examples=examples, page_size=page_size)

    def releases_recorded(self, workflow: str | None = None) -> builtins.list[Release]:
        """The releases engines recorded on this database (of `workflow`), oldest first per
        workflow: fingerprint, first and last seen, retired or not (`Release.alive(now)`: some
        process ran it lately)."""
        return self.releases.rows.of(workflow)

    def heartbeat(self) -> None:
        """Say that this process still runs its releases (the scheduler does, every sweep)."""
        self.releases.beat(force=True)

    def retire_releases(
        self, fingerprints: Iterable[str] = (), *, unused: bool = False
    ) -> builtins.list[Release]:
        """Retire releases no process runs any more: those named (a fingerprint or a prefix of
        six or more characters), or with `unused` every one no process was seen running lately.
        A retired release no longer counts as newer; one that a process starts again comes
        back. Returns the releases retired."""
        return self.deployment.retire_releases(fingerprints, unused=unused)

    def identities(self, actor: str) -> set[str]:
        """The names an actor goes by: user name, Slack id and `group:NAME`s, whichever apply."""
        return self.authority.identities(actor)

    def slack_actor(self, slack_user_id: str) -> str:
        """The actor a Slack user acts as: the user name `slack_users` maps to their id, else
        the email address Slack has for them (`users.info`: people who sign in with the identity
        provider are known by it), else the Slack id itself."""
        return slack_actor(slack_user_id, self.slack_directory, self.authority)

    def seen_before(self, key: str, keep_for: timedelta) -> bool:
        """Remember `key` for `keep_for`; True when it was already remembered (and has not
        expired). Kept in the database, so every process serving the same database agrees:
        what the Slack endpoint refuses replays with."""
        return self.tokens.seen_before(key, keep_for)
