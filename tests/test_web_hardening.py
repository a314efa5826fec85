"""The attacks of the security review (issue 9), each against a real uvicorn on 127.0.0.1 run
the way `signoff serve` runs it (`web.serving.server_config`), each with the fix asserted.

A hostile client sends from 127.0.0.2 where it matters (still loopback): the server tells it
apart from the health probes and the real users on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from signoff.engine import (
    Approval,
    Engine,
    EventRejected,
    InvalidData,
    On,
    Retry,
    S,
    Statement,
    Step,
    Wait,
    Workflow,
)
from signoff.web.auth import hash_password
from signoff.web.cli import main
from signoff.web.limits import Limits, SignInLimits
from signoff.web.serving import ServerLimits, server_config

from tests.web_support import PASSWORDS, TOKENS, WORKFLOWS, csrf_of, make_app

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "127.0.0.2"
API = {"Authorization": f"Bearer {next(iter(TOKENS))}"}
TEST_LIMITS = ServerLimits(
    header_timeout=1.0, max_connections=60, max_connections_per_client=20, keep_alive=2
)


class Poisoned(Workflow):
    """A step leaves text PostgreSQL cannot keep in a wait's title (or in its own error)."""

    title: str = "ok"
    explode: bool = False

    def definition(self) -> Statement:
        return S(
            Step("make title", self.make_title, retry=Retry(attempts=1)),
            Wait("review", On("decision", Approval(approve=self.noop, title=self.title))),
        )

    def make_title(self) -> None:
        if self.explode:
            raise RuntimeError("upstream said: bad\x00byte")
        self.title = "Review of a\x00b"

    def noop(self, decision: Any) -> None:
        pass


FLOWS: list[type[Workflow]] = [*WORKFLOWS, Poisoned]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def served(app: Any, limits: ServerLimits = TEST_LIMITS) -> Iterator[str]:
    import uvicorn

    port = free_port()
    config = server_config(app, host="127.0.0.1", port=port, limits=limits, log_level="error")
    server = uvicorn.Server(config)
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


def hashes(n: int) -> dict[str, str]:
    return {name: hash_password(pw, n=n) for name, pw in PASSWORDS.items()}


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    # alice operates: the note event is neither a decision nor a form, so only operators send it
    engine = Engine(sqlite_url, FLOWS, synchronous="NORMAL", operators=["alice"])
    yield engine
    engine.close()


@pytest.fixture
def base(engine: Engine) -> Iterator[str]:
    with served(make_app(engine)) as url:
        yield url


