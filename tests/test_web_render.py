"""Rendering (web/render.py): full page or fragment, and hostile text rendered inert.

Strings a hostile or careless user can get into workflow data, step errors, approval titles,
deny reasons and event payloads are stored, then every page and fragment is parsed: they must
show up as text, never as markup, attributes or htmx instructions.
"""

from __future__ import annotations

from typing import Any

import pytest
from signoff.engine import (
    Approval,
    Decision,
    Engine,
    On,
    Return,
    S,
    Statement,
    Step,
    Wait,
    Workflow,
)
from signoff.web.render import wants_fragment
from starlette.requests import Request
from web_support import HX, TRACE, TestClient, parse

pytest_plugins = ["web_fixtures"]

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '"><script>alert(1)</script>',
    "'><script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    "<iframe src=javascript:alert(1)></iframe>",
    "<object data=javascript:alert(1)>",
    "<embed src=javascript:alert(1)>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "javascript:alert(1)",
    "<style>body{display:none}</style>",
    "<link rel=stylesheet href=//evil.example/x.css>",
    '<meta http-equiv=refresh content="0;url=//evil.example">',
    "<base href=//evil.example/>",
    "<form action=//evil.example><button>go</button></form>",
    "<input autofocus onfocus=alert(1)>",
    "<textarea></textarea><script>alert(1)</script>",
    "</pre><script>alert(1)</script><pre>",
    "</td></tr></table><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    '<div hx-get="/logout" hx-trigger="load">x</div>',
    '<div hx-post="/instances/x/cancel" hx-trigger="load" hx-target="body">x</div>',
    '<div data-hx-get="/logout" data-hx-trigger="load">x</div>',
    '<div hx-on:click="alert(1)">x</div>',
    '<div hx-on::load="alert(1)">x</div>',
    '<hx-partial id="instance"><script>alert(1)</script></hx-partial>',
    '<template hx type="partial" hx-target="#instance">owned</template>',
    '<div id="instance" hx-swap-oob="true">owned</div>',
    '<div hx-swap-oob="outerHTML:#flash">owned</div>',
    '<button hx-delete="/api/instances" hx-trigger="every 1s">x</button>',
    "<span hx-vals='js:{a: alert(1)}'>x</span>",
    '<div hx-headers=\'{"X-CSRF-Token": "stolen"}\'>x</div>',
    '<a hx-boost="true" href="//evil.example">x</a>',
    '" hx-get="/logout" hx-trigger="load',
    "' hx-get='/logout' hx-trigger='load",
    '" onmouseover="alert(1)',
    "' onmouseover='alert(1)",
    "{{ 7*7 }}",
    "{% raw %}{{ config }}{% endraw %}",
    "${7*7}",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "\u003cscript\u003ealert(1)\u003c/script\u003e",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<<script>script>alert(1)<</script>/script>",
    "\u202e<script>alert(1)</script>",
    "<img src=\"x\" onerror=\"fetch('/approvals/decide',{method:'POST'})\">",
    "<video><source onerror=alert(1)></video>",
    "<marquee onstart=alert(1)>",
    '<x style="background:url(javascript:alert(1))">',
    "<isindex action=javascript:alert(1) type=image>",
]

ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "link",
    "script",
    "body",
    "header",
    "nav",
    "a",
    "kbd",
    "div",
    "span",
    "form",
    "input",
    "button",
    "main",
    "section",
    "p",
    "h1",
    "h2",
    "h3",
    "dl",
    "dt",
    "dd",
    "details",
    "summary",
    "label",
    "select",
    "option",
    "textarea",
    "table",
    "caption",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "strong",
    "b",
    "code",
    "pre",
    "time",
    "article",
    "ul",
    "ol",
    "li",
    "small",
    "abbr",
    "#root",
}


class Hostile(Workflow):
    """Everything it shows comes from its data."""

    text: str = ""
    note: str = ""

    def definition(self) -> Statement:
        return S(
            Step("echo", lambda: None),
            Wait(
                "review",
                On(
                    "decision",
                    Approval(approve=self.ok, deny=self.no, title=self.text, text=self.text),
                ),
            ),
            Step("explode", self.explode),
            Return(error=self.text),
        )

    def ok(self, decision: Decision) -> None:
        self.note = decision.reason

    def no(self, decision: Decision) -> None:
        self.note = decision.reason

    def explode(self) -> None:
        raise RuntimeError(self.text)


