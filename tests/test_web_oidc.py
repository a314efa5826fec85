"""Signing in with an OpenID Connect provider: a real one (`oidc-provider-mock`, on 127.0.0.1 in
a thread) and the real app through Starlette's TestClient. TestClient cannot reach a real server,
so each test carries the browser's part itself: it follows the app's redirect to the provider
with httpx, says who signs in there, and hands the provider's redirect back to the TestClient.
Then once in Chromium end to end, against the app on a real uvicorn.

Forged, replayed and mismatched answers (state, nonce, issuer, audience, expiry) sign no one in;
a provider's group makes its members `group:NAME` for approvers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from signoff.engine import Approval, Decision, Engine, On, Return, S, Statement, Wait, Workflow
from signoff.web import OIDC

from tests.web_support import HX, ORIGIN, csrf_of, make_app, parse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from oidc_provider_mock import run_server_in_thread
    from starlette.testclient import TestClient

CLIENT_ID = "signoff-tests"
CLIENT_SECRET = "not-a-real-secret"


class Purchase(Workflow):
    """Finance approves a purchase."""

    amount: int = 0
    approved_by: str = ""

    def definition(self) -> Statement:
        return S(
            Wait(
                "approval",
                On(
                    "decision",
                    Approval(
                        approve=self.yes, approvers=["group:finance"], title=f"Buy {self.amount}"
                    ),
                ),
            ),
            Return({"approved_by": self.approved_by}),
        )

    def yes(self, decision: Decision) -> None:
        self.approved_by = decision.actor or ""


class Clock:
    """Real time, moved on by the tests: ID tokens carry real times."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


# --- the provider, and a relay in front of it ----------------------------------------------------


class Provider:
    """The provider at `url`, and the browser's connection to it (one for the module: a new
    httpx client costs a TLS context each time)."""

    def __init__(self, url: str, http: httpx.Client) -> None:
        self.url, self.http = url, http

    def __str__(self) -> str:
        return self.url


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with run_server_in_thread() as server, httpx.Client(timeout=10) as http:
        yield Provider(f"http://localhost:{server.server_port}", http)


def person(provider: Provider, sub: str, **claims: Any) -> str:
    """Register `sub` with `claims` at the provider; returns `sub`."""
    response = provider.http.put(f"{provider.url}/users/{sub}", json=claims)
    assert response.status_code == 204, response.text
    return sub


class Relay:
    """A reverse proxy in front of the provider, on 127.0.0.1. The provider names itself after
    the Host it is asked for, so through the relay it is a provider at the relay's address,
    with the same keys. `token_client` asks for tokens as another client of the provider (its
    ID token is meant for that client); `token_host` asks for them under the provider's own
    name (its ID token comes from another issuer); `discovered_issuer` changes the issuer its
    discovery document names."""

    HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.token_client: str | None = None
        self.token_host: str | None = None
        self.discovered_issuer: str | None = None
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                relay.forward(self)

            def do_POST(self) -> None:
                relay.forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in self.HOP}
        if handler.path.startswith("/oauth2/token"):
            if self.token_client is not None:
                pair = f"{self.token_client}:anything".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            if self.token_host is not None:
                headers["Host"] = self.token_host
        answer = httpx.request(
            handler.command, self.upstream + handler.path, headers=headers, content=body
        )
        content = answer.content
        if handler.path.startswith("/.well-known/") and self.discovered_issuer is not None:
            content = json.dumps({**answer.json(), "issuer": self.discovered_issuer}).encode()
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in self.HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay(provider: Provider) -> Iterator[Relay]:
    found = Relay(provider.url)
    yield found
    found.close()


# --- the app ------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(sqlite_url: str, clock: Clock) -> Iterator[Engine]:
    eng = Engine(sqlite_url, [Purchase], clock=clock)
    yield eng
    eng.close()


def oidc_app(engine: Engine, issuer: str, **kw: Any) -> Any:
    options: dict[str, Any] = {"users": {}, "api_tokens": {}}
    options.update(kw)
    return make_app(engine, oidc=OIDC(issuer, CLIENT_ID, CLIENT_SECRET), **options)


@pytest.fixture
def app(engine: Engine, provider: Provider) -> Any:
    return oidc_app(engine, provider.url)


def browser(app: Any) -> TestClient:
    return TestClient(app, base_url=ORIGIN, follow_redirects=False)