class Probe:
    """GETs /healthz over and over from 127.0.0.1 while an attack runs; keeps each latency."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.times: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.get(f"{self.base}/healthz")
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.times.append(time.monotonic() - started)
                time.sleep(0.02)

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def p99(self) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def login_form(client: httpx.Client, base: str) -> str:
    return csrf_of(client.get(f"{base}/login").text)


def try_password(client: httpx.Client, base: str, token: str, user: str, pw: str) -> Any:
    return client.post(
        f"{base}/login",
        data={"username": user, "password": pw, "csrf_token": token, "next": "/"},
    )


def hostile_client(**kw: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=HOSTILE), **kw)


def flood(clients: int, seconds: float, hit: Callable[[], Any]) -> list[Any]:
    answers: list[Any] = []
    stop = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < stop:
            answers.append(hit())

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


# --- row 1: sign-in runs scrypt on the event loop, with no limit -------------------------------


def test_a_sign_in_flood_hashes_off_the_loop_and_health_stays_quick(engine: Engine) -> None:
    """8 clients send wrong passwords as fast as they can, with the limits set so high that
    every one is hashed (n=2**14): the hashing runs on its own small pool, the excess is told
    to come back (503 + Retry-After), and /healthz keeps answering."""
    limits = Limits(sign_in=SignInLimits(per_address=10**6, per_user=10**6))
    app = make_app(engine, users=hashes(2**14), limits=limits)
    with served(app) as base, Probe(base) as probe:
        clients = [httpx.Client(timeout=10) for _ in range(8)]
        tokens = {id(c): login_form(c, base) for c in clients}
        turn = iter(range(10**9))

        def hit() -> int:
            client = clients[next(turn) % len(clients)]
            answer = try_password(client, base, tokens[id(client)], "alice", "guess")
            assert answer.status_code in (401, 503), answer.text
            if answer.status_code == 503:
                assert answer.headers["Retry-After"]
            return answer.status_code

        codes = flood(8, 3.0, hit)
        for c in clients:
            c.close()
    assert codes.count(401) > 10, codes  # the flood was real: the pool kept hashing
    assert not probe.failures
    assert probe.p99() < 0.25, f"/healthz p99 {probe.p99():.3f} s during the flood"


def test_sign_in_is_limited_per_address_and_per_user(engine: Engine) -> None:
    """One address is stopped after 10 failures (429 + Retry-After), and then even the right
    password is refused from it, so a flood can never find out it guessed right. The real
    user, elsewhere, still signs in: one address cannot lock them out. A campaign spread over
    addresses hits the per-user bound, and then the right password is refused everywhere."""
    limits = Limits(sign_in=SignInLimits(per_address=10, per_user=15))
    app = make_app(engine, limits=limits)
    with served(app) as base:
        with hostile_client(timeout=10) as attacker:
            token = login_form(attacker, base)
            codes = [
                try_password(attacker, base, token, "alice", f"guess {i}").status_code
                for i in range(14)
            ]
            assert codes == [401] * 10 + [429] * 4
            right = try_password(attacker, base, token, "alice", PASSWORDS["alice"])
            assert right.status_code == 429
            assert 0 < int(right.headers["Retry-After"]) <= 300
            assert "Too many failed sign-ins from your address" in right.text
        with httpx.Client(timeout=10) as alice:
            token = login_form(alice, base)
            assert try_password(alice, base, token, "alice", PASSWORDS["alice"]).status_code == 303
            # a second address brings alice's failures to her own bound (15)
            token = login_form(alice, base)  # signing in made a new CSRF token
            codes = [
                try_password(alice, base, token, "alice", f"guess {i}").status_code
                for i in range(6)
            ]
            assert codes == [401] * 5 + [429]
            right = try_password(alice, base, token, "alice", PASSWORDS["alice"])
            assert right.status_code == 429
            assert "for this user" in right.text
        # an unknown user costs the same work and gets the same answer as a wrong password
        with httpx.Client(timeout=10) as other:
            token = login_form(other, base)
            answer = try_password(other, base, token, "nobody", "guess")
            assert answer.status_code == 401
            assert "Wrong user name or password." in answer.text


# --- row 2: one connection streaming an endless header -----------------------------------------


def test_an_endless_header_is_cut_off_and_the_loop_never_stalls(base: str) -> None:
    """For 3 s, one connection after another streams a header without end: each is cut off
    after a few dozen KiB, and every /healthz probe meanwhile answers within 1 s."""
    port = int(base.rsplit(":", 1)[1])
    most = 0
    with Probe(base) as probe:
        stop = time.monotonic() + 3
        while time.monotonic() < stop:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
            sent = 0
            try:
                while time.monotonic() < stop + 2 and sent < 50 * 1024 * 1024:
                    sock.sendall(b"a" * 16384)
                    sent += 16384
            except OSError:  # the server closed it
                pass
            sock.close()
            most = max(most, sent)
    assert most < 10 * 1024 * 1024, f"the server took {most} bytes of one header"
    assert not probe.failures
    assert len(probe.times) > 20
    assert max(probe.times) < 1.0, f"slowest /healthz {max(probe.times):.3f} s"


def test_a_header_dribbled_slowly_is_cut_off_at_the_header_timeout(base: str) -> None:
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 5:
        try:
            sock.sendall(b"X")  # one byte of a header every 0.2 s disarms keep-alive timers
        except OSError:
            closed = True
            break
        sock.settimeout(0.2)
        try:
            if sock.recv(1024) == b"":
                closed = True
                break
        except TimeoutError:
            pass
    sock.close()
    assert closed, "a slow header kept its connection for 5 s"
    assert time.monotonic() - started < 3  # header_timeout is 1 s here


# --- row 3: thousands of idle or slow connections ----------------------------------------------


def test_idle_connections_from_one_client_cannot_starve_the_others(base: str) -> None:
    """Three times the server's whole connection budget (60), idle, from one address: past 20
    they are closed at once, the rest at the header timeout, and /healthz never fails."""
    port = int(base.rsplit(":", 1)[1])
    idle = []
    with Probe(base) as probe:
        for _ in range(180):
            sock = socket.socket()
            sock.bind((HOSTILE, 0))
            sock.connect(("127.0.0.1", port))
            idle.append(sock)
        time.sleep(2.0)  # past the header timeout
    open_ones = 0
    for sock in idle:
        sock.settimeout(0.5)
        try:
            if sock.recv(16) != b"":
                open_ones += 1
        except TimeoutError:
            open_ones += 1
        except OSError:
            pass
        sock.close()
    assert open_ones == 0
    assert not probe.failures
    assert len(probe.times) > 20


# --- row 4: a payload nested 600 deep ----------------------------------------------------------


def nested(depth: int) -> Any:
    """Objects `depth` levels deep."""
    value: Any = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_deep_json_is_refused_everywhere_and_what_is_stored_always_reads_back(
    base: str, engine: Engine, sqlite_url: str
) -> None:
    iid = engine.start("Trip", {})
    before = engine.history(iid)
    with httpx.Client(timeout=10, headers=API) as api:
        deep = json.dumps({"payload": {"x": nested(600)}})
        answer = api.post(
            f"{base}/api/instances/{iid}/events/note",
            content=deep,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400, answer.text
        assert "nested deeper than 33 levels" in answer.json()["error"]
        answer = api.post(f"{base}/api/instances/{iid}/events/note", json={"payload": nested(33)})
        assert answer.status_code == 400
        assert "nested deeper than 33 levels" in answer.json()["error"]
        answer = api.post(
            f"{base}/api/instances", json={"workflow": "Trip", "data": {"note": nested(40)}}
        )
        assert answer.status_code == 400
        assert engine.history(iid) == before
        # the deepest allowed reads back through every door
        allowed = api.post(f"{base}/api/instances/{iid}/events/note", json={"payload": nested(32)})
        assert allowed.status_code == 200, allowed.text
        history = api.get(f"{base}/api/instances/{iid}/history")
        assert history.status_code == 200
    with pytest.raises(EventRejected, match="nested deeper than 32"):
        engine.send(iid, "note", {"x": nested(600)})
    with pytest.raises(InvalidData, match="nested deeper than 32"):
        engine.start("Trip", {"note": nested(600)})  # type: ignore[dict-item]
    out = io.StringIO()
    assert main(["show", iid, "--json", "--db", sqlite_url, "--workflows", __name__], out) == 0
    assert json.loads(out.getvalue())["id"] == iid
    code = main(
        [
            "send",
            iid,
            "note",
            "--payload",
            json.dumps(nested(600)),
            "--db",
            sqlite_url,
            *("--workflows", __name__),
        ],
        io.StringIO(),
    )
    assert code == 1


# --- row 5: NUL bytes on PostgreSQL ------------------------------------------------------------


@pytest.mark.postgres
def test_nul_is_refused_at_the_edge_and_a_poisoned_commit_fails_the_instance(
    pg_url: str,
) -> None:
    engine = Engine(pg_url, FLOWS)
    try:
        iid = engine.start("Trip", {})
        with served(make_app(engine)) as base, httpx.Client(timeout=10, headers=API) as api:
            for path in (
                "/api/instances?q=a%00b",
                "/api/instances?workflow=%00",
                "/api/instances?before=2026-01-01T00:00:00Z~a%00",
                "/api/instances/a%00b",
                "/api/instances/a%00b/history",
            ):
                answer = api.get(base + path)
                assert answer.status_code == 400, (path, answer.text)
                assert "NUL" in answer.json()["error"]
            answer = api.post(
                f"{base}/api/instances/{iid}/events/note", json={"payload": {"x": "a\x00"}}
            )
            assert answer.status_code == 422 and "NUL" in answer.json()["error"]
            answer = api.post(f"{base}/api/instances/{iid}/cancel", json={"reason": "a\x00"})
            assert answer.status_code == 422 and "NUL" in answer.json()["error"]
            answer = api.post(f"{base}/api/instances", json={"workflow": "Trip", "id": "a\x00"})
            assert answer.status_code == 422
            page = httpx.get(f"{base}/?q=%00", timeout=10)
            assert page.status_code == 400 and "NUL" in page.text
            # text that reaches a wait's title or a step's error through the workflow's code
            for data in ({}, {"explode": True}):
                created = api.post(
                    f"{base}/api/instances", json={"workflow": "Poisoned", "data": data}
                )
                assert created.status_code == 201, created.text
                body = created.json()
                assert body["status"] == "failed"
                assert "cannot contain NUL" in body["error"]
        assert engine.get(iid).status == "waiting"
        assert "running" not in engine.counts()
        # nothing is left due that would retry it
        assert engine.run_due() == 0
        assert engine.counts() == {"waiting": 1, "failed": 2}
    finally:
        engine.close()


# --- row 6: sign-out only dropped the cookie ---------------------------------------------------


def sign_in_over_http(client: httpx.Client, base: str, user: str = "alice") -> None:
    token = login_form(client, base)
    assert try_password(client, base, token, user, PASSWORDS[user]).status_code == 303


def test_sign_out_revokes_the_session_everywhere_and_sessions_end_on_time(
    sqlite_url: str, clock: Any
) -> None:
    engine = Engine(sqlite_url, FLOWS, clock=clock)
    try:
        with served(make_app(engine)) as base:
            with httpx.Client(timeout=10) as one, httpx.Client(timeout=10) as two:
                sign_in_over_http(one, base)
                stolen = one.cookies["signoff_session"]
                token = csrf_of(one.get(f"{base}/").text)
                assert one.post(f"{base}/logout", data={"csrf_token": token}).status_code == 303
                two.cookies.set("signoff_session", stolen)
                assert two.get(f"{base}/").status_code == 303  # to /login
                # a POST does not bring it back either
                answer = two.post(f"{base}/workflows/Trip/start", data={"csrf_token": token})
                assert answer.status_code in (303, 403)
                assert engine.counts() == {}
            # sign out everywhere
            with httpx.Client(timeout=10) as laptop, httpx.Client(timeout=10) as phone:
                sign_in_over_http(laptop, base)
                sign_in_over_http(phone, base)
                page = laptop.get(f"{base}/").text
                assert "Sign out everywhere" in page
                answer = laptop.post(
                    f"{base}/logout/everywhere", data={"csrf_token": csrf_of(page)}
                )
                assert answer.status_code == 303
                assert phone.get(f"{base}/").status_code == 303
            # an absolute lifetime: 12 hours from sign-in, however busy
            with httpx.Client(timeout=10) as busy:
                sign_in_over_http(busy, base)
                for _ in range(3):
                    clock.advance(hours=4)
                    busy.get(f"{base}/")
                assert busy.get(f"{base}/").status_code == 303
    finally:
        engine.close()


def test_cookie_is_secure_and_hsts_on_https_and_api_answers_are_not_stored(base: str) -> None:
    with httpx.Client(timeout=10) as via_proxy:  # 127.0.0.1 is the trusted proxy by default
        answer = via_proxy.get(f"{base}/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in answer.headers["set-cookie"].lower()
        assert answer.headers["strict-transport-security"].startswith("max-age=")
    with hostile_client(timeout=10) as direct:  # an untrusted client cannot claim https
        answer = direct.get(f"{base}/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in answer.headers["set-cookie"].lower()
        assert "strict-transport-security" not in answer.headers
    answer = httpx.get(f"{base}/api/instances", headers=API, timeout=10)
    assert answer.headers["cache-control"] == "no-store"


# --- row 7: unbounded search -------------------------------------------------------------------


def test_searches_are_capped_and_bounded_in_flight(base: str, engine: Engine) -> None:
    for i in range(20):
        engine.start("Trip", {"who": f"person {i}"}, id=f"trip-{i:03d}")
    with httpx.Client(timeout=10, headers=API) as api:
        # past the 32 KiB head limit: 431, or a reset if the server closes before reading it all
        try:
            answer = api.get(f"{base}/api/instances", params={"q": "x" * 50_000})
            assert answer.status_code in (414, 422, 431, 400), answer.status_code
        except httpx.ReadError as exc:
            assert "reset" in str(exc).lower(), exc
        answer = api.get(f"{base}/api/instances", params={"q": "x" * 201})
        assert answer.status_code == 422
        by_prefix = api.get(f"{base}/api/instances", params={"q": "trip-01"}).json()
        assert sorted(r["id"] for r in by_prefix["instances"]) == [
            f"trip-{i:03d}" for i in range(10, 20)
        ]
        by_data = api.get(f"{base}/api/instances", params={"q": "person 7"}).json()
        assert [r["id"] for r in by_data["instances"]] == ["trip-007"]
    with Probe(base) as probe:
        codes = flood(
            12,
            1.0,
            lambda: (
                httpx.get(
                    f"{base}/api/instances", params={"q": "no such text"}, headers=API, timeout=10
                ).status_code
            ),
        )
    assert set(codes) <= {200, 503}
    assert not probe.failures


# --- row 8: odd input --------------------------------------------------------------------------


def test_odd_cursors_limits_and_ids_are_4xx_never_500(base: str, engine: Engine) -> None:
    with httpx.Client(timeout=10, headers=API) as api:
        for params in (
            {"before": "0001-01-01T00:00:00+01:00~x"},
            {"before": "9999-12-31T23:59:59-01:00~x"},
            {"limit": "99999999999999999999"},
            {"limit": "1e3"},
            {"status": "odd"},
        ):
            answer = api.get(f"{base}/api/instances", params=params)
            assert answer.status_code == 422, (params, answer.text)
        answer = api.post(f"{base}/api/instances", json={"workflow": "Trip", "id": "abc\n"})
        assert answer.status_code == 422
    with httpx.Client(timeout=10) as alice:
        sign_in_over_http(alice, base)
        for path in (
            "/?before=0001-01-01T00:00:00%2B01:00~x",
            "/approvals?after=~99999999999999999999",
            "/approvals?after=0001-01-01T00:00:00%2B01:00~1",
            "/?q=" + "x" * 5000,
        ):
            assert alice.get(base + path).status_code == 200, path


# --- row 9: open access without a Host allow-list ----------------------------------------------


def test_open_access_answers_loopback_names_only(engine: Engine) -> None:
    from signoff.web import create_app

    app = create_app(engine, open_access=True)
    with served(app) as base:
        port = base.rsplit(":", 1)[1]
        assert httpx.get(f"{base}/", timeout=10).status_code == 200
        for host in ("localhost", f"localhost:{port}"):
            assert httpx.get(f"{base}/", headers={"Host": host}, timeout=10).status_code == 200
        rebound = httpx.get(f"{base}/api/instances", headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 400


def test_serve_open_access_stays_on_loopback_and_says_so(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(["serve", "--open-access", "--host", "0.0.0.0", "--db", "sqlite://"], err)
    assert code == 1
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "signoff.web.cli", "serve", "--open-access"),
                *("--port", str(port), "--db", f"sqlite:///{tmp_path}/open.db"),
                *("--no-scheduler", "--log-level", "error"),
            ],
            cwd=tmp_path,
            stdout=sink,
            stderr=sink,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert httpx.get(base, headers={"Host": "evil.example"}, timeout=5).status_code == 400
        # the command's server bounds a request head (h11, not httptools): it answers 431 and
        # closes, and when it closes before the client has sent the rest of its head, the
        # client sees the connection reset instead of the answer. Either way it is refused.
        try:
            big = httpx.get(f"{base}/healthz", headers={"X-Big": "a" * 64 * 1024}, timeout=5)
            assert big.status_code in (400, 431)
        except httpx.ReadError as exc:
            assert "reset" in str(exc).lower(), exc
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # and goes on
    finally:
        process.terminate()
        process.wait(10)
    text = log.read_text()
    assert "open access" in text and "127.0.0.1, localhost, [::1]" in text
