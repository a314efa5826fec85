"""`POST /slack/interactions`: Approve / Deny / Reassign clicks, the deny reason form and the
reassign form (a user picker: the clicker hands their part to that person), from Slack; for a
gated call (`signoff.engine.agents`), "Edit and approve" and its form of the arguments.

Order of the checks, each of which refuses with a 4xx and changes nothing:
1. the body is at most `MAX_BODY` bytes;
2. the signature (`X-Slack-Signature`, HMAC-SHA256 of `v0:<timestamp>:<raw body>` with the
   signing secret) is verified over the raw body before anything is parsed, and the timestamp
   is within five minutes of now;
3. the body is `payload=<JSON object>`, form-encoded, and nothing else;
4. the team and app are the expected ones (when `slack_team_id` / `slack_app_id` are set);
5. the same delivery has not been received before (a hash of the body is remembered in the
   database for `REPLAY_WINDOW`, so a replay is refused in whichever process it lands);
6. the button names an instance and an open wait, and was clicked in the very message that
   announced that wait (a value naming another instance or an earlier wait is refused).

Then the engine decides, in the one place that knows who may: a Slack user acts as the user
name `Engine(slack_users=...)` maps their id to, or as the Slack id itself. A click the rules
refuse is answered with an ephemeral message in plain words. Slack wants an answer within
three seconds, and a decision may run workflow steps for longer, so the endpoint checks the
decision at once (`Engine.check_event`), answers, and applies it (`Engine.send`) and calls the Web
API (`views.open`, `chat.postEphemeral`) on a small pool of worker threads afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from signoff.engine import (
    MAX_JSON_DEPTH,
    Conflict,
    Engine,
    EventRejected,
    InstanceNotFound,
    NotAllowed,
    SignoffError,
    Unavailable,
    raw_json_depth,
    read_slack_button,
)
from signoff.engine import SLACK_APPROVE_ACTION as APPROVE_ACTION
from signoff.engine import SLACK_DENY_ACTION as DENY_ACTION
from signoff.engine import SLACK_EDIT_ACTION as EDIT_ACTION
from signoff.engine import SLACK_REASSIGN_ACTION as REASSIGN_ACTION
from signoff.web.security import BodyTooLargeError, read_capped
from signoff.web.state import dashboard
from slack_sdk.signature import Clock, SignatureVerifier
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

log = logging.getLogger("signoff.web.slack")

MAX_BODY = 128 * 1024  # a click carries the whole message it was in; ours stay far below this
MAX_SKEW = 5 * 60  # Slack's own rule: a request older than five minutes is refused
# a replay must be recognised for as long as its signature is accepted, on either side of now
REPLAY_WINDOW = timedelta(seconds=2 * MAX_SKEW + 60)
DENY_VIEW = "signoff_deny"
REASON_BLOCK = "reason"
REASON_ACTION = "reason"
EDIT_VIEW = "signoff_edit"  # a gated call's arguments, edited, then approved
ARGUMENTS_BLOCK = "arguments"
ARGUMENTS_ACTION = "arguments"
MAX_ARGUMENTS_TEXT = 3000  # Slack's limit for a text input
REASSIGN_VIEW = "signoff_reassign"
TO_BLOCK = "to"
TO_ACTION = "to"
SLACK_ID = re.compile(r"[A-Z0-9]{2,40}")
WORKERS = 2


@dataclass
class SlackApp:
    """What the endpoint keeps: the secret, who to expect, the Web API client, the workers."""

    signing_secret: str
    team_id: str | None = None
    app_id: str | None = None
    client: Any = None  # the engine's slack_sdk.WebClient; None: no token, no Web API calls
    clock: Callable[[], float] = time.time
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(WORKERS, thread_name_prefix="signoff-slack")
    )
    pending: set[Future[None]] = field(default_factory=set)

    def later(self, work: Callable[[], None]) -> None:
        """Run `work` on a worker after the answer has gone out; log what it raises."""

        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("Slack follow-up work failed")

        future = self.pool.submit(run)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until the work handed to the workers so far is done (tests, shutdown)."""
        _, not_done = wait(list(self.pending), timeout=timeout)
        return not not_done

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def signature_ok(self, body: bytes, timestamp: str, signature: str) -> bool:
        verifier = SignatureVerifier(self.signing_secret, _Clock(self.clock))
        try:
            return bool(verifier.is_valid(body, timestamp, signature))
        except UnicodeDecodeError:  # slack-sdk signs text; Slack never sends anything else
            return False

    def ephemeral(self, channel: str | None, user: str, text: str) -> None:
        """Tell one person something in the channel they clicked in; nobody else sees it."""
        if self.client is None or not channel:
            return
        self.client.chat_postEphemeral(channel=channel, user=user, text=text)


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def interactions(request: Request) -> Response:
    board = dashboard(request)
    slack = board.slack
    if slack is None:
        return _refused(404, "Slack interactivity is off here: no signing secret is configured")
    try:
        body = await _verified_body(request, slack)
        payload = _payload(request, body)
        _expected_sender(payload, slack)
        if await run_in_threadpool(
            board.engine.seen_before, "slack:" + hashlib.sha256(body).hexdigest(), REPLAY_WINDOW
        ):
            raise Refused(409, "this interaction was received before; it is applied only once")
        kind = payload.get("type")
        if kind == "block_actions":
            return await _clicked(board.engine, slack, payload)
        if kind == "view_submission":
            return await _submitted(board.engine, slack, payload)
        raise Refused(400, f"signoff does not handle Slack interactions of type {kind!r}")
    except Refused as exc:
        return _refused(exc.status, str(exc))