def at_provider(
    client: TestClient,
    provider: Provider,
    sub: str,
    *,
    change: Callable[[dict[str, str]], None] | None = None,
    next_path: str = "/",
) -> str:
    """The browser's part: from the app to the provider, sign in there as `sub` (after
    `change` edited the authorization request), and back: the callback URL."""
    start = client.get("/login/oidc", params={"next": next_path})
    assert start.status_code == 302, start.text
    parts = urlsplit(start.headers["location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if change is not None:
        change(query)
    authorize = urlunsplit(parts._replace(query=urlencode(query)))
    answer = provider.http.post(authorize, data={"sub": sub})
    assert answer.status_code == 302, answer.text
    callback: str = answer.headers["location"]
    assert callback.startswith(f"{ORIGIN}/login/oidc/callback?"), callback
    return callback


def sign_in(client: TestClient, provider: Provider, sub: str, **kw: Any) -> Any:
    return client.get(at_provider(client, provider, sub, **kw))


def signed_in_as(client: TestClient) -> str | None:
    page = client.get("/")
    if page.status_code != 200:
        assert page.status_code == 303 and "/login" in page.headers["location"]
        return None
    (user,) = parse(page.text).find_all(data_testid="user")
    return user.text


def refused(response: Any, words: str) -> None:
    """A refusal page: 400, saying why, with the way back to the sign-in page."""
    assert response.status_code == 400, response.text
    assert response.template.name == "pages/signin_failed.html"
    assert words in response.context["page"].message, response.context["page"].message
    page = parse(response.text)
    assert [a.attrs["href"] for a in page.find_all("a") if a.text == "Back to sign in"] == [
        "/login"
    ]


# --- signing in ---------------------------------------------------------------------------------


def test_the_sign_in_page_offers_the_provider_and_no_password_form(app: Any) -> None:
    page = browser(app).get("/login?next=/approvals")
    html = parse(page.text)
    (button,) = html.find_all("a", data_testid="oidc")
    assert button.text == "Sign in with localhost"
    assert button.attrs["href"] == "/login/oidc?next=/approvals"
    assert html.find_all("input", name="password") == []
    assert html.find_all(data_testid="no-way-in") == []


def test_a_user_signs_in_with_their_groups(app: Any, engine: Engine, provider: Provider) -> None:
    sub = person(provider, "u-erin", email="erin@example.com", groups=["finance", "staff"])
    client = browser(app)
    start = client.get("/login/oidc", params={"next": "/approvals?x=1"})
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    # the authorization code flow with PKCE (S256), state and nonce
    assert asked["response_type"] == ["code"]
    assert asked["client_id"] == [CLIENT_ID]
    assert asked["code_challenge_method"] == ["S256"]
    assert len(asked["code_challenge"][0]) >= 43 and asked["state"] and asked["nonce"]
    assert set(asked["scope"][0].split()) == {"openid", "email", "profile"}
    assert asked["redirect_uri"] == [f"{ORIGIN}/login/oidc/callback"]

    done = sign_in(client, provider, sub, next_path="/approvals?x=1")
    assert done.status_code == 303
    assert done.headers["location"] == "/approvals?x=1"
    assert signed_in_as(client) == "erin@example.com"
    assert {"group:finance", "group:staff"} <= engine.identities("erin@example.com")


def test_a_next_elsewhere_goes_home(app: Any, provider: Provider) -> None:
    sub = person(provider, "u-next", email="next@example.com")
    client = browser(app)
    done = sign_in(client, provider, sub, next_path="https://evil.example/")
    assert done.headers["location"] == "/"


def test_a_group_member_decides_and_someone_else_may_not(
    app: Any, engine: Engine, provider: Provider
) -> None:
    iid = engine.start("Purchase", {"amount": 40})
    outsider = browser(app)
    sign_in(
        outsider, provider, person(provider, "u-olga", email="olga@example.com", groups=["sales"])
    )
    member = browser(app)
    sign_in(
        member, provider, person(provider, "u-fred", email="fred@example.com", groups=["finance"])
    )

    form = {"event": "decision", "thread": "main", "mode": "approve"}
    no = outsider.post(
        f"/instances/{iid}/send",
        data=form,
        headers={**HX, "Origin": ORIGIN, "X-CSRF-Token": csrf_of(outsider.get("/").text)},
    )
    # 403 (or 404 once who-sees-what hides instances from people who may not decide them)
    assert no.status_code in (403, 404), no.text
    assert engine.get(iid).status == "waiting"
    assert "Buy 40" not in outsider.get("/approvals").text  # not in their inbox either
    assert "Buy 40" in member.get("/approvals").text

    yes = member.post(
        f"/instances/{iid}/send",
        data=form,
        headers={**HX, "Origin": ORIGIN, "X-CSRF-Token": csrf_of(member.get("/").text)},
    )
    assert yes.status_code == 200, yes.text
    assert engine.get(iid).result == {"approved_by": "fred@example.com"}


def test_groups_follow_each_sign_in(app: Any, engine: Engine, provider: Provider) -> None:
    sub = person(provider, "u-gail", email="gail@example.com", groups=["finance"])
    sign_in(browser(app), provider, sub)
    assert "group:finance" in engine.identities("gail@example.com")
    person(provider, sub, email="gail@example.com", groups=["sales"])  # moved to sales
    sign_in(browser(app), provider, sub)
    assert "group:finance" not in engine.identities("gail@example.com")
    assert "group:sales" in engine.identities("gail@example.com")


def test_another_process_knows_the_user_and_their_groups(
    app: Any, sqlite_url: str, clock: Clock, provider: Provider
) -> None:
    """The session is in the database and the groups in the signed cookie: a second process
    (another engine and app on the same database and key) knows both."""
    client = browser(app)
    sign_in(
        client, provider, person(provider, "u-hana", email="hana@example.com", groups=["finance"])
    )
    other_engine = Engine(sqlite_url, [Purchase], clock=clock)
    try:
        other_engine.start("Purchase", {"amount": 7})
        other = browser(oidc_app(other_engine, provider.url))
        other.cookies = client.cookies
        assert signed_in_as(other) == "hana@example.com"
        assert "Buy 7" in other.get("/approvals").text
        assert "group:finance" in other_engine.identities("hana@example.com")
    finally:
        other_engine.close()


# --- what signs no one in -----------------------------------------------------------------------


def test_a_forged_state_signs_no_one_in(app: Any, provider: Provider) -> None:
    client = browser(app)
    callback = at_provider(client, provider, person(provider, "u-ivan", email="ivan@example.com"))
    query = parse_qs(urlsplit(callback).query)
    forged = client.get(
        "/login/oidc/callback", params={"code": query["code"][0], "state": "forged-state"}
    )
    refused(forged, "does not belong to a sign-in started in this browser")
    assert signed_in_as(client) is None
    refused(client.get("/login/oidc/callback?code=abc"), "does not belong")


def test_an_answer_meant_for_another_browser_signs_no_one_in(app: Any, provider: Provider) -> None:
    """Login CSRF: the attacker starts a sign-in as themselves and sends the victim the
    callback; the victim's browser never started it."""
    attacker = browser(app)
    callback = at_provider(
        attacker, provider, person(provider, "u-mallory", email="mallory@example.com")
    )
    victim = browser(app)
    refused(victim.get(callback), "does not belong")
    assert signed_in_as(victim) is None


def test_a_replayed_callback_signs_no_one_in(app: Any, provider: Provider) -> None:
    client = browser(app)
    callback = at_provider(client, provider, person(provider, "u-jane", email="jane@example.com"))
    before = dict(client.cookies)  # the cookie that still holds the state
    assert client.get(callback).status_code == 303
    assert signed_in_as(client) == "jane@example.com"
    refused(client.get(callback), "does not belong")  # the state is spent
    # with the earlier cookie, the state is there again: the provider refuses the spent code
    replay = browser(app)
    replay.cookies.update(before)
    refused(replay.get(callback), "The identity provider refused the sign-in (invalid_grant")
    assert signed_in_as(replay) is None


def test_a_wrong_nonce_signs_no_one_in(app: Any, provider: Provider) -> None:
    client = browser(app)
    sub = person(provider, "u-kim", email="kim@example.com")

    def other_nonce(query: dict[str, str]) -> None:
        query["nonce"] = "a-nonce-this-browser-never-made"

    refused(client.get(at_provider(client, provider, sub, change=other_nonce)), "(nonce)")
    assert signed_in_as(client) is None


def test_an_expired_token_signs_no_one_in(app: Any, clock: Clock, provider: Provider) -> None:
    client = browser(app)
    callback = at_provider(client, provider, person(provider, "u-lena", email="lena@example.com"))
    clock.offset = timedelta(hours=1, minutes=5)  # the provider's tokens last an hour
    refused(client.get(callback), "it has expired")
    assert signed_in_as(client) is None


def test_a_token_from_another_issuer_signs_no_one_in(
    engine: Engine, relay: Relay, provider: Provider
) -> None:
    app = oidc_app(engine, relay.url)
    relay.token_host = urlsplit(provider.url).netloc  # its ID token says iss=<the provider>
    client = browser(app)
    refused(
        sign_in(client, provider, person(provider, "u-max", email="max@example.com")),
        f"it was issued by someone else than {relay.url}",
    )
    assert signed_in_as(client) is None


def test_a_token_for_another_client_signs_no_one_in(
    engine: Engine, relay: Relay, provider: Provider
) -> None:
    """A real ID token from the right provider, with this sign-in's nonce, made for another
    client of that provider: the code was issued to it, and the token asked for as it."""
    app = oidc_app(engine, relay.url)
    relay.token_client = "another-app"
    client = browser(app)

    def for_another_client(query: dict[str, str]) -> None:
        query["client_id"] = "another-app"

    callback = at_provider(
        client,
        provider,
        person(provider, "u-nina", email="nina@example.com"),
        change=for_another_client,
    )
    refused(client.get(callback), "it was made for another application")
    assert signed_in_as(client) is None


def test_a_provider_that_names_another_issuer_is_refused(
    engine: Engine, relay: Relay, provider: Provider
) -> None:
    """The discovery document must name the issuer configured (OpenID Connect Discovery 1.0,
    4.3): nobody is sent to a provider that says it is someone else."""
    app = oidc_app(engine, relay.url)
    relay.discovered_issuer = "https://impostor.example"
    start = browser(app).get("/login/oidc")
    assert start.status_code == 502
    assert "names another issuer" in start.context["page"].message


def test_the_provider_refusing_signs_no_one_in(app: Any, provider: Provider) -> None:
    client = browser(app)
    start = client.get("/login/oidc")
    denied = provider.http.post(start.headers["location"], data={"action": "deny"})
    assert denied.status_code == 302
    refused(client.get(denied.headers["location"]), "access_denied")
    assert signed_in_as(client) is None


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({}, "its answer has no 'email' claim"),
        ({"email": ""}, "its answer has no 'email' claim"),
        ({"email": "group:finance"}, "may not begin with 'group:'"),
        ({"email": "eve@example.com\nadmin"}, "holds a control character"),
        ({"email": "eve@example.com", "groups": "finance"}, "is not a list of group names"),
        ({"email": "eve@example.com", "groups": ["finance", 7]}, "is not a list of group names"),
        ({"email": "eve@example.com", "groups": ["group:ops"]}, "may not begin with 'group:'"),
        ({"email": "eve@example.com", "groups": [f"g{i:04}" for i in range(400)]}, "400 groups"),
        ({"email": "eve@example.com", "email_verified": False}, "is not verified"),
    ],
    ids=[
        "no-claim",
        "empty",
        "group-name",
        "control",
        "groups-text",
        "groups-mixed",
        "group-group",
        "too-many",
        "unverified",
    ],
)
def test_claims_that_cannot_name_a_user_sign_no_one_in(
    app: Any, engine: Engine, provider: Provider, claims: dict[str, Any], words: str
) -> None:
    client = browser(app)
    sub = person(
        provider, "u-bad-" + hashlib.sha256(json.dumps(claims).encode()).hexdigest(), **claims
    )
    refused(sign_in(client, provider, sub), words)
    assert signed_in_as(client) is None
    assert engine.identities("eve@example.com") == {"eve@example.com"}  # no groups remembered


