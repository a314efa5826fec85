"""The wheel, as a user gets it: it holds the `signoff` package and nothing under the generic
names `engine` or `web`; it declares what it imports; and installed into a fresh virtualenv it
runs from a folder that has an `engine.py` and a `web/` package of its own, starting and listing
instances from the command line and serving every page with its static files.

Offline and quick: the wheel is built without build isolation (the dev extra brings setuptools)
and the fresh virtualenv borrows the dependencies from this one instead of downloading them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# The user's own modules, named like ours: importing either would be a bug of ours.
USER_ENGINE = "raise ImportError('the user\\'s engine.py was imported instead of signoff.engine')\n"
USER_WEB = "raise ImportError('the user\\'s web/ was imported instead of signoff.web')\n"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (a build writes build/ and *.egg-info)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.db*"
        ),
    )
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--quiet", "--wheel-dir", str(work / "dist"), str(source)),
        ],
        check=True,
        capture_output=True,
    )
    [built] = (work / "dist").glob("signoff-*.whl")
    return built


def test_the_wheel_holds_the_signoff_package_only_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"signoff"}
    for needed in (
        "signoff/__init__.py",
        "signoff/py.typed",
        "signoff/engine/__init__.py",
        "signoff/web/__init__.py",
        "signoff/engine/storage/migrations/env.py",
        "signoff/engine/storage/migrations/versions/v1_baseline.py",
        "signoff/templates/base.html",
    ):
        assert needed in names
    assert any(re.fullmatch(r"signoff/static/htmx-.*\.min\.js", n) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("signoff/tests/") or "/__pycache__/" in n for n in names)


def test_the_wheel_declares_every_package_signoff_imports(wheel: Path) -> None:
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    required = {
        _normal(re.split(r"[\s\[;<>=!~]", line.split(":", 1)[1].strip())[0])
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    extras = {
        _normal(re.split(r"[\s\[;<>=!~]", line.split(":", 1)[1].strip())[0])
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" in line
    }
    distributions = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    optional: set[str] = set()  # imported under `except ImportError`: an extra's
    for folder in ("engine", "web"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for block in ast.walk(tree):  # imports for the type checker only never run
                if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING":
                    block.body = []
                if isinstance(block, ast.Try) and any(
                    h.type is not None and "ImportError" in ast.unparse(h.type)
                    for h in block.handlers
                ):
                    for node in block.body:
                        if isinstance(node, ast.Import):
                            optional.update(a.name.split(".")[0] for a in node.names)
                        elif isinstance(node, ast.ImportFrom) and node.module:
                            optional.add(node.module.split(".")[0])
                    block.body = []
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    third_party = {
        m for m in imported if m not in sys.stdlib_module_names and m not in ("signoff",)
    }
    undeclared = {
        m for m in third_party if not any(_normal(d) in required for d in distributions.get(m, [m]))
    }
    assert undeclared == set()
    # an optional import is declared by an extra (`signoff[otel]`)
    assert optional == {"opentelemetry"}
    assert {"opentelemetry-api"} <= extras


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; its dependencies come from this venv's
    site-packages, reached through a .pth file (which runs no .pth of ours, so our editable
    install stays out)."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    assert not [p.name for p in purelib.iterdir() if p.name.split(".")[0] in ("engine", "web")]
    where = subprocess.run(
        [str(python), "-c", "import signoff; print(signoff.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where) == purelib / "signoff" / "__init__.py"  # the wheel's, not the checkout
    return venv


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A project of the user's with its own `engine.py` and `web/` package."""
    (tmp_path / "engine.py").write_text(USER_ENGINE)
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "__init__.py").write_text(USER_WEB)
    return tmp_path


def signoff(venv: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNOFF_", "SLACK_"))}
    return subprocess.run(
        [str(venv / "bin" / "signoff"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_installed_command_starts_and_lists_instances_beside_a_users_engine_and_web(
    installed: Path, user_folder: Path
) -> None:
    db = f"sqlite:///{user_folder}/signoff.db"
    done = signoff(installed, user_folder, "db", "upgrade", "--db", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("upgraded from schema revision (empty) to 0015\n")

    started = signoff(
        installed, user_folder, "start", "Expense", "--db", db, "--id", "e1", "--json",
        "--data", '{"amount": 40}',
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["status"] == "waiting"

    listed = signoff(installed, user_folder, "list", "--db", db, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(i["id"], i["workflow"]) for i in json.loads(listed.stdout)] == [("e1", "Expense")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(installed: Path, user_folder: Path) -> Iterator[str]:
    db = f"sqlite:///{user_folder}/signoff.db"
    assert (
        signoff(installed, user_folder, "start", "Expense", "--db", db, "--id", "e1").returncode
        == 0
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNOFF_", "SLACK_"))}
    server = subprocess.Popen(
        [
            *(str(installed / "bin" / "signoff"), "serve", "--open-access", "--db", db),
            *("--port", str(port), "--log-level", "warning"),
        ],
        cwd=user_folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for the server to answer
            if server.poll() is not None:
                output = server.stdout.read() if server.stdout else ""
                pytest.fail(f"signoff serve exited with {server.returncode}: {output}")
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("signoff serve did not answer within 30 s")
        yield base
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_the_installed_dashboard_serves_every_page_and_its_static_files(served: str) -> None:
    pages = ["/", "/instances/e1", "/approvals", "/workflows", "/login", "/healthz"]
    assets: set[str] = set()
    for page in pages:
        status, body = _get(served + page)
        assert status == 200, page
        assets.update(re.findall(r"""(?:src|href)=["'](/static/[^"'?#]+)""", body))
    assert any(a.endswith(".css") for a in assets)
    assert any(a.endswith(".js") for a in assets)
    for asset in sorted(assets):
        status, body = _get(served + asset)
        assert (status, bool(body)) == (200, True), asset
