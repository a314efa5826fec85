"""Bulk actions, shared by the inbox (approve, deny) and the instances list (retry, cancel):
each selected row is tried on its own, so one refusal does not stop the rest, and the report
says what happened to every row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from signoff.engine import Engine, InstanceView, SignoffError
from signoff.web.actions import Seer, hidden, plain


@dataclass(frozen=True)
class BulkResult:
    """One row of a bulk action's report."""

    label: str  # what was selected: the instance's id
    ok: bool
    message: str
    link: str
    title: str = ""  # what people call the instance, when the person may see it

    @property
    def name(self) -> str:
        return self.title or self.label


def try_row(
    label: str,
    link: str,
    done: str,
    action: Callable[[], InstanceView],
    seen_by: Seer | None = None,
) -> BulkResult:
    """Run one row's action; a refusal becomes that row's report in plain words (`hidden` from
    a user who may not see the instance, given `seen_by`). The row is named by the instance's
    title when the person may see it, else by `label` (what they selected: its id)."""
    try:
        view = action()
    except SignoffError as exc:
        if seen_by is not None:
            exc = hidden(exc, *seen_by)
            return BulkResult(label, False, plain(exc), link, _title(*seen_by))
        return BulkResult(label, False, plain(exc), link)
    return BulkResult(label, True, f"{done}; now {view.status}", link, view.title)


def _title(engine: Engine, instance_id: str, user: str) -> str:
    try:
        return engine.get(instance_id, user).title
    except SignoffError:  # gone, or not theirs to see: named by the id they selected
        return ""


def summary(verb: str, report: Sequence[BulkResult]) -> tuple[str, int]:
    """The report's title ("Approved 18 of 20; 2 refused ...") and the response status: 200
    when any row went through, else 409."""
    good = sum(r.ok for r in report)
    title = f"{verb} {good} of {len(report)}" + (
        f"; {len(report) - good} refused (below, with why)." if good < len(report) else "."
    )
    return title, 200 if good else 409