# --- checks before anything is parsed or changed -----------------------------------------------


async def _verified_body(request: Request, slack: SlackApp) -> bytes:
    try:
        body = await read_capped(request, MAX_BODY)
    except BodyTooLargeError:
        raise Refused(413, f"the request body is larger than {MAX_BODY // 1024} KiB") from None
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not timestamp or not signature:
        raise Refused(401, "the request is not signed (X-Slack-Signature is missing)")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Refused(401, "the request's timestamp is not a number of seconds")
    if abs(slack.clock() - int(timestamp)) > MAX_SKEW:
        raise Refused(
            401, "the request is more than five minutes old (or the clock is off): refused"
        )
    if not slack.signature_ok(body, timestamp, signature):
        raise Refused(401, "the signature does not match: not from Slack, or a wrong secret")
    return body


def _payload(request: Request, body: bytes) -> dict[str, Any]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise Refused(400, "expected a form-encoded body (payload=...)")
    try:
        fields = parse_qs(
            body.decode("utf-8"), strict_parsing=True, max_num_fields=4, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "the body is not a well-formed form") from None
    raw = fields.get("payload")
    if set(fields) != {"payload"} or raw is None or len(raw) != 1:
        raise Refused(400, "the body must hold exactly one field, payload")
    if raw_json_depth(raw[0]) > MAX_JSON_DEPTH:
        raise Refused(400, "the payload is nested too deeply")
    try:
        payload = json.loads(raw[0], parse_constant=_no_constant)
    except _NotANumber as exc:
        raise Refused(400, f"the payload is not JSON: {exc}") from None
    except ValueError:
        raise Refused(400, "the payload is not JSON (truncated?)") from None
    if not isinstance(payload, dict):
        raise Refused(400, "the payload is not a JSON object")
    return payload


class _NotANumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """Python's json reads NaN, Infinity and -Infinity; JSON has no such numbers, and Slack
    never sends them."""
    raise _NotANumber(f"{name} is not a JSON number")


def _expected_sender(payload: dict[str, Any], slack: SlackApp) -> None:
    team = _text(payload, "team", "id")
    if slack.team_id is not None and team != slack.team_id:
        raise Refused(403, "this interaction comes from another Slack workspace")
    if slack.app_id is not None and payload.get("api_app_id") != slack.app_id:
        raise Refused(403, "this interaction is meant for another Slack app")
    user = _text(payload, "user", "id")
    if user is None or not SLACK_ID.fullmatch(user):
        raise Refused(400, "the payload names no Slack user")


# --- a click ------------------------------------------------------------------------------------


