"""Traps a newcomer fell into (issue 24): `make run` installs only what running needs, the
demo keeps its own database and secret key, every command-line argument says what it is, a
closed pipe ends `signoff list` quietly, `signoff link` says why it cannot sign, and a start
form's emptied field stays empty."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from signoff.engine import Engine
from signoff.web.cli import build_parser, main
from web_support import HX, TestClient

pytest_plugins = ["web_fixtures"]

ROOT = Path(__file__).resolve().parent.parent


def _make(target: str, tmp_path: Path) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path}/venv"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout


def test_make_run_installs_no_test_tools(tmp_path: Path) -> None:
    run = _make("run", tmp_path)
    assert "pip install --quiet -e ." in run and "[dev]" not in run
    assert "--db sqlite:///demo.db" in run  # not the README example's signoff.db
    assert "SIGNOFF_SECRET_KEY=" in run  # a key `make link` shares
    assert "[dev]" in _make("test", tmp_path)
    assert "signoff link --db sqlite:///demo.db" in _make("link", tmp_path)


def test_every_argument_says_what_it_is() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    walk(child, f"{name} {sub}".strip())
            elif action.help is None:
                missing.append(f"{name} {action.dest}")

    walk(build_parser(), "")
    assert missing == []


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pipe.db"
    engine = Engine(url, workflows=[])
    engine.close()
    from signoff.web.examples import WORKFLOWS

    engine = Engine(url, workflows=WORKFLOWS)
    try:
        for n in range(60):  # 120 KB of JSON: more than a pipe holds
            engine.start("Purchase", {"item": f"item {n} " + "x" * 2000, "cost": n})
    finally:
        engine.close()
    done = subprocess.run(
        f"{sys.executable} -m signoff.web.cli list --json --limit 500 --db {url} | head -c 100",
        shell=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert len(done.stdout) == 100
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_signoff_link_says_why_it_cannot_sign(monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.delenv("SIGNOFF_SECRET_KEY", raising=False)
    assert main(["link", "some-id", "--approver", "alice", "--db", "sqlite://"]) == 1
    said = capsys.readouterr().err
    assert "SIGNOFF_SECRET_KEY" in said and "make link" in said


def test_an_emptied_field_stays_empty(alice: TestClient, engine: Engine) -> None:
    # the form showed the defaults (employee "bob", amount 0); the person emptied them
    emptied = alice.post(
        "/workflows/Expense/start",
        data={"f.employee": "", "f.amount": "5", "f.description": ""},
        headers=HX,
    )
    assert emptied.status_code in (200, 303), emptied.text
    [started] = engine.list(workflow="Expense")
    assert engine.get(started.id).data["employee"] == ""  # not the default, "bob"
    no_number = alice.post(
        "/workflows/Expense/start",
        data={"f.employee": "ann", "f.amount": "", "f.description": ""},
        headers=HX,
    )
    assert "give a number" in no_number.text
    assert len(engine.list(workflow="Expense")) == 1
