"""`signoff releases`: the releases of each workflow recorded on a database (which code ran
there, first and last seen, whether a process runs it now), and retiring those no process runs
any more, so that they no longer count as newer (see docs/changing-workflows.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from signoff.engine import Engine, Release


def add_command(
    sub: Any, common: argparse.ArgumentParser, func: Callable[[argparse.Namespace, TextIO], int]
) -> None:
    text = (
        "list the releases of each workflow recorded on the database (first and last seen, "
        "running or not), and retire those no process runs any more"
    )
    p = sub.add_parser("releases", help=text, description=text, parents=[common])
    p.add_argument("--json", action="store_true", help="print the releases as JSON")
    retire = p.add_mutually_exclusive_group()
    retire.add_argument(
        "--retire",
        metavar="FINGERPRINT",
        action="append",
        default=[],
        help="retire this release (its fingerprint, or six or more of its first characters); "
        "refused while a process runs it",
    )
    retire.add_argument(
        "--retire-unused",
        action="store_true",
        help="retire every release no process was seen running lately",
    )
    p.set_defaults(func=func)


def releases(url: str, args: argparse.Namespace, out: TextIO) -> int:
    engine = Engine(url, [], migrate=False)  # no workflows: this command runs no release
    try:
        problems: list[str] = []
        retired: list[Release] = []
        if args.retire or args.retire_unused:
            retired = engine.retire_releases(args.retire, unused=args.retire_unused)
            for wanted in args.retire:
                if not any(r.fingerprint.startswith(wanted) for r in retired):
                    problems.append(
                        f"release {wanted} was not retired: "
                        + (
                            "name six or more characters of its fingerprint"
                            if len(wanted) < 6
                            else "no such release, it is retired already, or a process runs it"
                        )
                    )
        found = engine.releases_recorded()
        now = engine.clock()
    finally:
        engine.close()
    if args.json:
        print(
            json.dumps(
                {
                    "releases": [_json(r, now) for r in found],
                    "retired": [r.fingerprint for r in retired],
                    "problems": problems,
                },
                indent=2,
            ),
            file=out,
        )
        return 1 if problems else 0
    for release in retired:
        print(f"retired {release.workflow} {release.fingerprint}", file=out)
    workflow = None
    for release in found:
        if release.workflow != workflow:
            workflow = release.workflow
            print(workflow, file=out)
        print(f"  {_line(release, now)}", file=out)
    if not found:
        print("no releases recorded", file=out)
    for problem in problems:
        print(f"signoff: {problem}", file=out)
    return 1 if problems else 0


def _state(release: Release, now: datetime) -> str:
    if release.retired_at is not None:
        return f"retired {release.retired_at:%Y-%m-%d %H:%M:%S}"
    return "running" if release.alive(now) else "no process seen running it"


def _line(release: Release, now: datetime) -> str:
    return (
        f"#{release.seq}  {release.fingerprint}  first seen {release.first_seen:%Y-%m-%d %H:%M:%S}"
        f"  last seen {release.last_seen:%Y-%m-%d %H:%M:%S} UTC  {_state(release, now)}"
    )


def _json(release: Release, now: datetime) -> dict[str, Any]:
    return {
        "workflow": release.workflow,
        "fingerprint": release.fingerprint,
        "seq": release.seq,
        "first_seen": release.first_seen.isoformat() if release.first_seen else None,
        "last_seen": release.last_seen.isoformat() if release.last_seen else None,
        "running": release.alive(now),
        "retired_at": release.retired_at.isoformat() if release.retired_at else None,
        "statements": sorted(release.statements),
        "renames": {new: list(old) for new, old in sorted(release.renames.items())},
    }
