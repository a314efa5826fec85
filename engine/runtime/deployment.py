"""Deployments: holding the workflows registered here (the code about to be deployed) against
every unfinished instance (`signoff check`), and retiring the recorded releases no process runs
any more."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from signoff.engine.core.deploy import UNFINISHED, Assessment, DeploymentReport, Finding, assess
from signoff.engine.core.handlers import Services
from signoff.engine.core.releases import Release, held_by_newer, names_of
from signoff.engine.core.stored import data_unreadable, read_state
from signoff.engine.core.validate import validate
from signoff.engine.core.workflow import Workflow
from signoff.engine.errors import CorruptState, DefinitionError
from signoff.engine.runtime.arguments import error_text
from signoff.engine.runtime.releases import Releases
from signoff.engine.runtime.unreadable import warn
from signoff.engine.storage import placement
from signoff.engine.storage.store import Store


class Deployment:
    def __init__(
        self,
        store: Store,
        workflows: Mapping[str, type[Workflow]],
        releases: Releases,
        services: Services,
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.workflows = workflows
        self.releases = releases
        self.services = services
        self._now = now

    def check_deployment(self, *, examples: int = 5, page_size: int = 500) -> DeploymentReport:
        report = DeploymentReport(examples=examples)
        recorded: dict[str, list[Release]] = {}  # releases per workflow, read once
        for rows in placement.unfinished_pages(self.store, UNFINISHED, page_size):
            for instance_id, workflow, data, state in rows:
                found = self.assess(instance_id, workflow, data, state, recorded)
                report.add(instance_id, workflow, found)
        return report

    def assess(
        self,
        instance_id: str,
        workflow: str,
        data: str,
        state: str,
        recorded: dict[str, list[Release]] | None = None,
    ) -> Assessment:
        try:
            parsed = read_state(instance_id, state)
        except CorruptState as exc:
            warn(exc, workflow)
            return Assessment(unreadable=exc.problem)
        cls = self.workflows.get(workflow)
        if cls is None:
            return Assessment(stranded=[Finding("workflow", workflow)])
        try:
            definition = cls.model_validate_json(data).definition()
            validate(definition, workflow)
        except Exception as exc:  # the workflow's own code, or data that no longer fits
            corrupt = data_unreadable(instance_id, data, exc)
            if corrupt is not None:
                warn(corrupt, workflow)
                return Assessment(unreadable=corrupt.problem)
            reason = str(exc) if isinstance(exc, DefinitionError) else error_text(exc)
            return Assessment(stranded=[Finding("definition", reason.splitlines()[0][:300])])
        found = assess(definition, parsed, self.services)
        mine = self.releases.fingerprint(workflow)
        if found.stranded and mine is not None and recorded is not None:
            if workflow not in recorded:
                recorded[workflow] = self.releases.rows.of(workflow)
            held_by_newer(found, mine, names_of(definition), recorded[workflow])
        return found

    def retire_releases(
        self, fingerprints: Iterable[str] = (), *, unused: bool = False
    ) -> list[Release]:
        now = self._now()
        mine = {r.fingerprint for r in self.releases.mine.values()}
        chosen = [
            r
            for r in self.releases.rows.of()
            if not r.retired
            and r.fingerprint not in mine
            and (
                any(len(f) >= 6 and r.fingerprint.startswith(f) for f in fingerprints)
                or (unused and not r.alive(now))
            )
        ]
        self.releases.rows.retire([r.fingerprint for r in chosen], now)
        return chosen