# --- signing out --------------------------------------------------------------------------------


def test_sign_out_ends_the_session_and_offers_the_providers(app: Any, provider: Provider) -> None:
    client = browser(app)
    sign_in(client, provider, person(provider, "u-olaf", email="olaf@example.com"))
    cookie = dict(client.cookies)
    token = csrf_of(client.get("/").text)
    out = client.post("/logout", data={"csrf_token": token}, headers={"Origin": ORIGIN})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    landing = client.get("/login")
    (link,) = parse(landing.text).find_all("a", data_testid="end-session")
    assert link.text == "Sign out of localhost too"
    url = urlsplit(link.attrs["href"] or "")
    assert f"{url.scheme}://{url.netloc}" == provider.url and url.path == "/oauth2/end_session"
    asked = parse_qs(url.query)
    assert asked["post_logout_redirect_uri"] == [f"{ORIGIN}/login"]
    assert asked["client_id"] == [CLIENT_ID]
    hint = asked["id_token_hint"][0]
    claims = json.loads(base64.urlsafe_b64decode(hint.split(".")[1] + "=="))
    assert claims["email"] == "olaf@example.com" and claims["aud"] in (CLIENT_ID, [CLIENT_ID])
    # the offer is made once
    assert parse(client.get("/login").text).find_all(data_testid="end-session") == []

    # the provider's side, and back
    form = provider.http.get(link.attrs["href"] or "")
    assert form.status_code == 200 and "End session" in form.text
    confirm = provider.http.post(
        f"{provider.url}/oauth2/end_session/confirm",
        data={"redirect_uri": parse_qs(url.query)["post_logout_redirect_uri"][0]},
    )
    assert confirm.status_code == 302
    assert confirm.headers["location"].startswith(f"{ORIGIN}/login")

    assert signed_in_as(client) is None
    again = browser(app)  # the old cookie: its session has ended in the database
    again.cookies.update(cookie)
    assert signed_in_as(again) is None


