"""The `signoff` command: run the dashboard (`serve`), the timers alone (`worker`), and operate
on instances from a shell (start, send, list, show, retry, cancel, goto, check), list and
retire the releases recorded (`releases`), and take a database to the current schema
(`db upgrade`). A request refused because a newer release handles the instance exits 75
(EX_TEMPFAIL: try again in a moment).

Configuration comes from options, else from the environment:

    SIGNOFF_DATABASE_URL  any SQLAlchemy URL (default sqlite:///signoff.db)
    SIGNOFF_WORKFLOWS     modules that define workflows, comma separated (default web.examples)
    SIGNOFF_SECRET_KEY    signs session cookies (serve)
    SIGNOFF_USERS         "alice=<hash>,bob=<hash>": dashboard users (serve; see hash-password)
    SIGNOFF_API_TOKENS    "token=actor,...": bearer tokens for the JSON API (serve)
    SIGNOFF_TRUSTED_PROXIES  reverse proxies whose forwarded headers are believed (serve)
    SIGNOFF_OIDC_ISSUER, SIGNOFF_OIDC_CLIENT_ID, SIGNOFF_OIDC_CLIENT_SECRET,
    SIGNOFF_OIDC_USER_CLAIM, SIGNOFF_OIDC_GROUPS_CLAIM   sign in with an OpenID provider (serve)
    SIGNOFF_TRUSTED_USER_HEADER, SIGNOFF_TRUSTED_GROUPS_HEADER   an authenticating proxy's
                          headers naming the user and groups, from SIGNOFF_TRUSTED_PROXIES (serve)
    SIGNOFF_OPERATORS     "carol,group:ops": who may retry, cancel, goto and send any event
    SIGNOFF_GROUPS        "ops=carol,dave;finance=alice,erin": groups for approvers and operators
    SLACK_BOT_TOKEN, SLACK_API_URL, SLACK_SIGNING_SECRET   Slack (off without a token)
    SLACK_TEAM_ID, SLACK_APP_ID   refuse Slack interactions from other workspaces or apps
    SIGNOFF_BASE_URL      where the dashboard is served, for links in Slack messages and emails
    SIGNOFF_SMTP_URL      "smtp://user:password@host:587" (or smtps://): email approvers
    SIGNOFF_MAIL_FROM     the sender of those emails ("signoff <signoff@example.com>")
    SIGNOFF_USER_EMAILS   "alice=alice@example.com,bob=bob@example.com": approvers' addresses
"""

from __future__ import annotations

import argparse
import errno
import getpass
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import FrameType
from typing import Any, TextIO

from signoff.engine import (
    MAX_JSON_DEPTH,
    DeploymentReport,
    Engine,
    Mailer,
    Scheduler,
    SignoffError,
    Unavailable,
    Workflow,
    address_problem,
    json_problem,
    raw_json_depth,
    signed_link_maker,
    upgrade_database,
)

DEFAULT_DATABASE_URL = "sqlite:///signoff.db"
DEFAULT_WORKFLOWS = ("signoff.web.examples",)
EX_TEMPFAIL = 75  # sysexits.h: a temporary failure, try again later
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 10


class ConfigError(Exception):
    """Configuration the command cannot work with; the message says what to fix."""


# --- configuration --------------------------------------------------------------------------


def split_list(value: str | None) -> list[str]:
    """`"a, b c"` -> `["a", "b", "c"]`."""
    return [part for part in (value or "").replace(",", " ").split() if part]


def parse_pairs(value: str | None, what: str, *, split_last: bool = False) -> dict[str, str]:
    """`"k1=v1,k2=v2"` -> `{"k1": "v1", "k2": "v2"}`. Values may hold '=' (password hashes);
    with `split_last`, keys may (tokens) and the value after the last '=' may not."""
    pairs: dict[str, str] = {}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.rpartition("=") if split_last else item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            raise ConfigError(
                f"{what}: expected name=value pairs separated by commas, "
                f"got {item.split('=')[0]!r}=..."
            )
        pairs[key] = val
    return pairs


