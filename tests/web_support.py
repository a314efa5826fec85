"""Shared by the web tests: the real app on a real SQLite file, signed-in clients, an HTML
parser (the standard library's), and tiny workflows that record what ran."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

from pydantic import BaseModel, Field
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    For,
    Handler,
    If,
    Input,
    On,
    Retry,
    Return,
    S,
    Statement,
    Step,
    Timeout,
    Wait,
    Workflow,
)
from signoff.web import create_app
from signoff.web.auth import hash_password
from signoff.web.examples import WORKFLOWS as EXAMPLES

with warnings.catch_warnings():  # starlette prefers httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PASSWORDS = {"alice": "correct horse", "bob": "battery staple", "carol": "tr0ub4dor"}
TOKENS = {"token-alice-0123456789": "alice", "token-bob-0123456789": "bob"}
ORIGIN = "http://testserver"
TRACE: list[str] = []


@functools.cache
def user_hashes() -> dict[str, str]:
    return {name: hash_password(pw, n=2**10) for name, pw in PASSWORDS.items()}


class Trip(Workflow):
    """A trip request: alice approves; steps append to TRACE."""

    who: str = "bob"
    days: int = 1
    approved: bool = False
    note: str = ""
    fail_booking: bool = False

    def definition(self) -> Statement:
        return S(
            Step("ask", lambda: TRACE.append(f"ask {self.who}")),
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        approve=self.yes,
                        deny=self.no,
                        title=f"Trip for {self.who}",
                        approvers=["alice"],
                    ),
                ),
                On("timeout", Timeout(after=timedelta(hours=1)), Return(error="timed out")),
                On("note", Handler(), Step("noted", lambda: TRACE.append("noted"))),
            ),
            If(not self.approved, Return(error=f"denied: {self.note}")),
            Step("book", self.book, retry=Retry(attempts=1)),
            Return({"booked": self.days}),
        )

    def yes(self, decision: Decision) -> None:
        self.approved = True
        TRACE.append(f"approved by {decision.actor} via {decision.via}")

    def no(self, decision: Decision) -> None:
        self.note = decision.reason
        TRACE.append(f"denied by {decision.actor}: {decision.reason}")

    def book(self) -> None:
        TRACE.append("book")
        if self.fail_booking:
            raise RuntimeError("booking system down")


class Size(BaseModel):
    size: int = Field(ge=1, le=10)
    colour: str = "blue"


class Form(Workflow):
    """Waits for an Input form."""

    size: int = 0
    colour: str = ""

    def definition(self) -> Statement:
        return S(
            Wait("details", On("details", Input(Size, self.take))),
            Return({"size": self.size, "colour": self.colour}),
        )

    def take(self, value: Size) -> None:
        self.size, self.colour = value.size, value.colour


class Rounds(Workflow):
    """Asks again after each denial: one wait, opened once per round."""

    round: int = 0
    done: bool = False

    def definition(self) -> Statement:
        return S(
            For(
                "rounds",
                not self.done,
                Wait(
                    "review",
                    On(
                        "decision",
                        Approval(
                            approve=self.yes,
                            deny=self.no,
                            title=f"Round {self.round}",
                            approvers=["alice", "carol"],
                        ),
                    ),
                ),
            ),
            Return({"rounds": self.round}),
        )

    def yes(self, decision: Decision) -> None:
        self.done = True

    def no(self, decision: Decision) -> None:
        self.round += 1


WORKFLOWS: list[type[Workflow]] = [Trip, Form, *EXAMPLES]


def make_app(engine: Engine, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "secret_key": "test-secret-key",
        "users": user_hashes(),
        "api_tokens": TOKENS,
    }
    if kw.get("open_access"):  # open access answers loopback names only, unless told more
        options["allowed_hosts"] = ["testserver", "127.0.0.1", "localhost"]
    options.update(kw)
    app = create_app(engine, **options)
    app.state.signoff.counts.ttl = 0  # tests look at counts right after changing them
    app.state.signoff.placement.ttl = 0
    return app


def sign_in(client: TestClient, name: str, password: str | None = None) -> str:
    """Sign in through the real form; returns the session's CSRF token."""
    page = client.get("/login")
    token = csrf_of(page.text)
    response = client.post(
        "/login",
        data={
            "username": name,
            "password": password if password is not None else PASSWORDS[name],
            "csrf_token": token,
            "next": "/",
        },
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)


HX = {"HX-Request": "true", "HX-Request-Type": "partial"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'"X-CSRF-Token": "([^"]+)"', html
    )
    assert found, "no CSRF token in the page"
    return found.group(1)


# --- a small DOM from the standard library's HTML parser ---------------------------------------

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, ident: str) -> Node | None:
        return next((n for n in self.iter() if n.attrs.get("id") == ident), None)

    @property
    def text(self) -> str:
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text)
        return "".join(parts)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def form_data(form: Node) -> dict[str, str]:
    """What the browser would post for `form`: its named inputs with their values."""
    return {
        n.attrs["name"] or "": n.attrs.get("value") or ""
        for n in form.find_all("input")
        if n.attrs.get("name")
    }


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root