def test_sessions_from_the_provider_end_when_oidc_is_turned_off(
    app: Any, engine: Engine, provider: Provider
) -> None:
    client = browser(app)
    sign_in(client, provider, person(provider, "u-pia", email="pia@example.com"))
    without = browser(make_app(engine, users={}, api_tokens={}))
    without.cookies = client.cookies
    assert signed_in_as(without) is None


# --- configuration ------------------------------------------------------------------------------


def test_configuration_from_the_environment() -> None:
    assert OIDC.from_environment({}) is None
    found = OIDC.from_environment(
        {
            "SIGNOFF_OIDC_ISSUER": "https://login.example.com/",
            "SIGNOFF_OIDC_CLIENT_ID": "dash",
            "SIGNOFF_OIDC_CLIENT_SECRET": "s3cret",
            "SIGNOFF_OIDC_USER_CLAIM": "preferred_username",
            "SIGNOFF_OIDC_GROUPS_CLAIM": "roles",
        }
    )
    assert found == OIDC(
        "https://login.example.com",
        "dash",
        "s3cret",
        user_claim="preferred_username",
        groups_claim="roles",
    )
    assert "s3cret" not in repr(found)
    with pytest.raises(ValueError, match="SIGNOFF_OIDC_CLIENT_SECRET"):
        OIDC.from_environment(
            {"SIGNOFF_OIDC_ISSUER": "https://x.example", "SIGNOFF_OIDC_CLIENT_ID": "a"}
        )


