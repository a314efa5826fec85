"""A stand-in for Slack: a real HTTP server on 127.0.0.1 that answers the Web API methods
signoff calls (chat.postMessage with metadata, chat.update, views.open, chat.postEphemeral,
conversations.open, and conversations.history / conversations.replies with
include_all_metadata) the way Slack does, keeps the messages as they were last posted or
edited, and can be told to fail the next calls (429 with Retry-After, or 500), or to hold the
answer to the next post (the caller may be killed while it waits). slack-sdk's WebClient is
pointed at it through its `base_url` (what SLACK_API_URL sets).

It also plays Slack's other half: interactions (a click on a posted button, the submission of
an opened form), signed with the signing secret and form-encoded exactly as Slack sends them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

TOKEN = "xoxb-signoff-test"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T0SIGNOFF"
APP = "A0SIGNOFF"


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0
    metadata: dict[str, Any] | None = None

    def words(self) -> str:
        """Every text of the message, blocks included, as one string (for assertions)."""
        found: list[str] = [self.text]

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                if isinstance(value.get("text"), str):
                    found.append(value["text"])
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(self.blocks)
        return "\n".join(found)

    def buttons(self) -> dict[str, dict[str, Any]]:
        """action_id -> the button, with the block_id it sits in."""
        return {
            element["action_id"]: {**element, "block_id": block.get("block_id")}
            for block in self.blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
            if element.get("type") == "button"
        }


@dataclass
class FakeSlack:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    failures: list[tuple[int, float | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    server: ThreadingHTTPServer | None = None
    people: dict[str, str] = field(default_factory=dict)  # the workspace's users: id -> email
    # set: the next chat.postMessage is recorded, then its answer waits until `released`
    holding: bool = False
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    held_ts: str | None = None

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                self._answer(path, {k: v[0] for k, v in parse_qs(query).items()})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode()
                kind = self.headers.get("content-type", "")
                if kind.startswith("application/json"):
                    args = json.loads(raw or "{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw).items()}
                self._answer(self.path, args)

            def _answer(self, path: str, args: dict[str, Any]) -> None:
                method = path.rsplit("/", 1)[-1]
                token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                status, headers, body = fake.answer(method, args, token)
                if fake.held_ts is not None and body.get("ts") == fake.held_ts:
                    fake.released.wait(60)  # the caller may be killed meanwhile
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def hold_next_post(self) -> None:
        """Record the next chat.postMessage, then keep its caller waiting for the answer
        (`held` is set once it is recorded) until `release`."""
        with self.lock:
            self.holding = True

    def release(self) -> None:
        self.released.set()

    def fail_next(self, times: int, status: int, retry_after: float | None = None) -> None:
        """Answer the next `times` calls with `status` (429 carries Retry-After)."""
        with self.lock:
            self.failures.extend([(status, retry_after)] * times)

    # --- the Web API ---------------------------------------------------------------------------

    def answer(
        self, method: str, args: dict[str, Any], token: str
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self.lock:
            self.calls.append((method, args))
            if self.failures:
                status, retry_after = self.failures.pop(0)
                if status == 429:
                    return 429, {"Retry-After": f"{retry_after or 1:g}"}, _error("ratelimited")
                return status, {}, _error("internal_error")
            if token != TOKEN:
                return 200, {}, _error("invalid_auth")
            blocks = args.get("blocks") or []
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            if method == "chat.postMessage":
                channel = str(args["channel"])
                if channel.startswith(("U", "W")):  # a user id: the app's DM with them
                    channel = "D" + channel[1:]
                ts = f"{1767600000 + next(self._ts)}.000100"
                thread_ts = args.get("thread_ts")
                metadata = args.get("metadata")
                if isinstance(metadata, str):
                    metadata = json.loads(metadata)
                self.messages[(channel, ts)] = Message(
                    channel, ts, str(args.get("text", "")), blocks, thread_ts, 0, metadata
                )
                if self.holding:
                    self.holding, self.held_ts = False, ts
                    self.held.set()
                return 200, {}, {"ok": True, "channel": channel, "ts": ts}
            if method == "conversations.open":
                users = str(args.get("users", ""))
                if not users.startswith(("U", "W")):
                    return 200, {}, _error("user_not_found")
                return 200, {}, {"ok": True, "channel": {"id": "D" + users[1:]}}
            if method in ("conversations.history", "conversations.replies"):
                channel = str(args.get("channel", ""))
                with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
                if method == "conversations.history":
                    found = [
                        m
                        for m in self.messages.values()
                        if m.channel == channel and not m.thread_ts
                    ]
                else:
                    parent = str(args.get("ts", ""))
                    found = [
                        m
                        for m in self.messages.values()
                        if m.channel == channel and parent in (m.ts, m.thread_ts)
                    ]
                found.sort(key=lambda m: m.ts, reverse=method == "conversations.history")
                limit = int(args.get("limit") or 100)
                shown = [
                    {
                        "type": "message",
                        "ts": m.ts,
                        "text": m.text,
                        **({"thread_ts": m.thread_ts} if m.thread_ts else {}),
                        **({"metadata": m.metadata} if with_metadata and m.metadata else {}),
                    }
                    for m in found[:limit]
                ]
                return 200, {}, {"ok": True, "messages": shown, "has_more": len(found) > limit}
            if method == "chat.update":
                key = (str(args["channel"]), str(args["ts"]))
                if key not in self.messages:
                    return 200, {}, _error("message_not_found")
                message = self.messages[key]
                message.text, message.blocks = str(args.get("text", "")), blocks
                message.edits += 1
                return 200, {}, {"ok": True, "channel": key[0], "ts": key[1]}
            if method == "views.open":
                return 200, {}, {"ok": True, "view": {"id": f"V{next(self._ts)}"}}
            if method == "chat.postEphemeral":
                return 200, {}, {"ok": True, "message_ts": f"{time.time():.6f}"}
            if method == "users.info":
                email = self.people.get(str(args.get("user")))
                if email is None:
                    return 200, {}, _error("user_not_found")
                user = {"id": args["user"], "profile": {"email": email}}
                return 200, {}, {"ok": True, "user": user}
            if method == "users.lookupByEmail":
                wanted = str(args.get("email", "")).lower()
                found = next((i for i, e in self.people.items() if e.lower() == wanted), None)
                if found is None:
                    return 200, {}, _error("users_not_found")
                return 200, {}, {"ok": True, "user": {"id": found}}
            return 200, {}, _error("unknown_method")

    # --- reading what was posted -----------------------------------------------------------------

    def posted(self) -> list[Message]:
        """The top-level messages (not thread replies), oldest first."""
        with self.lock:
            return [m for m in self.messages.values() if m.thread_ts is None]

    def replies(self, message: Message) -> list[Message]:
        with self.lock:
            return [m for m in self.messages.values() if m.thread_ts == message.ts]

    def called(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [args for name, args in self.calls if name == method]

    def ephemerals(self, user: str | None = None) -> list[str]:
        return [
            str(a.get("text"))
            for a in self.called("chat.postEphemeral")
            if user is None or a.get("user") == user
        ]

    def opened_views(self) -> list[dict[str, Any]]:
        views = []
        for args in self.called("views.open"):
            view = args["view"]
            views.append(json.loads(view) if isinstance(view, str) else view)
        return views


def _error(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


# --- Slack's other half: signed interactions --------------------------------------------------


_trigger = itertools.count(1)


def click(
    message: Message,
    action_id: str,
    user: str,
    *,
    team: str = TEAM,
    app: str = APP,
    value: str | None = None,
) -> dict[str, Any]:
    """The block_actions payload Slack sends when `user` clicks a button of `message`."""
    button = message.buttons()[action_id]
    now = time.time()
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "signoff-test"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": app,
        "token": "deprecated-verification-token",
        "trigger_id": f"{next(_trigger)}.{int(now)}.abcdef",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "channel": {"id": message.channel, "name": "approvals"},
        "message": {
            "type": "message",
            "ts": message.ts,
            "text": message.text,
            "blocks": message.blocks,
        },
        "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": button["block_id"],
                "text": button["text"],
                "value": button["value"] if value is None else value,
                "style": button.get("style"),
                "action_ts": f"{now:.6f}",
            }
        ],
    }


def submission(
    view: dict[str, Any], user: str, reason: str | None, *, team: str = TEAM, app: str = APP
) -> dict[str, Any]:
    """The view_submission payload Slack sends when `user` submits an opened form."""
    values = {
        block["block_id"]: {
            block["element"]["action_id"]: {"type": "plain_text_input", "value": reason}
        }
        for block in view["blocks"]
        if block.get("type") == "input"
    }
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "signoff-test"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": app,
        "trigger_id": f"{next(_trigger)}.{int(time.time())}.fedcba",
        "view": {
            "id": f"V{next(_trigger)}",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "blocks": view["blocks"],
            "state": {"values": values},
        },
    }


def form(payload: dict[str, Any]) -> bytes:
    """How Slack sends an interaction: form-encoded, one field `payload` holding the JSON."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack signs a request with (v0 HMAC-SHA256 over `v0:<ts>:<body>`)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": f"v0={digest}",
    }