async def _clicked(engine: Engine, slack: SlackApp, payload: dict[str, Any]) -> Response:
    actions = payload.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise Refused(400, "a click carries exactly one action")
    action = actions[0]
    approve = action.get("action_id") == APPROVE_ACTION
    edit = action.get("action_id") == EDIT_ACTION
    reassign = action.get("action_id") == REASSIGN_ACTION
    if not approve and not edit and not reassign and action.get("action_id") != DENY_ACTION:
        raise Refused(400, "this is not one of signoff's buttons")
    target = read_slack_button(action.get("value"))
    if target is None:
        raise Refused(400, "the button's value is not one signoff wrote (malformed or cut)")
    user = str(_text(payload, "user", "id"))
    channel = _text(payload, "container", "channel_id") or _text(payload, "channel", "id")
    message_ts = _text(payload, "container", "message_ts") or _text(payload, "message", "ts")
    if channel is None or message_ts is None:
        raise Refused(400, "the click does not say which message it came from")
    actor = engine.slack_actor(user)
    # may this person decide this wait now? Approve and deny are allowed to the same people;
    # the reason of a denial is checked when the form comes back
    refusal = await _refusal(engine, target, {"approved": True}, actor, channel, message_ts)
    if refusal is not None:
        status, text = refusal
        slack.later(lambda: slack.ephemeral(channel, user, text))
        return _refused(status, text) if status != 200 else Response(status_code=200)
    if approve:
        slack.later(lambda: _decide(engine, slack, target, {"approved": True}, user, channel))
        return Response(status_code=200)
    trigger = payload.get("trigger_id")
    if not isinstance(trigger, str) or not trigger:
        raise Refused(400, "a click that opens a form needs a trigger_id")
    if edit:
        view = _edit_form(target, channel, message_ts, await _proposed(engine, target))
        slack.later(lambda: _open_form(slack, trigger, view, channel, user))
        return Response(status_code=200)
    if reassign:
        form = _reassign_form(target, channel, message_ts)
        slack.later(lambda: _open_form(slack, trigger, form, channel, user))
        return Response(status_code=200)
    needs_reason = await run_in_threadpool(
        engine.deny_needs_reason, target["instance_id"], target["thread"], target["event"]
    )
    view = _deny_form(target, channel, message_ts, needs_reason)
    slack.later(lambda: _open_form(slack, trigger, view, channel, user))
    return Response(status_code=200)


async def _refusal(
    engine: Engine,
    target: dict[str, str],
    decision: dict[str, Any],
    actor: str,
    channel: str,
    message_ts: str,
) -> tuple[int, str] | None:
    """None when `actor` may send `decision` to the wait `target` names, from that message;
    else the status to answer with (200: a refusal the person is told about) and why."""
    try:
        wait_view = await run_in_threadpool(
            lambda: engine.check_event(
                target["instance_id"],
                target["event"],
                decision,
                actor,
                target["thread"],
                "slack",
                wait_key=target["key"],
            )
        )
    except InstanceNotFound:
        raise Refused(404, "the button names an instance that does not exist") from None
    except Conflict as exc:  # already decided, a stale wait key, not waiting
        return 409, _sentence(str(exc))
    except (NotAllowed, EventRejected, Unavailable) as exc:  # Unavailable: try again in a moment
        return 200, _sentence(str(exc))
    except SignoffError as exc:
        raise Refused(400, str(exc)) from None
    clicked = {"channel": channel, "ts": message_ts}
    posted = (wait_view.stored or {}).get("slack_messages") or []  # by an earlier release
    if clicked not in posted and clicked not in await run_in_threadpool(
        engine.announcements, target["instance_id"], target["key"]
    ):
        raise Refused(403, "the button does not belong to the message it was clicked in")
    return None


def _decide(
    engine: Engine,
    slack: SlackApp,
    target: dict[str, str],
    decision: dict[str, Any],
    user: str,
    channel: str | None,
) -> None:
    """Apply the decision (on a worker, after Slack has its answer). The engine edits the
    message itself (teardown); a refusal that came from a race goes to the person who clicked."""
    try:
        view = engine.send(
            target["instance_id"],
            target["event"],
            decision,
            actor=engine.slack_actor(user),
            thread=target["thread"],
            via="slack",
            wait_key=target["key"],
        )
    except SignoffError as exc:
        slack.ephemeral(channel, user, _sentence(str(exc)))
        return
    if any(w.key == target["key"] for t in view.threads for w in t.waits):
        engine.wake(view.id)  # one vote of several: the message catches up with the count now


