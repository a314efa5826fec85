"""The wheel, as a user gets it: it holds the `signoff` package and nothing under the generic
names `engine` or `web`; it declares what it imports; and installed into a fresh virtualenv it
runs from a folder that has an `engine.py` and a `web/` package of its own, starting and listing
instances from the command line and serving every page with its static files.

Its core is compiled (setup.py, mypyc) where a C compiler is at hand, as here: the statement
and interpreter tests run again against the installed wheel. Without a compiler the build is
pure Python and says so; an editable install is pure Python.

Offline: the wheel is built without build isolation (the dev extra brings setuptools and mypy)
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


# what setup.py compiles, and the tests that run again against it
COMPILED_MODULES = {
    *("tree", "steps", "branches", "loops", "waits", "threads", "interpreter", "validate"),
    "native__mypyc",  # the library they share
}
CORE_TESTS = [
    *("test_steps.py", "test_branches.py", "test_switch.py", "test_loops.py", "test_waits.py"),
    *("test_threads.py", "test_hot_update.py", "test_working.py"),
]


def build_wheel(work: Path, env: dict[str, str] | None = None) -> tuple[Path, str]:
    """A wheel built from a copy of the checkout (a build writes build/ and *.egg-info), and
    what the build said."""
    source = work / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            *(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
            *("*.db*", "*.so", "*.pyd", "compiled-venv", "peer-venv"),
        ),
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--verbose", "--wheel-dir", str(work / "dist"), str(source)),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    [built] = (work / "dist").glob("signoff-*.whl")
    return built, done.stdout + done.stderr


def compiled_in(wheel: Path) -> set[str]:
    """The modules of signoff.engine.core that `wheel` carries compiled."""
    return {
        name.rsplit("/", 1)[1].split(".")[0]
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith("signoff/engine/core/") and name.endswith((".so", ".pyd"))
    }


def a_c_compiler() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(os.environ.get("CC", compiler).split()[0]) is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built, _ = build_wheel(tmp_path_factory.mktemp("wheel"))
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


def test_the_wheel_carries_the_compiled_core_beside_its_sources(wheel: Path) -> None:
    if not a_c_compiler():
        pytest.skip("no C compiler here: the wheel is pure Python (see the test below)")
    assert compiled_in(wheel) == COMPILED_MODULES
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"signoff/engine/core/{m}.py" for m in COMPILED_MODULES - {"native__mypyc"}} <= set(
        names
    )
    assert not any(n.startswith(("build/", "signoff/build/")) for n in names)


def test_without_a_c_compiler_the_build_is_pure_python_says_so_and_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    built, said = build_wheel(tmp_path, {**env, "CC": str(tmp_path / "no-such-cc")})
    assert built.name.endswith("-py3-none-any.whl")
    assert compiled_in(built) == set()
    [notice] = [line.strip() for line in said.splitlines() if line.strip().startswith("signoff:")]
    assert notice.startswith("signoff: pure Python core: no C compiler with Python's headers")
    venv = tmp_path / "env"
    python = fresh_venv(venv)
    install(python, built)
    ran = subprocess.run(
        [str(python), "-c", RUNS_A_WORKFLOW],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ran.stdout.split() == ["False", "completed", "2"]


# imports the installed core, says whether it is compiled, and runs a workflow through it
RUNS_A_WORKFLOW = """
import signoff.engine.core as core
from signoff.engine import Engine, S, Step, Workflow

class Two(Workflow):
    count: int = 0

    def definition(self):
        return S(Step("a", self.bump), Step("b", self.bump))

    def bump(self):
        self.count += 1

engine = Engine("sqlite://", workflows=[Two])
got = engine.get(engine.start(Two))
print(core.COMPILED, got.status, got.data["count"])
"""


def test_an_editable_install_runs_the_pure_core_with_no_compiled_module_in_the_checkout() -> None:
    import signoff
    import signoff.engine.core

    if Path(signoff.__file__).resolve().parent != ROOT:
        pytest.skip(f"signoff is installed from {signoff.__file__}, not from this checkout")
    assert signoff.engine.core.COMPILED is False
    assert not [p.name for p in (ROOT / "engine").rglob("*") if p.suffix in (".so", ".pyd")]


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
    # an optional import is declared by an extra (`signoff[otel]`, `signoff[postgres]`)
    assert optional == {"opentelemetry", "psycopg"}
    assert {"opentelemetry-api", "psycopg"} <= extras


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; its dependencies come from this venv's
    site-packages, reached through a .pth file (which runs no .pth of ours, so our editable
    install stays out)."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    python = fresh_venv(venv)
    purelib = install(python, wheel)
    assert not [p.name for p in purelib.iterdir() if p.name.split(".")[0] in ("engine", "web")]
    where = subprocess.run(
        [str(python), "-c", "import signoff; print(signoff.__file__)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where) == purelib / "signoff" / "__init__.py"  # the wheel's, not the checkout
    return venv


def fresh_venv(venv: Path) -> Path:
    """A virtualenv whose dependencies are this one's, reached through a .pth file (which runs
    no .pth of ours, so our editable install stays out); its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    (purelib_of(python) / "borrowed-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    return python


def purelib_of(python: Path) -> Path:
    return Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )


def install(python: Path, wheel: Path) -> Path:
    """Install `wheel` into `python`'s environment, offline; its site-packages."""
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
            *("--no-deps", "--no-index", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    return purelib_of(python)


def test_the_statement_and_interpreter_tests_pass_against_the_installed_compiled_core(
    installed: Path, wheel: Path
) -> None:
    """The core's own tests, run by the installed wheel's Python: its compiled modules (mypyc
    checks types at run time, and a compiled class differs from a Python one in small ways)
    behave as the pure Python ones the rest of the suite runs."""
    if not compiled_in(wheel):
        pytest.skip("no C compiler here: the wheel is pure Python")
    python = installed / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    probe = "import signoff.engine.core as c, signoff; print(c.COMPILED, signoff.__file__)"
    found = subprocess.run(
        [str(python), "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT, env=env
    ).stdout.split()
    assert found == ["True", str(purelib_of(python) / "signoff" / "__init__.py")]
    ran = subprocess.run(
        [
            *(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"),
            *(str(ROOT / "tests" / name) for name in CORE_TESTS),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout[-5000:] + ran.stderr[-2000:]


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