def load_workflows(modules: Iterable[str]) -> list[type[Workflow]]:
    """The workflow classes the modules offer: their `WORKFLOWS` list, else every Workflow
    subclass they define."""
    if os.getcwd() not in sys.path:  # like uvicorn: modules next to where the command runs
        sys.path.insert(0, os.getcwd())
    found: list[type[Workflow]] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import workflows module '{name}': {exc}") from exc
        listed = getattr(module, "WORKFLOWS", None)
        if listed is None:
            listed = [
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, Workflow)
                and value is not Workflow
                and value.__module__ == module.__name__
            ]
        listed = list(listed)
        bad = [w for w in listed if not (isinstance(w, type) and issubclass(w, Workflow))]
        if bad:
            raise ConfigError(
                f"{name}.WORKFLOWS holds something that is not a Workflow class: {bad[0]!r}"
            )
        if not listed:
            raise ConfigError(
                f"module '{name}' defines no workflows "
                "(define Workflow classes or a WORKFLOWS = [...] list)"
            )
        found.extend(w for w in listed if w not in found)
    return found


def database_url(args: argparse.Namespace) -> str:
    url: str = args.db or os.environ.get("SIGNOFF_DATABASE_URL") or DEFAULT_DATABASE_URL
    return url


def workflow_modules(args: argparse.Namespace) -> list[str]:
    if args.workflows:
        return [m for item in args.workflows for m in split_list(item)]
    return split_list(os.environ.get("SIGNOFF_WORKFLOWS")) or list(DEFAULT_WORKFLOWS)


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show its scheme only
        return url.split("://", 1)[0] + "://..."


def parse_groups(value: str | None) -> dict[str, list[str]]:
    """`"ops=carol,dave;finance=alice,erin"` -> `{"ops": ["carol", "dave"], ...}`."""
    groups: dict[str, list[str]] = {}
    for item in (value or "").split(";"):
        if not item.strip():
            continue
        name, sep, members = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(
                f'SIGNOFF_GROUPS: expected "group=name,name;group=name", got {item.strip()!r}'
            )
        groups[name.strip()] = split_list(members)
    return groups


def secret_key_problem(key: str) -> str | None:
    """Why `key` is too weak to sign sessions and links with, or None."""
    if len(key) < MIN_SECRET_LENGTH:
        return f"is {len(key)} characters long; at least {MIN_SECRET_LENGTH} are needed"
    if len(set(key)) < MIN_SECRET_DISTINCT:
        return f"has only {len(set(key))} different characters; at least {MIN_SECRET_DISTINCT}"
    return None


def mail_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """`mailer=` and `emails=` from SIGNOFF_SMTP_URL, SIGNOFF_MAIL_FROM and
    SIGNOFF_USER_EMAILS; ConfigError names what is wrong (an address with a line break, a
    value that is not an address, a mailer without a sender)."""
    found: dict[str, Any] = {}
    url = env.get("SIGNOFF_SMTP_URL", "").strip()
    sender = env.get("SIGNOFF_MAIL_FROM", "").strip()
    if url:
        if not sender:
            raise ConfigError("SIGNOFF_SMTP_URL is set: set SIGNOFF_MAIL_FROM, the sender, too")
        try:
            found["mailer"] = Mailer(url, sender=sender)
        except ValueError as exc:
            raise ConfigError(f"SIGNOFF_SMTP_URL / SIGNOFF_MAIL_FROM: {exc}") from None
    emails: dict[str, str] = {}
    for item in split_list(env.get("SIGNOFF_USER_EMAILS")):
        name, sep, address = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(
                f"SIGNOFF_USER_EMAILS: {item[:80]!r} is not name=address, like "
                "alice=alice@example.com"
            )
        problem = address_problem(address.strip(), f"the email address of {name.strip()!r}")
        if problem:
            raise ConfigError(f"SIGNOFF_USER_EMAILS: {problem}")
        emails[name.strip()] = address.strip()
    if emails:
        found["emails"] = emails
    return found


def make_engine(args: argparse.Namespace) -> Engine:
    url = database_url(args)
    workflows = load_workflows(workflow_modules(args))
    lease = getattr(args, "lease", None)
    people: dict[str, Any] = {
        "operators": split_list(os.environ.get("SIGNOFF_OPERATORS")),
        "groups": parse_groups(os.environ.get("SIGNOFF_GROUPS")),
        "viewers": split_list(os.environ.get("SIGNOFF_VIEWERS")),
        **mail_settings(os.environ),
    }
    try:
        if lease:
            return Engine(url, workflows, **people, lease=timedelta(seconds=lease))
        return Engine(url, workflows, **people)
    except SignoffError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot open the database {shown_url(url)}: {type(exc).__name__}: {exc}"
        ) from exc


