"""The examples the docs show run as printed: a plain script, and an asyncio application whose
async step uses the application's own HTTP client while the dashboard is mounted inside it."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from web_support import TestClient

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def test_the_script_example_decides_an_expense(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "script.py"), f"sqlite:///{tmp_path}/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["waiting", "completed paid"]
    assert any(line.split()[1:] == ["decision", "decided", "alice"] for line in lines)


@pytest.fixture
def payments() -> Iterator[str]:
    """A payments service on 127.0.0.1 that hands out receipts."""

    async def pay(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"receipt": f"receipt-for-{body['order']}"})

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/pay", pay, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/pay"
    server.should_exit = True
    thread.join(5)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_asyncio_example_refunds_through_its_own_client_on_its_own_loop(
    tmp_path: Path, payments: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_DATABASE_URL", f"sqlite:///{tmp_path}/app.db")
    monkeypatch.setenv("PAYMENTS_URL", payments)
    monkeypatch.setenv("SIGNOFF_API_TOKEN", "token-for-alice")
    example = load(EXAMPLES / "starlette_app.py")

    with TestClient(example.app) as client:
        created = client.post("/refunds", json={"order": "A-17", "amount": 30})
        assert created.status_code == 201
        iid = created.json()["id"]
        assert client.get(f"/refunds/{iid}").json()["status"] == "waiting"

        # alice approves through the dashboard's JSON API, mounted under /signoff
        decided = client.post(
            f"/signoff/api/instances/{iid}/events/decided",
            json={"payload": {"approved": True}},
            headers={"Authorization": "Bearer token-for-alice"},
        )
        assert decided.status_code == 200, decided.text
        view = client.get(f"/refunds/{iid}").json()
        assert view["status"] == "completed"
        assert view["result"] == "receipt-for-A-17"
        assert client.get("/signoff/healthz").status_code == 200


def test_the_readme_example_runs_as_printed(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent.parent / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "example.py"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