@pytest.mark.parametrize(
    "issuer", ["http://login.example.com", "ftp://localhost", "login.example.com"]
)
def test_an_issuer_must_be_https_off_this_machine(issuer: str) -> None:
    with pytest.raises(ValueError, match="https"):
        OIDC(issuer, "dash", "secret")


def test_the_button_names_well_known_providers() -> None:
    google = OIDC("https://accounts.google.com", "a", "b")
    entra = OIDC("https://login.microsoftonline.com/tenant-id/v2.0", "a", "b")
    okta = OIDC("https://acme.okta.com", "a", "b")
    named = OIDC("https://sso.acme.example/realms/staff", "a", "b", name="Acme SSO")
    shown = [o.provider_name for o in (google, entra, okta, named)]
    assert shown == ["Google", "Microsoft", "Okta", "Acme SSO"]


# --- in Chromium, end to end --------------------------------------------------------------------


@pytest.fixture
def served(engine: Engine, provider: Provider) -> Iterator[str]:
    """The app on a real uvicorn at 127.0.0.1, signing in with the provider."""
    import uvicorn

    app = oidc_app(engine, provider.url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.browser
@pytest.mark.slow
def test_signing_in_with_the_provider_in_chromium(
    served: str, engine: Engine, provider: Provider
) -> None:
    from tests.test_web_browser import CHROMIUM_ARGS, _chromium

    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    person(provider, "u-zoe", email="zoe@example.com", groups=["finance"])
    iid = engine.start("Purchase", {"amount": 99})
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_context().new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda dialog: problems.append(dialog.message))  # none, ever

            page.goto(served + "/approvals")
            assert page.url.startswith(served + "/login")
            page.click("text=Sign in with localhost")
            page.wait_for_url(f"{provider.url}/oauth2/authorize*")
            page.fill("input[name=sub]", "u-zoe")
            page.click("button:has-text('Authorize')")
            page.wait_for_url(served + "/approvals")
            assert page.text_content("[data-testid=user]") == "zoe@example.com"

            row = page.locator("tr").filter(has_text="Buy 99")
            row.locator("button:has-text('Approve')").click()
            page.wait_for_selector("text=Approved by you · now completed")
            assert engine.get(iid).result == {"approved_by": "zoe@example.com"}

            page.click("button:has-text('Sign out')")
            page.wait_for_url(served + "/login")
            page.click("[data-testid=end-session]")
            page.wait_for_url(f"{provider.url}/oauth2/end_session*")
            page.click("button:has-text('End session')")
            page.wait_for_url(served + "/login*")
            assert page.locator("[data-testid=user]").count() == 0
            page.goto(served + "/")
            assert page.url.startswith(served + "/login")
        finally:
            chromium.close()
    assert problems == []