def json_object(text: str | None, what: str) -> dict[str, Any]:
    if text is None:
        return {}
    if text == "-":
        text = sys.stdin.read()
    if raw_json_depth(text) > MAX_JSON_DEPTH:
        raise ConfigError(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, like '{{\"amount\": 120}}'")
    problem = json_problem(value, what)
    if problem:
        raise ConfigError(problem)
    return value


# --- long-running commands --------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    import uvicorn
    from signoff.web.app import LOOPBACK_HOSTS, create_app, settle_heap
    from signoff.web.serving import server_config

    allowed_hosts = [h for item in args.allow_host or [] for h in split_list(item)]
    trusted = split_list(args.forwarded_allow_ips or os.environ.get("SIGNOFF_TRUSTED_PROXIES"))
    if args.open_access:
        if "*" in allowed_hosts:
            raise ConfigError(
                "--open-access makes every visitor an administrator: it answers only to host "
                "names you list, never to --allow-host '*'"
            )
        if args.host not in LOOPBACK and not allowed_hosts:
            raise ConfigError(
                f"--open-access serves on loopback only, not on {args.host}: anyone who "
                "reaches it is an administrator. To serve it there anyway, name the host "
                "names it may answer to with --allow-host NAME"
            )
        allowed_hosts = [*LOOPBACK_HOSTS, *allowed_hosts]
        print(
            "signoff: open access: anyone who reaches it is an administrator; it answers only "
            f"to the host names {', '.join(allowed_hosts)}"
            + ("" if args.host in LOOPBACK else f" and listens on {args.host}"),
            file=out,
        )
    secret_key = os.environ.get("SIGNOFF_SECRET_KEY") or None
    if secret_key is not None and not args.open_access:
        problem = secret_key_problem(secret_key)
        if problem:
            raise ConfigError(
                f"SIGNOFF_SECRET_KEY {problem}: anyone could guess it and sign in as anyone. "
                'Make one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
    engine = make_engine(args)
    if secret_key is None and not args.open_access:
        print(
            "signoff: warning: SIGNOFF_SECRET_KEY is not set; sessions end when the server "
            "restarts",
            file=sys.stderr,
        )
    from signoff.web.auth import hash_problem

    users = parse_pairs(os.environ.get("SIGNOFF_USERS"), "SIGNOFF_USERS")
    for name, stored in users.items():
        problem = hash_problem(stored)
        if problem:
            print(f"signoff: warning: SIGNOFF_USERS: the hash of {name} {problem}", file=sys.stderr)
    from signoff.web.oidc import OIDC

    try:
        oidc = OIDC.from_environment()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    user_header = os.environ.get("SIGNOFF_TRUSTED_USER_HEADER", "").strip() or None
    if not (args.open_access or users or oidc or user_header):
        from signoff.web.auth import NO_WAY_IN

        print(f"signoff: warning: {NO_WAY_IN}", file=sys.stderr)
    try:
        app = create_app(
            engine,
            secret_key=secret_key,
            users=users,
            api_tokens=parse_pairs(
                os.environ.get("SIGNOFF_API_TOKENS"), "SIGNOFF_API_TOKENS", split_last=True
            ),
            open_access=args.open_access,
            slack_signing_secret=os.environ.get("SLACK_SIGNING_SECRET") or None,
            allowed_hosts=allowed_hosts or None,
            oidc=oidc,
            trusted_user_header=user_header,
            trusted_groups_header=os.environ.get("SIGNOFF_TRUSTED_GROUPS_HEADER", "").strip()
            or None,
            trusted_proxies=trusted or None,
        )
    except ValueError as exc:  # a weak name, a trusted proxy that is no address, ...
        engine.close()
        raise ConfigError(str(exc)) from None
    if args.open_access and set(workflow_modules(args)) == set(DEFAULT_WORKFLOWS):
        from signoff.web.examples import seed

        if seed(engine):
            print("signoff: the demo database was empty: added example instances", file=out)
    # Listen before saying so: a busy port is an error here, not after "serving on".
    listener = listen(args.host, args.port)
    scheduler = None if args.no_scheduler else Scheduler(engine, sweep_every=args.sweep_every)
    print(
        f"signoff: serving {', '.join(engine.workflows) or 'no workflows'} from "
        f"{shown_url(engine.database_url)} on http://{args.host}:{args.port}/"
        + ("" if scheduler else " (timers: off here, run `signoff worker`)"),
        file=out,
    )
    if scheduler is not None:
        scheduler.start()
    settle_heap()
    # uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler that was
    # there before: make that one return, so the scheduler below stops cleanly too (exit 0).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        config = server_config(
            app,
            host=args.host,
            port=args.port,
            forwarded_allow_ips=trusted or ["127.0.0.1"],
            log_level=args.log_level,
        )
        quiet_access_log()
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
        signal.signal(signal.SIGTERM, previous)
        if scheduler is not None:
            scheduler.shutdown()
        engine.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a ConfigError that says why not (a busy port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        hint = " (is another server running there? choose another with --port)"
        busy = exc.errno == errno.EADDRINUSE
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}" + (hint if busy else "")
        ) from None
    sock.set_inheritable(True)
    return sock