def assert_inert(html: str, csrf: str | None = None) -> None:
    doc = parse(html)
    for node in doc.iter():
        assert node.tag in ALLOWED_TAGS, f"unexpected <{node.tag}>"
        for name, value in node.attrs.items():
            assert not name.startswith("on"), name
            if name == "hx-confirm":  # htmx runs a confirm text that starts with js: as code
                assert not (value or "").lower().startswith(("js:", "javascript:")), value
                continue
            if name in ("value", "title", "placeholder", "aria-label", "data-confirm"):
                continue  # data the browser shows as text
            assert "javascript:" not in (value or "").lower(), (name, value)
            assert not name.startswith(("hx-on", "data-hx")), name
            assert name not in ("hx-swap-oob", "hx-vals", "style", "srcdoc", "formaction")
            if name in ("hx-get", "hx-post"):  # our own paths, user text only URL-encoded
                assert (value or "").startswith("/") and not (value or "").startswith("//")
                assert not set("<>\"' ") & set(value or ""), value
            elif name.startswith("hx-"):
                assert value is not None and "evil" not in value and "alert" not in value, name
            if name == "hx-headers:inherited":
                assert csrf is not None and csrf in (value or ""), "foreign hx-headers"
    for script in doc.find_all("script"):
        assert (script.attrs.get("src") or "").startswith("/static/") and not script.text.strip()
    assert not doc.find_all("template")


@pytest.fixture
def hostile_engine(tmp_path: Any, clock: Any) -> Engine:
    from web_support import WORKFLOWS

    return Engine(f"sqlite:///{tmp_path}/hostile.db", workflows=[*WORKFLOWS, Hostile], clock=clock)


def test_hostile_strings_render_inert_everywhere(hostile_engine: Engine) -> None:
    from web_support import ORIGIN, make_app, sign_in

    engine = hostile_engine
    assert len(HOSTILE) >= 50
    app = make_app(engine, users={"alice": __import__("web_support").user_hashes()["alice"]})
    ids = []
    for i, text in enumerate(HOSTILE):
        iid = engine.start("Hostile", {"text": text}, id=f"h{i}")
        ids.append(iid)
        if i % 3 == 0:  # denied with the hostile text as reason, then its step fails with it
            engine.send(iid, "decision", {"approved": False, "reason": text}, actor="alice")
        elif i % 3 == 1:  # an event payload with it, kept in the history
            engine.send(
                iid, "decision", {"approved": True, "reason": text, "x": text}, actor="alice"
            )
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as c:
        csrf = sign_in(c, "alice")
        pages = ["/", "/?status=failed", "/approvals", "/workflows", f"/?q={HOSTILE[0]}"]
        pages += [f"/instances/{iid}" for iid in ids]
        for path in pages:
            for headers in ({}, HX):
                response = c.get(path, headers=headers)
                assert response.status_code == 200, path
                assert_inert(response.text, csrf)
        # the text is there, as text
        one = parse(c.get(f"/instances/{ids[4]}").text)
        assert HOSTILE[4] in one.text
        inbox = parse(c.get("/approvals").text)
        assert HOSTILE[2] in inbox.text
        # refusals that echo input back are inert too
        for text in HOSTILE[:10]:
            refused = c.post(
                f"/instances/{ids[2]}/send",
                headers={**HX, "Origin": ORIGIN, "X-CSRF-Token": csrf},
                data={"event": text, "mode": "json", "payload": "{}"},
            )
            assert refused.status_code == 409
            assert_inert(refused.text, csrf)
            start = c.post(
                "/workflows/Hostile/start",
                headers={**HX, "Origin": ORIGIN, "X-CSRF-Token": csrf},
                data={"f.text": text, "instance_id": text},
            )
            assert start.status_code == 422
            assert_inert(start.text, csrf)
    assert TRACE == []


def test_wants_fragment() -> None:
    def req(headers: dict[str, str]) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})

    assert wants_fragment(req({"HX-Request": "true"}))
    assert wants_fragment(req({"HX-Request": "true", "HX-Request-Type": "partial"}))
    assert not wants_fragment(req({}))
    assert not wants_fragment(req({"HX-Request": "false"}))
    assert not wants_fragment(req({"HX-Request": "true", "HX-Request-Type": "full"}))
    assert not wants_fragment(req({"HX-Request": "true", "HX-Boosted": "true"}))
    assert not wants_fragment(req({"HX-Request": "true", "HX-History-Restore-Request": "true"}))


def test_vary_and_no_store(alice: TestClient) -> None:
    for headers in ({}, HX):
        response = alice.get("/approvals", headers=headers)
        assert "HX-Request" in response.headers["vary"]
        assert response.headers["cache-control"] == "no-store"
