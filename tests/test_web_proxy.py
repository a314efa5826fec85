"""Behind an authenticating proxy: the user header is believed from a trusted proxy's address
only (TestClient's `client=` sets the peer), ignored and logged from anyone else; the groups
header makes the user a member of `group:NAME`; forms still need the session's CSRF token.
And a server nobody can sign in to says how to let someone in."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import Approval, Decision, Engine, On, Return, S, Statement, Wait, Workflow
from signoff.web import OIDC
from signoff.web.proxy import KeepPeer, TrustedProxy
from signoff.web.serving import server_config

from tests.web_support import HX, ORIGIN, csrf_of, make_app, parse

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
PROXY = ("10.0.0.5", 41000)
STRANGER = ("203.0.113.9", 41000)


class Expense(Workflow):
    """Finance approves an expense."""

    amount: int = 0
    approved_by: str = ""

    def definition(self) -> Statement:
        return S(
            Wait(
                "approval",
                On("decision", Approval(approve=self.yes, approvers=["group:finance"])),
            ),
            Return({"approved_by": self.approved_by}),
        )

    def yes(self, decision: Decision) -> None:
        self.approved_by = decision.actor or ""


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    eng = Engine(sqlite_url, [Expense])
    yield eng
    eng.close()


def proxied_app(engine: Engine, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "users": {},
        "api_tokens": {},
        "trusted_user_header": "X-Forwarded-Email",
        "trusted_groups_header": "X-Forwarded-Groups",
        "trusted_proxies": ["10.0.0.0/24", "192.0.2.7"],
    }
    options.update(kw)
    return make_app(engine, **options)


@pytest.fixture
def app(engine: Engine) -> Any:
    return proxied_app(engine)


def via(app: Any, peer: tuple[str, int], **headers: str) -> TestClient:
    client = TestClient(app, base_url=ORIGIN, follow_redirects=False, client=peer)
    client.headers.update(headers)
    return client


def user_shown(client: TestClient) -> str | None:
    page = client.get("/")
    if page.status_code != 200:
        assert page.status_code == 303 and "/login" in page.headers["location"]
        return None
    (user,) = parse(page.text).find_all(data_testid="user")
    return user.text


def test_a_trusted_proxy_signs_the_user_in(app: Any, engine: Engine) -> None:
    client = via(app, PROXY, **{"X-Forwarded-Email": "erin@example.com"})
    assert user_shown(client) == "erin@example.com"
    other = via(app, ("192.0.2.7", 1), **{"X-Forwarded-Email": "finn@example.com"})
    assert user_shown(other) == "finn@example.com"
    assert user_shown(via(app, PROXY)) is None  # the proxy let someone through unnamed


def test_the_header_from_anyone_else_is_ignored_and_logged(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    forged = via(app, STRANGER, **{"X-Forwarded-Email": "admin@example.com"})
    with caplog.at_level(logging.WARNING, "signoff.web"):
        assert user_shown(forged) is None
        assert forged.get("/approvals").status_code == 303
        for _ in range(5):
            forged.get("/")
        via(app, ("198.51.100.1", 2), **{"X-Forwarded-Email": "x@example.com"}).get("/")
    warned = [r.getMessage() for r in caplog.records if "X-Forwarded-Email" in r.getMessage()]
    # once per address, however often it tries
    assert [w.split(" from ")[1].split(":")[0] for w in warned] == ["203.0.113.9", "198.51.100.1"]
    assert "only trusted proxies (SIGNOFF_TRUSTED_PROXIES) may name the user" in warned[0]


def test_groups_from_the_proxy_make_a_member(app: Any, engine: Engine) -> None:
    iid = engine.start("Expense", {"amount": 12})
    member = via(
        app,
        PROXY,
        **{"X-Forwarded-Email": "fred@example.com", "X-Forwarded-Groups": "staff, finance"},
    )
    outsider = via(
        app, PROXY, **{"X-Forwarded-Email": "olga@example.com", "X-Forwarded-Groups": "sales"}
    )
    form = {"event": "decision", "thread": "main", "mode": "approve"}
    no = outsider.post(
        f"/instances/{iid}/send",
        data=form,
        headers={**HX, "Origin": ORIGIN, "X-CSRF-Token": csrf_of(outsider.get("/").text)},
    )
    assert no.status_code in (403, 404), no.text  # 404 once who-sees-what hides it
    assert engine.get(iid).status == "waiting"
    yes = member.post(
        f"/instances/{iid}/send",
        data=form,
        headers={**HX, "Origin": ORIGIN, "X-CSRF-Token": csrf_of(member.get("/").text)},
    )
    assert yes.status_code == 200, yes.text
    assert engine.get(iid).result == {"approved_by": "fred@example.com"}
    # groups follow the header: a request without finance takes it away
    via(app, PROXY, **{"X-Forwarded-Email": "fred@example.com"}).get("/")
    assert "group:finance" not in engine.identities("fred@example.com")


def test_groups_from_a_stranger_count_for_nothing(app: Any, engine: Engine) -> None:
    via(
        app,
        STRANGER,
        **{"X-Forwarded-Email": "eve@example.com", "X-Forwarded-Groups": "finance"},
    ).get("/")
    assert engine.identities("eve@example.com") == {"eve@example.com"}


def test_forms_still_need_the_csrf_token(app: Any, engine: Engine) -> None:
    iid = engine.start("Expense", {"amount": 3})
    member = via(
        app, PROXY, **{"X-Forwarded-Email": "fred@example.com", "X-Forwarded-Groups": "finance"}
    )
    form = {"event": "decision", "thread": "main", "mode": "approve"}
    refused = member.post(f"/instances/{iid}/send", data=form, headers={"Origin": ORIGIN})
    assert refused.status_code == 403
    assert engine.get(iid).status == "waiting"
    # the token of another user's session is no good either
    other = via(
        app, PROXY, **{"X-Forwarded-Email": "gail@example.com", "X-Forwarded-Groups": "finance"}
    )
    theirs = csrf_of(other.get("/").text)
    member.get("/")
    refused = member.post(
        f"/instances/{iid}/send", data={**form, "csrf_token": theirs}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 403
    assert engine.get(iid).status == "waiting"


def test_a_new_name_starts_a_new_session(app: Any) -> None:
    """One browser, two people behind the proxy in turn: the second gets a CSRF token of
    their own."""
    client = via(app, PROXY, **{"X-Forwarded-Email": "fred@example.com"})
    first = csrf_of(client.get("/").text)
    client.headers["X-Forwarded-Email"] = "gail@example.com"
    second = csrf_of(client.get("/").text)
    assert first != second
    assert user_shown(client) == "gail@example.com"


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"X-Forwarded-Email": "group:finance"}, "may not begin with 'group:'"),
        ({"X-Forwarded-Email": "   "}, "must be non-empty text"),
        ({"X-Forwarded-Email": "a\x7fb@example.com"}, "holds a control character"),
        ({"X-Forwarded-Email": "x" * 300}, "longer than 200"),
        ({"X-Forwarded-Email": "e@x", "X-Forwarded-Groups": "group:ops"}, "'group:'"),
    ],
    ids=["group-name", "blank", "control", "long", "group-group"],
)
def test_names_that_cannot_be_people_are_refused(
    app: Any, engine: Engine, headers: dict[str, str], words: str
) -> None:
    response = via(app, PROXY, **headers).get("/")
    assert response.status_code == 400
    assert words in response.text


def test_a_header_sent_twice_is_refused(app: Any) -> None:
    """A proxy that adds its header beside the client's would let the client's count."""
    client = TestClient(app, base_url=ORIGIN, follow_redirects=False, client=PROXY)
    response = client.get(
        "/", headers=[("X-Forwarded-Email", "admin@example.com"), ("X-Forwarded-Email", "e@x")]
    )
    assert response.status_code == 400
    assert "more than once" in response.text


def test_the_direct_peer_decides_not_x_forwarded_for(engine: Engine) -> None:
    """Under `signoff serve`, uvicorn's proxy headers replace the client address with the one
    X-Forwarded-For names; the user header is believed from the address the connection came
    from, which KeepPeer keeps."""
    app = proxied_app(engine)
    config = server_config(app, host="127.0.0.1", port=0, forwarded_allow_ips=["10.0.0.0/24"])
    config.load()
    served = config.loaded_app
    assert isinstance(served, KeepPeer)
    behind = TestClient(served, base_url=ORIGIN, follow_redirects=False, client=PROXY)
    page = behind.get(
        "/", headers={"X-Forwarded-Email": "erin@example.com", "X-Forwarded-For": "203.0.113.9"}
    )
    assert page.status_code == 200 and "erin@example.com" in page.text
    # a stranger naming a proxy in X-Forwarded-For is still a stranger
    stranger = TestClient(served, base_url=ORIGIN, follow_redirects=False, client=STRANGER)
    page = stranger.get(
        "/", headers={"X-Forwarded-Email": "erin@example.com", "X-Forwarded-For": "10.0.0.5"}
    )
    assert page.status_code == 303


def test_trusted_proxies_are_addresses_or_ranges(engine: Engine) -> None:
    with pytest.raises(ValueError, match=r"'proxy\.internal' is not an IP address"):
        proxied_app(engine, trusted_proxies=["10.0.0.1", "proxy.internal"])
    found = TrustedProxy.of("X-Forwarded-User", None, None)  # default: this machine
    assert found.trusts("127.0.0.1") and found.trusts("::1") and found.trusts("::ffff:127.0.0.1")
    assert not found.trusts("10.0.0.5") and not found.trusts(None) and not found.trusts("junk")


# --- no dead ends -------------------------------------------------------------------------------

NO_WAY_IN = "Nobody can sign in to this server yet"


def test_a_server_nobody_can_sign_in_to_says_how_to_let_someone_in(engine: Engine) -> None:
    page = TestClient(make_app(engine, users={}, api_tokens={})).get("/login")
    (said,) = parse(page.text).find_all(data_testid="no-way-in")
    for words in (
        NO_WAY_IN,
        "SIGNOFF_USERS",
        "signoff hash-password",
        "SIGNOFF_OIDC_ISSUER",
        "SIGNOFF_TRUSTED_USER_HEADER",
    ):
        assert words in said.text
    assert parse(page.text).find_all("input", name="password") == []


@pytest.mark.parametrize("way", ["users", "oidc", "proxy", "open"])
def test_a_server_with_a_way_in_says_nothing_of_the_kind(engine: Engine, way: str) -> None:
    kw: dict[str, Any] = {"users": {}, "api_tokens": {}}
    if way == "users":
        kw.pop("users")  # make_app's password users
    elif way == "oidc":
        kw["oidc"] = OIDC("https://login.example.com", "dash", "secret")
    elif way == "proxy":
        kw["trusted_user_header"] = "X-Forwarded-Email"
    else:
        kw["open_access"] = True
    page = TestClient(make_app(engine, **kw)).get("/login")
    assert NO_WAY_IN not in page.text
    assert bool(parse(page.text).find_all("input", name="username")) == (way in ("users", "open"))


def test_signoff_serve_says_how_to_let_someone_in(sqlite_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNOFF_", "SLACK_"))}
    env["PYTHONPATH"] = str(ROOT)
    # a port that is taken: serve says what it must, then stops before serving
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "signoff.web.cli",
                "serve",
                "--db",
                sqlite_url,
                "--port",
                str(port),
                "--workflows",
                "tests.authority_workflows",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert NO_WAY_IN in done.stderr, done.stderr
    assert "signoff hash-password" in done.stderr and "SIGNOFF_OIDC_ISSUER" in done.stderr