class _ActionsOnly(logging.Filter):
    """The access log keeps what changes something, and every error: a page refreshing itself
    every few seconds is not worth a line each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5:
            method, status = args[1], args[4]
            if method in ("GET", "HEAD") and isinstance(status, int) and status < 400:
                return False
        return True


def quiet_access_log() -> None:
    logging.getLogger("uvicorn.access").addFilter(_ActionsOnly())


def cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    scheduler = Scheduler(engine, sweep_every=args.sweep_every)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    stop_metrics = None
    if args.metrics_port is not None:
        from signoff.web.metrics import serve_metrics

        try:
            stop_metrics = serve_metrics(engine, args.metrics_host, args.metrics_port)
        except OSError as exc:
            engine.close()
            raise ConfigError(
                f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}"
            ) from exc
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(
        f"signoff worker: firing the timers of {', '.join(engine.workflows)} in "
        f"{shown_url(engine.database_url)} (pid {os.getpid()})"
        + (
            f"; metrics on http://{args.metrics_host}:{args.metrics_port}/metrics"
            if stop_metrics
            else ""
        ),
        file=out,
        flush=True,
    )
    scheduler.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        scheduler.shutdown()
        if stop_metrics is not None:
            stop_metrics()
        engine.close()
    print("signoff worker: stopped", file=out)
    return 0


# --- operating on instances -----------------------------------------------------------------


def _outcome(view: Any, out: TextIO) -> None:
    line = f"{view.id}: {view.status}"
    if view.error:
        line += f" ({view.error})"
    print(line, file=out)


def cmd_start(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        iid = engine.start(
            args.workflow, json_object(args.data, "--data"), id=args.id, actor=args.actor, via="cli"
        )
        if args.json:
            print(json.dumps(engine.get(iid).to_dict(), indent=2), file=out)
        else:
            print(iid, file=out)
    finally:
        engine.close()
    return 0


def cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        view = engine.send(
            args.id,
            args.event,
            json_object(args.payload, "--payload"),
            actor=args.actor,
            thread=args.thread,
            via="cli",
        )
        _outcome(view, out)
        if view.reply is not None:  # what the handler answered
            out.write(f"reply: {json.dumps(view.reply, ensure_ascii=False)}\n")
        if view.kept:
            out.write(f"kept: its wait has not begun; '{args.event}' is delivered when it does\n")
    finally:
        engine.close()
    return 0


def cmd_link(args: argparse.Namespace, out: TextIO) -> int:
    """Send one approver their own link to decide an open approval (by email, or a Slack
    direct message); the link is never printed: it would let whoever reads it decide as them.
    Signed with the server's SIGNOFF_SECRET_KEY, so the server can check it."""
    secret_key = os.environ.get("SIGNOFF_SECRET_KEY")
    if not secret_key:
        raise ConfigError(
            "approval links are signed with the server's secret key: set SIGNOFF_SECRET_KEY "
            "to the one `signoff serve` uses. A server started without one made a random key "
            "that no other process knows; the demo's is kept in .venv/demo-secret-key, so "
            "`make link ID=<id> APPROVER=alice` makes links the demo (`make run`) accepts"
        )
    engine = make_engine(args)
    try:
        where = engine.send_link(
            args.id,
            args.approver,
            actor=args.actor,
            event=args.event,
            thread=args.thread,
            links=signed_link_maker(secret_key, args.base_url),
        )
        engine.deliver_notices()  # now, if the mail server answers; else a scheduler retries
    finally:
        engine.close()
    print(f"sent to {where}", file=out)
    return 0


