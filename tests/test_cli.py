"""The `signoff` command line, run in-process through `main([...])` on a SQLite file, and as
real processes for `serve`."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from signoff.engine import Engine
from signoff.web.auth import hash_password, verify_password
from signoff.web.cli import ConfigError, main, parse_pairs

from tests import cli_workflows
from tests.conftest import Clock
from tests.deploy_workflows import seed
from tests.timer_workflows import Ticket

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ("--workflows", "tests.cli_workflows")
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    """`cli("start", "Purchase", ...)` -> (exit code, stdout, stderr) on this test's database;
    "ops" is an operator."""
    monkeypatch.setenv("SIGNOFF_OPERATORS", "ops")

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--db", sqlite_url, *FLOWS])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_start_show_send_list_an_approval(cli: Cli, sqlite_url: str) -> None:
    assert cli(
        "start", "Purchase", "--data", '{"amount": 120}', "--id", "p1", "--actor", "bob"
    ) == (
        0,
        "p1\n",
        "",
    )

    code, out, _ = cli("show", "p1")
    assert code == 0
    assert out.startswith("p1  Purchase  waiting\n")
    assert '  data: {"amount": 120, "approved": false}' in out
    assert "  thread main: waiting at approval\n" in out
    assert "    waits for 'decision' (approval): reminder at " in out
    assert "    waits for 'timeout' (timeout): timeout at " in out
    assert " started Purchase by bob via cli\n" in out

    code, _, err = cli(
        "send", "p1", "decision", "--payload", '{"approved": true}', "--actor", "eve"
    )
    assert code == 1
    assert "eve may not decide this: only alice may" in err

    assert cli("send", "p1", "decision", "--payload", '{"approved": true}', "--actor", "alice")[
        :2
    ] == (0, "p1: completed\n")

    code, out, _ = cli("list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "WORKFLOW", "STATUS", "WAITING", "FOR", "UPDATED", "(UTC)"]
    assert row.split()[:4] == ["p1", "Purchase", "completed", "-"]
    assert cli("list", "--status", "waiting")[1] == "(no instances)\n"
    listed = json.loads(cli("list", "--json")[1])
    assert [(r["id"], r["status"]) for r in listed] == [("p1", "completed")]

    shown = json.loads(cli("show", "p1", "--json")[1])
    assert (shown["id"], shown["status"], shown["result"]) == ("p1", "completed", "approved")
    decision = next(h for h in shown["history"] if h["kind"] == "decision")
    assert (decision["actor"], decision["via"], decision["message"]) == ("alice", "cli", "approved")


def test_retry_a_failed_instance_once_its_cause_is_fixed(cli: Cli) -> None:
    cli_workflows.BROKEN["upstream"] = True
    try:
        assert cli("start", "Fragile", "--id", "f1")[:2] == (0, "f1\n")
        out = cli("show", "f1")[1]
        assert "f1  Fragile  failed" in out
        assert "ConnectionError: upstream is down" in out
        assert cli("retry", "f1")[1].startswith("f1: failed (step 'fetch' failed")

        cli_workflows.BROKEN["upstream"] = False
        assert cli("retry", "f1", "--actor", "ops")[:2] == (0, "f1: completed\n")
        out = cli("show", "f1")[1]
        assert " retry fetch by ops via cli\n" in out
    finally:
        cli_workflows.BROKEN["upstream"] = True


def test_cancel_and_goto(cli: Cli) -> None:
    cli("start", "Purchase", "--id", "p2")
    assert cli("goto", "p2", "main", "nowhere")[2] == (
        "signoff: thread 'main' has no step or wait named 'nowhere'\n"
    )
    assert cli("cancel", "p2", "--reason", "duplicate", "--actor", "ops")[:2] == (
        0,
        "p2: cancelled (duplicate)\n",
    )
    assert cli("cancel", "p2") == (1, "", "signoff: instance p2 is already cancelled\n")


def test_errors_are_one_clear_line_and_exit_code_1(cli: Cli, sqlite_url: str) -> None:
    assert cli("show", "nope") == (1, "", "signoff: no instance with id 'nope'\n")
    code, _, err = cli("start", "Nope")
    assert (code, err) == (
        1,
        "signoff: no workflow named 'Nope' is registered (known: Fragile, Purchase)\n",
    )
    code, _, err = cli("start", "Purchase", "--data", "{amount: 1}")
    assert code == 1 and "--data is not valid JSON" in err
    code, _, err = cli("start", "Purchase", "--data", "[1]")
    assert code == 1 and "--data must be a JSON object" in err
    assert main(["list", "--db", sqlite_url, "--workflows", "no.such.module"]) == 1


def test_options_fall_back_to_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SIGNOFF_WORKFLOWS", "tests.timer_workflows, tests.cli_workflows")
    assert main(["start", "Ticket", "--id", "t1"]) == 0
    assert main(["start", "Purchase", "--id", "p1"]) == 0
    capsys.readouterr()
    engine = Engine(sqlite_url, [Ticket])
    try:
        assert engine.get("t1").status == "waiting"
    finally:
        engine.close()


def test_check_passes_on_good_workflows_and_a_reachable_database(sqlite_url: str) -> None:
    out = io.StringIO()
    assert main(["check", "--db", sqlite_url, *FLOWS], out=out) == 1  # a check migrates nothing
    assert out.getvalue().splitlines()[-1] == (
        f"FAIL  database {sqlite_url}: SchemaOutdated: the database {sqlite_url} is without "
        "signoff's schema; this version of signoff needs revision 0015: run `signoff db "
        "upgrade --db URL` (or construct the Engine with migrate=True)"
    )

    assert main(["db", "upgrade", "--db", sqlite_url], out=io.StringIO()) == 0
    out = io.StringIO()
    assert main(["check", "--db", sqlite_url, *FLOWS], out=out) == 0
    assert out.getvalue().splitlines() == [
        "ok    workflow Purchase",
        "ok    workflow Fragile",
        f"ok    database {sqlite_url} (no instances)",
        "ok    deployment strands none of 0 unfinished instance(s)",
    ]


def test_check_names_every_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_flows.py").write_text(
        "from engine import S, Step, Workflow\n\n"
        "class Twice(Workflow):\n"
        "    def definition(self):\n"
        "        return S(Step('a', self.a), Step('a', self.a))\n\n"
        "    def a(self):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = io.StringIO()
    code = main(
        [
            "check",
            "--db",
            "postgresql://postgres:secret@127.0.0.1:1/none",
            "--workflows",
            "tests.cli_workflows",
            "broken_flows",
            "missing_flows",
        ],
        out=out,
    )
    assert code == 1
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["ok    workflow Purchase", "ok    workflow Fragile"]
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 3, lines
    assert fails[0].startswith("FAIL  cannot import workflows module 'missing_flows'")
    assert fails[1].startswith("FAIL  workflow Twice: ") and "'a'" in fails[1]
    assert fails[2].startswith("FAIL  database postgresql://postgres:***@127.0.0.1:1/none: ")
    assert "secret" not in out.getvalue()


def test_hash_password_reads_stdin_and_makes_a_hash_the_web_app_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
    out = io.StringIO()
    assert main(["hash-password", "--password-stdin"], out=out) == 0
    hashed = out.getvalue().strip()
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong", hashed)


def test_real_password_hashes_fit_the_users_variable() -> None:
    alice, bob = hash_password("alice's secret"), hash_password("bob's secret")
    users = parse_pairs(f"alice={alice},bob={bob}", "SIGNOFF_USERS")
    assert users == {"alice": alice, "bob": bob}
    assert verify_password("bob's secret", users["bob"])


def test_users_and_tokens_parse_from_the_environment_format() -> None:
    assert parse_pairs("alice=scrypt$1$ab==, bob=x", "SIGNOFF_USERS") == {
        "alice": "scrypt$1$ab==",
        "bob": "x",
    }
    assert parse_pairs("t0k=n=ci-bot,abc=alice", "SIGNOFF_API_TOKENS", split_last=True) == {
        "t0k=n": "ci-bot",
        "abc": "alice",
    }
    assert parse_pairs(None, "SIGNOFF_USERS") == {}
    with pytest.raises(ConfigError, match="SIGNOFF_USERS: expected name=value pairs"):
        parse_pairs("alice", "SIGNOFF_USERS")


# --- serve, as a real process -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(url: str, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SIGNOFF_SECRET_KEY", None)
    with open(tmp_path / f"serve-{port}.log", "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "signoff.web.cli",
                "serve",
                "--db",
                url,
                "--port",
                str(port),
                "--workflows",
                "tests.timer_workflows",
                "--open-access",
                "--log-level",
                "warning",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        assert process.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
        assert time.monotonic() < deadline, "signoff serve did not come up"
        time.sleep(0.1)


def shut(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", [True, False], ids=["embedded-scheduler", "no-scheduler"])
def test_serve_answers_and_fires_timers_unless_told_not_to(
    sqlite_url: str, tmp_path: Path, scheduler: bool
) -> None:
    process, base = serve(sqlite_url, tmp_path, *(() if scheduler else ("--no-scheduler",)))
    try:
        created = httpx.post(
            f"{base}/api/instances",
            json={"workflow": "Ticket", "data": {"seconds": 0.5}},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        iid = created.json()["id"]
        time.sleep(1.5)
        status = httpx.get(f"{base}/api/instances/{iid}", timeout=5).json()["status"]
    finally:
        assert shut(process) == 0
    assert status == ("completed" if scheduler else "waiting")


# --- check before a deployment ----------------------------------------------------------------


@pytest.fixture
def candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> str:
    """A database of Order instances from v1 and v2 (see `tests.deploy_workflows.seed`), and
    two modules a team might deploy next: `careless` and `careful`. Returns the URL."""
    url = f"sqlite:///{tmp_path}/signoff.db"
    seed(url, clock)
    (tmp_path / "careless.py").write_text(
        "from tests.deploy_workflows import OrderV3Bad\nWORKFLOWS = [OrderV3Bad]\n"
    )
    (tmp_path / "careful.py").write_text(
        "from tests.deploy_workflows import Legacy, OrderV3\nWORKFLOWS = [OrderV3, Legacy]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return url


def check(url: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["check", "--db", url, *args], out=out)
    return code, out.getvalue()


def test_check_json_lists_exactly_the_instances_a_deployment_would_strand(
    candidates: str,
) -> None:
    code, text = check(candidates, "--workflows", "careless", "--json")
    assert code == 1
    found = json.loads(text)
    assert found["ok"] is False and found["problems"] == []
    assert found["workflows"] == ["Order"]
    assert found["counts"] == {"completed": 1, "failed": 1, "waiting": 6}
    deployment = found["deployment"]
    assert (deployment["checked"], deployment["stranded_instances"]) == (7, 6)
    stranded = {
        (s["workflow"], s["kind"], s["name"], s["wait"]): (s["count"], s["examples"])
        for s in deployment["stranded"]
    }
    assert stranded == {
        ("Legacy", "workflow", "Legacy", None): (1, ["l1"]),
        ("Order", "event", "lost", "shipping"): (2, ["a3", "s1"]),
        ("Order", "statement", "approval", None): (2, ["a1", "a2"]),
        ("Order", "statement", "manager approval", None): (1, ["n1"]),
    }


def test_check_says_in_words_what_would_be_stranded(candidates: str) -> None:
    code, text = check(candidates, "--workflows", "careless")
    assert code == 1
    assert text.splitlines()[2:] == [
        "FAIL  deployment would strand 6 of 7 unfinished instance(s): deploy a rename with "
        "renamed_from, keep what they stand on, or repair them (retry after a fix, goto) "
        "after the deployment",
        "        Legacy: workflow 'Legacy' is no longer registered: 1 (l1)",
        "        Order: waiting for 'lost' in wait 'shipping', a case that is gone: 2 (a3, s1)",
        "        Order: at 'approval', which is gone: 2 (a1, a2)",
        "        Order: at 'manager approval', which is gone: 1 (n1)",
    ]


def test_check_passes_a_deployment_that_declares_its_renames(candidates: str) -> None:
    code, text = check(candidates, "--workflows", "careful")
    assert code == 0, text
    assert text.splitlines()[3:] == [
        "ok    deployment strands none of 7 unfinished instance(s)",
        "ok    3 instance(s) move to renamed statements (renamed_from) at their next transition",
        "        Order: event 'approve' -> 'sign': 2 (a1, a2)",
        "        Order: statement 'approval' -> 'sign-off': 2 (a1, a2)",
        "        Order: statement 'manager approval' -> 'sign-off': 1 (n1)",
        "warn  3 instance(s) have open waits the new code changes",
        "        Order: the approvers of 'sign' in wait 'sign-off' change: 3 (a1, a2, n1); "
        "e.g. alice -> alice, bob",
        "        Order: the timer of 'expire' in wait 'sign-off' moves: 3 (a1, a2, n1); "
        "e.g. due 2026-01-05 10:00:00 UTC -> 2026-01-05 11:00:00 UTC",
    ]
    code, text = check(candidates, "--workflows", "careful", "--json")
    assert code == 0 and json.loads(text)["deployment"]["carried_instances"] == 3


def test_check_refuses_two_workflows_under_one_name(candidates: str) -> None:
    code, text = check(candidates, "--workflows", "careful", "careless")
    assert code == 1
    assert "FAIL  workflow OrderV3Bad: registered as 'Order', like OrderV3" in text


def test_check_on_postgresql(
    pg_url: str, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(pg_url, clock)
    (tmp_path / "careless_pg.py").write_text(
        "from tests.deploy_workflows import OrderV3Bad\nWORKFLOWS = [OrderV3Bad]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, text = check(pg_url, "--workflows", "careless_pg", "--json")
    assert code == 1
    assert json.loads(text)["deployment"]["stranded_instances"] == 6


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("changeme", "is 8 characters long; at least 32"),
        ("ab" * 20, "has only 2 different characters"),
    ],
)
def test_serve_refuses_a_secret_key_anyone_could_guess(
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    problem: str,
) -> None:
    monkeypatch.setenv("SIGNOFF_SECRET_KEY", key)
    assert main(["serve", "--db", sqlite_url, *FLOWS, "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert problem in err and "secrets.token_urlsafe(48)" in err


def test_serve_refuses_open_access_to_every_host(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["serve", "--db", sqlite_url, *FLOWS, "--open-access", "--allow-host", "*", "--port", "0"]
    )
    assert code == 1
    assert "never to --allow-host '*'" in capsys.readouterr().err


def test_acting_as_a_group_is_refused(cli: Cli) -> None:
    assert cli("start", "Purchase", "--data", '{"amount": 5}', "--id", "p1")[0] == 0
    code, _, err = cli(
        "send", "p1", "decision", "--payload", '{"approved": true}', "--as", "group:finance"
    )
    assert code == 1 and "a group is never an actor" in err
    assert cli("show", "p1")[1].startswith("p1  Purchase  waiting\n")