# --- the deny form --------------------------------------------------------------------------------


def _modal(
    callback_id: str,
    target: dict[str, str],
    channel: str,
    message_ts: str,
    title: str,
    submit: str,
    blocks: list[dict[str, Any]],
) -> dict[str, Any]:
    """A Slack form about one approval: which one (and its message) rides in the metadata, read
    back by `_form_target` when the form comes back."""
    metadata = json.dumps({**target, "channel": channel, "ts": message_ts}, separators=(",", ":"))
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def _deny_form(
    target: dict[str, str], channel: str, message_ts: str, reason_required: bool
) -> dict[str, Any]:
    return _modal(
        DENY_VIEW,
        target,
        channel,
        message_ts,
        "Deny",
        "Deny",
        [
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": not reason_required,
                "label": {"type": "plain_text", "text": "Why do you deny it?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "multiline": True,
                    "max_length": 2000,
                },
            }
        ],
    )


# --- the edit form of a gated call (signoff.engine.agents) ------------------------------------


async def _proposed(engine: Engine, target: dict[str, str]) -> dict[str, Any]:
    """The arguments a gated call proposes that the approver may edit."""
    view = await run_in_threadpool(engine.get, target["instance_id"])
    for thread in view.threads:
        for open_wait in thread.waits:
            tool = (open_wait.info or {}).get("tool")
            if open_wait.key == target["key"] and isinstance(tool, dict) and tool.get("editable"):
                properties = tool.get("schema", {}).get("properties", {})
                return {k: p.get("default") for k, p in properties.items()}
    raise Refused(400, "the arguments of this request cannot be edited")


def _edit_form(
    target: dict[str, str], channel: str, message_ts: str, proposed: dict[str, Any]
) -> dict[str, Any]:
    text = json.dumps(proposed, indent=2, ensure_ascii=False)
    return _modal(
        EDIT_VIEW,
        target,
        channel,
        message_ts,
        "Edit and approve",
        "Approve",
        [
            {
                "type": "input",
                "block_id": ARGUMENTS_BLOCK,
                "label": {"type": "plain_text", "text": "Arguments (JSON)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ARGUMENTS_ACTION,
                    "multiline": True,
                    "max_length": MAX_ARGUMENTS_TEXT,
                    **({"initial_value": text} if len(text) <= MAX_ARGUMENTS_TEXT else {}),
                },
            }
        ],
    )


def _open_form(
    slack: SlackApp, trigger: str, view: dict[str, Any], channel: str, user: str
) -> None:
    if slack.client is None:
        return
    try:
        slack.client.views_open(trigger_id=trigger, view=view)
    except Exception as exc:  # the trigger lives three seconds: say so, they can click again
        log.warning("views.open failed: %s", exc)
        slack.ephemeral(channel, user, "Slack did not open the form; please click again.")


def _reassign_form(target: dict[str, str], channel: str, message_ts: str) -> dict[str, Any]:
    return _modal(
        REASSIGN_VIEW,
        target,
        channel,
        message_ts,
        "Reassign",
        "Hand over",
        [
            {
                "type": "input",
                "block_id": TO_BLOCK,
                "label": {"type": "plain_text", "text": "Hand your part of this to"},
                "element": {"type": "users_select", "action_id": TO_ACTION},
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Why (kept in the history)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "max_length": 2000,
                },
            },
        ],
    )


def _hand_over(
    engine: Engine, slack: SlackApp, target: dict[str, str], to: str, reason: str, user: str
) -> None:
    """Hand the clicker's part to `to` (on a worker); a refusal goes to the clicker."""
    try:
        engine.reassign(
            target["instance_id"],
            engine.slack_actor(to),
            actor=engine.slack_actor(user),
            reason=reason or None,
            thread=target["thread"],
            event=target["event"],
            wait_key=target["key"],
            via="slack",
        )
    except SignoffError as exc:
        slack.ephemeral(target.get("channel"), user, _sentence(str(exc)))


def _form_target(view: dict[str, Any]) -> dict[str, str]:
    try:
        meta = json.loads(str(view.get("private_metadata") or ""))
    except ValueError:
        meta = None
    keys = {"instance_id", "key", "event", "thread", "channel", "ts"}
    if not isinstance(meta, dict) or set(meta) != keys:
        raise Refused(400, "the form does not say which approval it is about")
    if not all(isinstance(v, str) and v for v in meta.values()):
        raise Refused(400, "the form does not say which approval it is about")
    return meta