def cmd_retry(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        _outcome(engine.retry(args.id, args.thread, actor=args.actor, via="cli"), out)
    finally:
        engine.close()
    return 0


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        _outcome(engine.cancel(args.id, args.reason, actor=args.actor, via="cli"), out)
    finally:
        engine.close()
    return 0


def cmd_goto(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        _outcome(engine.goto(args.id, args.thread, args.step, actor=args.actor, via="cli"), out)
    finally:
        engine.close()
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        rows = engine.list(
            status=args.status, workflow=args.workflow, limit=args.limit, search=args.search
        )
    finally:
        engine.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2), file=out)
        return 0
    if not rows:
        print("(no instances)", file=out)
        return 0
    table = [("ID", "WORKFLOW", "STATUS", "WAITING FOR", "UPDATED (UTC)")]
    table += [
        (
            r.id,
            r.workflow,
            r.status,
            ",".join(r.waiting_for) or "-",
            f"{r.updated_at:%Y-%m-%d %H:%M:%S}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    engine = make_engine(args)
    try:
        view = engine.get(args.id)
        history = engine.history(args.id)
    finally:
        engine.close()
    if args.json:
        print(
            json.dumps({**view.to_dict(), "history": [h.to_dict() for h in history]}, indent=2),
            file=out,
        )
        return 0
    print(f"{view.id}  {view.workflow}  {view.status}", file=out)
    print(
        f"  created {view.created_at:%Y-%m-%d %H:%M:%S}  updated "
        f"{view.updated_at:%Y-%m-%d %H:%M:%S} UTC",
        file=out,
    )
    if view.error:
        print(f"  error: {view.error}", file=out)
    if view.result is not None:
        print(f"  result: {json.dumps(view.result)}", file=out)
    print(f"  data: {json.dumps(view.data)}", file=out)
    for thread in view.threads:
        where = f" at {thread.step}" if thread.step else ""
        print(
            f"  thread {thread.id}: {thread.status}{where}"
            + (f" ({thread.error})" if thread.error else "")
            + (f", retry at {thread.retry_at:%H:%M:%S}" if thread.retry_at else ""),
            file=out,
        )
        for wait in thread.waits:
            ahead = "; ".join(
                f"{u['what']} at {u['at']:%Y-%m-%d %H:%M:%S}" for u in wait.upcoming if u.get("at")
            )
            print(
                f"    waits for '{wait.event}' ({wait.kind})" + (f": {ahead}" if ahead else ""),
                file=out,
            )
    print("  history:", file=out)
    for h in history:
        who = f" by {h.actor}" if h.actor else ""
        via = f" via {h.via}" if h.via else ""
        name = f" {h.name}" if h.name else ""
        message = f": {h.message}" if h.message else ""
        print(f"    {h.at:%Y-%m-%d %H:%M:%S}  {h.kind}{name}{who}{via}{message}", file=out)
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    """Validate the workflows' definitions, reach the database, and hold the definitions against
    every unfinished instance stored there: exit 1 on any problem, or when the deployment would
    strand an instance. Warnings (timers or approvers that would change) do not fail it."""
    problems: list[str] = []
    workflows: list[type[Workflow]] = []
    lines: list[str] = []
    for module in workflow_modules(args):
        try:
            workflows.extend(load_workflows([module]))
        except ConfigError as exc:
            problems.append(str(exc))
    checker = Engine("sqlite://", [])  # registration validates; the real database comes next
    valid: list[type[Workflow]] = []
    for workflow in workflows:
        twin = next((w for w in valid if w.registered_name() == workflow.registered_name()), None)
        if twin is not None:
            problems.append(
                f"workflow {workflow.__name__}: registered as '{workflow.registered_name()}', "
                f"like {twin.__name__}; one name, one workflow"
            )
            continue
        try:
            checker.register(workflow)
            valid.append(workflow)
            lines.append(f"ok    workflow {workflow.registered_name()}")
        except SignoffError as exc:
            problems.append(f"workflow {workflow.__name__}: {exc}")
    checker.close()
    url = database_url(args)
    counts: dict[str, int] | None = None
    report: DeploymentReport | None = None
    try:
        engine = Engine(url, valid, migrate=False)  # a check changes nothing, not the schema
        try:
            engine.ping()
            counts = engine.counts()
            report = engine.check_deployment()
        finally:
            engine.close()
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no instances"
        lines.append(f"ok    database {shown_url(url)} ({summary})")
    except Exception as exc:  # any failure means "not reachable"
        problems.append(f"database {shown_url(url)}: {type(exc).__name__}: {exc}")
    ok = not problems and (report is None or report.ok)
    if args.json:
        found = {
            "ok": ok,
            "workflows": sorted(w.registered_name() for w in valid),
            "database": shown_url(url),
            "counts": counts,
            "problems": problems,
            "deployment": report.as_json() if report is not None else None,
        }
        print(json.dumps(found, indent=2), file=out)
        return 0 if ok else 1
    for line in lines:
        print(line, file=out)
    if report is not None:
        for line in deployment_lines(report):
            print(line, file=out)
    for problem in problems:
        print(f"FAIL  {problem}", file=out)
    return 0 if ok else 1


def deployment_lines(report: DeploymentReport) -> list[str]:
    """`signoff check`'s account of a deployment, one finding a line."""
    found = report.as_json()
    lines: list[str] = []
    if found["stranded"]:
        lines.append(
            f"FAIL  deployment would strand {report.stranded_instances} of {report.checked} "
            "unfinished instance(s): deploy a rename with renamed_from, keep what they stand "
            "on, or repair them (retry after a fix, goto) after the deployment"
        )
        lines.extend(f"        {_what(row)}: {_many(row)}" for row in found["stranded"])
    else:
        lines.append(f"ok    deployment strands none of {report.checked} unfinished instance(s)")
    if found["held"]:
        lines.append(
            f"FAIL  a rollback to this code strands {report.held_instances} instance(s): a newer "
            "release moved them where this code does not reach, so they wait for it (keep a "
            "process of it running, or repair them after the rollback)"
        )
        lines.extend(f"        {_what(row, 'held')}: {_many(row)}" for row in found["held"])
    if found["unreadable"]:
        lines.append(
            f"FAIL  {report.unreadable_instances} unfinished instance(s) cannot be read "
            "(their stored state or data is not what signoff wrote): cancel them "
            "(signoff cancel ID), or restore their rows from a backup"
        )
        lines.extend(
            f"        {row['workflow']}: {_many(row)}; e.g. {row['detail']}"
            for row in found["unreadable"]
        )
    if found["carried"]:
        lines.append(
            f"ok    {report.carried_instances} instance(s) move to renamed statements "
            "(renamed_from) at their next transition"
        )
        lines.extend(
            f"        {row['workflow']}: {row['what']} '{row['from']}' -> '{row['to']}': "
            f"{_many(row)}"
            for row in found["carried"]
        )
    if found["warnings"]:
        lines.append(
            f"warn  {report.warned_instances} instance(s) have open waits the new code changes"
        )
        lines.extend(
            f"        {_what(row)}: {_many(row)}; e.g. {row['detail']}" for row in found["warnings"]
        )
    return lines


_KINDS = {
    "statement": "at '{name}', which is gone",
    "thread": "thread of Go '{name}', which is gone",
    "event": "waiting for '{name}' in wait '{wait}', a case that is gone",
    "workflow": "workflow '{name}' is no longer registered",
    "definition": "the definition cannot be built from their data: {name}",
    "timer": "the timer of '{name}' in wait '{wait}' moves",
    "approvers": "the approvers of '{name}' in wait '{wait}' change",
    "handler": "'{name}' in wait '{wait}' gets another kind of handler",
}


_HELD = {
    "statement": "at '{name}', which only a newer release has",
    "thread": "thread of Go '{name}', which only a newer release has",
}


def _what(row: dict[str, Any], held: str = "") -> str:
    text = (_HELD if held else _KINDS).get(row["kind"], "{kind} '{name}'").format(**row)
    return f"{row['workflow']}: {text}"


def _many(row: dict[str, Any]) -> str:
    shown = ", ".join(row["examples"])
    more = ", ..." if row["count"] > len(row["examples"]) else ""
    return f"{row['count']} ({shown}{more})"


def cmd_releases(args: argparse.Namespace, out: TextIO) -> int:
    from signoff.web.releases_cli import releases

    return releases(database_url(args), args, out)


def cmd_db_upgrade(args: argparse.Namespace, out: TextIO) -> int:
    url = database_url(args)
    try:
        before, after = upgrade_database(url)
    except SignoffError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot upgrade the database {shown_url(url)}: {type(exc).__name__}: {exc}"
        ) from exc
    if before == after:
        print(f"{shown_url(url)}: already at schema revision {after}", file=out)
    else:
        print(
            f"{shown_url(url)}: upgraded from schema revision {before or '(empty)'} to {after}",
            file=out,
        )
    return 0


def cmd_hash_password(args: argparse.Namespace, out: TextIO) -> int:
    from signoff.web.auth import hash_password

    if args.password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ConfigError("the two passwords differ")
    if not password:
        raise ConfigError("an empty password cannot be hashed")
    print(hash_password(password), file=out)
    return 0


# --- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signoff",
        description="Durable workflows with humans in the loop.",
        epilog="Environment: SIGNOFF_DATABASE_URL, SIGNOFF_WORKFLOWS, SIGNOFF_SECRET_KEY, "
        "SIGNOFF_USERS, SIGNOFF_API_TOKENS, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, "
        "SLACK_API_URL, SLACK_TEAM_ID, SLACK_APP_ID, SIGNOFF_BASE_URL.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help=f"SQLAlchemy database URL (default: $SIGNOFF_DATABASE_URL or {DEFAULT_DATABASE_URL})",
    )
    common.add_argument(
        "--workflows",
        metavar="MODULE",
        nargs="+",
        action="extend",
        help="modules defining the workflows (default: $SIGNOFF_WORKFLOWS or "
        f"{', '.join(DEFAULT_WORKFLOWS)})",
    )
    timers = argparse.ArgumentParser(add_help=False)
    timers.add_argument(
        "--sweep-every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to look for due work armed elsewhere (default 2)",
    )
    timers.add_argument(
        "--lease",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long an instance stays with a process that stopped answering "
        "before another takes it over (default 10; renewed while a step runs)",
    )
    acting = argparse.ArgumentParser(add_help=False)
    acting.add_argument(
        "--as",
        "--actor",
        dest="actor",
        metavar="NAME",
        default=None,
        help="act as this person: the engine checks what they may do and the history names "
        "them (default: nobody, i.e. the program itself, which may do anything)",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        func: Callable[[argparse.Namespace, TextIO], int],
        help: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(func=func)
        return p

    p = command("serve", cmd_serve, "run the dashboard and JSON API (and the timers)", timers)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not fire timers in this process (run `signoff worker` instead)",
    )
    p.add_argument(
        "--open-access",
        action="store_true",
        help="demo only: anyone who reaches the server is an administrator",
    )
    p.add_argument(
        "--allow-host",
        metavar="NAME",
        action="append",
        help="a host name the server answers to (open access answers loopback names only)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRESSES",
        help="reverse proxies whose X-Forwarded-For/-Proto are believed, comma separated "
        "(default: $SIGNOFF_TRUSTED_PROXIES or 127.0.0.1)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="how much the server logs (default info)",
    )

    p = command("worker", cmd_worker, "fire timers, retries and reminders; no web server", timers)
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port (/metrics, no token: keep it private)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics listen on (default 127.0.0.1)",
    )

    p = command("start", cmd_start, "start an instance of a workflow; prints its id", acting)
    p.add_argument("workflow", help="the workflow's registered name")
    p.add_argument(
        "--data", metavar="JSON", help="the instance's data as a JSON object ('-': stdin)"
    )
    p.add_argument("--id", help="the instance id (default: a random one)")
    p.add_argument("--json", action="store_true", help="print the instance as JSON")

    p = command("send", cmd_send, "send an event to an instance", acting)
    p.add_argument("id", help="the instance's id (`signoff list` shows them)")
    p.add_argument("event", help="the event's name, e.g. decision (`signoff show` lists the waits)")
    p.add_argument(
        "--payload",
        metavar="JSON",
        help="the event's payload, e.g. '{\"approved\": true}' ('-': stdin)",
    )
    p.add_argument("--thread", help="the thread, when several wait for the event")

    p = command("list", cmd_list, "list instances, most recently changed first")
    p.add_argument(
        "--status",
        choices=["running", "waiting", "failed", "completed", "cancelled"],
        help="only instances in this status",
    )
    p.add_argument("--workflow", help="only instances of this workflow")
    p.add_argument(
        "--search",
        help="an id prefix, text in the data, field:value, or a comparison (amount>200, "
        "started<2026-12-01)",
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print them as JSON, one list")

    p = command("show", cmd_show, "show an instance: threads, waits, due times, history")
    p.add_argument("id", help="the instance's id (`signoff list` shows them)")
    p.add_argument("--json", action="store_true", help="print it as JSON")

    p = command(
        "link",
        cmd_link,
        "send one approver their signed, single-use link to decide an open approval (by "
        "email or Slack; never printed)",
        acting,
    )
    p.add_argument("id", help="the instance's id (`signoff list` shows them)")
    p.add_argument("--approver", required=True, help="who decides with it (a user name)")
    p.add_argument("--event", help="the approval's event, when the instance waits for several")
    p.add_argument("--thread", help="the thread, when several wait for the same event")
    p.add_argument(
        "--base-url",
        default=os.environ.get("SIGNOFF_BASE_URL", "http://127.0.0.1:8000"),
        help="where the dashboard is served (default $SIGNOFF_BASE_URL or http://127.0.0.1:8000)",
    )

    p = command("retry", cmd_retry, "re-enter the statement a failed thread stopped at", acting)
    p.add_argument("id", help="the instance's id (`signoff list` shows them)")
    p.add_argument("--thread", help="only this thread (default: every failed one)")

    p = command("cancel", cmd_cancel, "cancel an instance", acting)
    p.add_argument("id", help="the instance's id (`signoff list` shows them)")
    p.add_argument("--reason", help="why, kept in the history")

    p = command("goto", cmd_goto, "operator repair: continue a thread at a named step", acting)
    p.add_argument("id", help="the instance's id (`signoff list` shows them)")
    p.add_argument("thread", help="the thread to move: main, or a Go thread's id")
    p.add_argument("step", help="the named statement it continues at")

    p = command(
        "check",
        cmd_check,
        "before a deploy: check the workflows' definitions, that the database answers, and "
        "which stored instances the new code would strand (exit 1 if any)",
    )
    p.add_argument("--json", action="store_true", help="print the findings as JSON, for CI")

    from signoff.web.releases_cli import add_command

    add_command(sub, common, cmd_releases)

    p = sub.add_parser(
        "db", help="manage the database's schema", description="Manage the database's schema."
    )
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_help = (
        "take the database to the schema this version of signoff needs (safe to run twice, "
        "and while other processes start)"
    )
    p = db_sub.add_parser("upgrade", help=db_help, description=db_help)
    p.add_argument(
        "--db",
        metavar="URL",
        help=f"SQLAlchemy database URL (default: $SIGNOFF_DATABASE_URL or {DEFAULT_DATABASE_URL})",
    )
    p.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser(
        "hash-password",
        help="hash a password for SIGNOFF_USERS",
        description="Hash a password for SIGNOFF_USERS (name=<hash>,...). Reads "
        "it from the terminal, or one line from stdin.",
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_hash_password)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("apscheduler", "alembic"):  # their INFO lines say nothing an operator needs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace, TextIO], int] = args.func
    try:
        return func(args, out or sys.stdout)
    except Unavailable as exc:  # a newer release handles it: try again (EX_TEMPFAIL)
        print(f"signoff: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except (SignoffError, ConfigError) as exc:
        print(f"signoff: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`signoff list --json | head`): stop quietly, as Unix tools do,
        # and point stdout at nothing so the interpreter's last flush does not fail either
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no file (a test's buffer)
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
