"""Builds signoff, with the statement tree and its interpreter compiled by mypyc when it can.

pyproject.toml holds everything else; this file only adds the optional compiled core. When:
- `SIGNOFF_COMPILE=1`: always, an editable install too (its modules are then built in place,
  beside the .py files, which they shadow until `make clean`);
- `SIGNOFF_COMPILE=0`: never;
- unset: wheels and ordinary installs (`pip install .`, `pip install signoff`) compile, editable
  installs (`make install`, `pip install -e .`) do not, so an edited module is what runs.

Without mypyc, a C compiler or Python's headers, or when compiling fails, the build goes on as
pure Python (the same code, interpreted) and says so in one line. At run time
`signoff.engine.core.COMPILED` tells which one runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# The modules that walk the tree at every transition; nothing a user subclasses is among them
# (handlers and workflows stay interpreted).
CORE = ("tree", "steps", "branches", "loops", "waits", "threads", "interpreter", "validate")
GROUP = "signoff.engine.core.native"  # the shared library: signoff/engine/core/native__mypyc.*.so
BUILD = HERE / "build" / "mypyc"
# the commands that build code; metadata and sdists never compile
BUILDING = {"bdist_wheel", "build", "build_ext", "install", "editable_wheel", "develop"}


def notice(text: str) -> None:
    print(f"signoff: {text}", file=sys.stderr, flush=True)


def pure_because() -> str | None:
    """Why this build stays pure Python, or None when it should compile."""
    setting = os.environ.get("SIGNOFF_COMPILE", "").strip().lower()
    if setting in {"0", "no", "false", "off"}:
        return "SIGNOFF_COMPILE=0"
    if BUILDING.isdisjoint(sys.argv[1:]):
        return "nothing is built"
    forced = setting in {"1", "yes", "true", "on"}
    if not forced and {"editable_wheel", "develop"} & set(sys.argv[1:]):
        return "an editable install (SIGNOFF_COMPILE=1 compiles it in place)"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc (from mypy) is not installed"
    return compiler_problem()


def compiler_problem() -> str | None:
    """What keeps a C compiler from building against Python's headers (a tiny file is
    compiled to find out), or None."""
    try:  # setuptools provides distutils where Python no longer does (3.12 and later)
        from distutils import ccompiler, errors
        from distutils import sysconfig as dsysconfig

        compiler: Any = ccompiler.new_compiler()
        dsysconfig.customize_compiler(compiler)
    except Exception as exc:
        return f"no C compiler could be set up ({type(exc).__name__}: {exc})"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text("#include <Python.h>\nint probe(void) { return PY_MAJOR_VERSION; }\n")
        try:
            compiler.compile(
                [str(source)], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except (errors.CompileError, errors.DistutilsExecError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"no C compiler with Python's headers ({first})"
    return None


def staged() -> Path:
    """The package copied under its installed name, so mypy names the modules
    signoff.engine.core.*: in the checkout the package's folder has whatever name it has."""
    root = BUILD / "src"
    shutil.rmtree(root, ignore_errors=True)
    package = root / "signoff"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "migrations")
    shutil.copytree(HERE / "engine", package / "engine", ignore=ignore)
    for name in ("__init__.py", "py.typed"):
        shutil.copy2(HERE / name, package / name)
    return package


def compiled_core() -> list[Extension]:
    """mypyc's extensions for the core, or [] (with a notice) when the build stays pure."""
    reason = pure_because()
    if reason is None:
        try:
            from mypyc.build import mypycify

            package = staged()
            config = BUILD / "mypy.ini"
            # what mypyc needs to know the types; the type check itself is `make lint`'s
            config.write_text(
                "[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n"
                f"explicit_package_bases = True\nmypy_path = {package.parent}\n"
                f"cache_dir = {BUILD / 'cache'}\n"
            )
            paths = [str(package / "engine" / "core" / f"{name}.py") for name in CORE]
            return list(
                mypycify(
                    ["--config-file", str(config), *paths],
                    opt_level="3",
                    group_name=GROUP,
                    target_dir=str(BUILD / "c"),
                )
            )
        except (Exception, SystemExit) as exc:  # mypy's errors end in SystemExit
            reason = f"mypyc could not compile the core ({exc})"
    if reason != "nothing is built":
        notice(f"pure Python core: {reason}")
    return []


def compiled_outputs(where: Path) -> list[Path]:
    """The compiled core's files under `where` (a build folder or the checkout)."""
    core = where / "engine" / "core" if where == HERE else where / "signoff" / "engine" / "core"
    suffixes = (".so", ".pyd")
    return [
        path
        for path in core.glob("*")
        if path.suffix in suffixes
        and (path.name.split(".")[0] in CORE or path.name.startswith("native__mypyc"))
    ]


class BuildCore(build_ext):
    """Builds the compiled core; when the C compiler fails, removes what it built and goes on
    as pure Python, so a wheel never holds half of it (the wheel keeps its platform tag: it
    was decided before the build began)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            for path in compiled_outputs(Path(self.build_lib)):
                path.unlink()
            # the compiler's own output is above; its command line is too long for one line
            notice(f"pure Python core: compiling it failed ({type(exc).__name__})")


class BuildPure(build_py):
    """A pure build leaves no compiled module of an earlier build in the build folder (a wheel
    would ship it) nor in the checkout (where an editable install would run it)."""

    def run(self) -> None:
        super().run()
        if not self.distribution.ext_modules:
            stale = compiled_outputs(Path(self.build_lib))
            if self.editable_mode:
                stale += compiled_outputs(HERE)
            for path in stale:
                path.unlink()


setup(ext_modules=compiled_core(), cmdclass={"build_ext": BuildCore, "build_py": BuildPure})