async def _submitted(engine: Engine, slack: SlackApp, payload: dict[str, Any]) -> Response:
    view = payload.get("view")
    if isinstance(view, dict) and view.get("callback_id") == REASSIGN_VIEW:
        return await _reassigned(engine, slack, payload, view)
    if not isinstance(view, dict) or view.get("callback_id") not in (DENY_VIEW, EDIT_VIEW):
        raise Refused(400, "this is not one of signoff's forms")
    meta = _form_target(view)
    user = str(_text(payload, "user", "id"))
    block, decision = _decision_of(view)
    if isinstance(decision, str):
        return JSONResponse({"response_action": "errors", "errors": {block: decision[:150]}})
    target = {k: meta[k] for k in ("instance_id", "key", "event", "thread")}
    refusal = await _refusal(
        engine, target, decision, engine.slack_actor(user), meta["channel"], meta["ts"]
    )
    if refusal is not None:  # shown under the field; the form stays open
        return JSONResponse({"response_action": "errors", "errors": {block: refusal[1][:150]}})
    slack.later(lambda: _decide(engine, slack, target, decision, user, meta["channel"]))
    return Response(status_code=200)  # an empty 200 closes the form


def _decision_of(view: dict[str, Any]) -> tuple[str, dict[str, Any] | str]:
    """The form's block, and the decision it submits or why it cannot be read."""
    if view.get("callback_id") == DENY_VIEW:
        reason = _dig(view, "state", "values", REASON_BLOCK, REASON_ACTION, "value")
        if reason is not None and not isinstance(reason, str):
            raise Refused(400, "the reason is not text")
        return REASON_BLOCK, {"approved": False, "reason": reason or ""}
    text = _dig(view, "state", "values", ARGUMENTS_BLOCK, ARGUMENTS_ACTION, "value")
    if not isinstance(text, str) or len(text) > MAX_ARGUMENTS_TEXT:
        return ARGUMENTS_BLOCK, "Write the arguments as a JSON object."
    if raw_json_depth(text) > MAX_JSON_DEPTH:
        return ARGUMENTS_BLOCK, "The arguments are nested too deeply."
    try:
        arguments = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        return ARGUMENTS_BLOCK, f"Not JSON: {exc}"
    if not isinstance(arguments, dict):
        return ARGUMENTS_BLOCK, 'Write the arguments as a JSON object, like {"amount": 30}.'
    return ARGUMENTS_BLOCK, {"approved": True, "arguments": arguments}


async def _reassigned(
    engine: Engine, slack: SlackApp, payload: dict[str, Any], view: dict[str, Any]
) -> Response:
    meta = _form_target(view)
    to = _dig(view, "state", "values", TO_BLOCK, TO_ACTION, "selected_user")
    reason = _dig(view, "state", "values", REASON_BLOCK, REASON_ACTION, "value")
    if not isinstance(to, str) or not SLACK_ID.fullmatch(to):
        return JSONResponse(
            {"response_action": "errors", "errors": {TO_BLOCK: "Choose the person to hand it to."}}
        )
    if reason is not None and not isinstance(reason, str):
        raise Refused(400, "the reason is not text")
    user = str(_text(payload, "user", "id"))
    target = {k: meta[k] for k in ("instance_id", "key", "event", "thread")}
    refusal = await _refusal(
        engine, target, {"approved": True}, engine.slack_actor(user), meta["channel"], meta["ts"]
    )
    if refusal is not None:  # shown under the person field; the form stays open
        return JSONResponse({"response_action": "errors", "errors": {TO_BLOCK: refusal[1][:150]}})
    target["channel"] = meta["channel"]
    slack.later(lambda: _hand_over(engine, slack, target, to, reason or "", user))
    return Response(status_code=200)  # an empty 200 closes the form


# --- small helpers -------------------------------------------------------------------------------


def _refused(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


def _dig(value: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _text(value: Any, *path: str) -> str | None:
    found = _dig(value, *path)
    return found if isinstance(found, str) and found else None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
