"""Bulk actions, shared by the inbox (approve, deny) and the instances list (retry, cancel):
each selected row is tried on its own, so one refusal does not stop the rest, and the report
says what happened to every row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from signoff.engine import InstanceView, SignoffError
from signoff.web.actions import Seer, hidden, plain


@dataclass(frozen=True)
class BulkResult:
    """One row of a bulk action's report."""

    label: str
    ok: bool
    message: str
    link: str


def try_row(
    label: str,
    link: str,
    done: str,
    action: Callable[[], InstanceView],
    seen_by: Seer | None = None,
) -> BulkResult:
    """Run one row's action; a refusal becomes that row's report in plain words (`hidden` from
    a user who may not see the instance, given `seen_by`)."""
    try:
        view = action()
    except SignoffError as exc:
        if seen_by is not None:
            exc = hidden(exc, *seen_by)
        return BulkResult(label, False, plain(exc), link)
    return BulkResult(label, True, f"{done}; now {view.status}", link)


def summary(verb: str, report: Sequence[BulkResult]) -> tuple[str, int]:
    """The report's title ("Approved 18 of 20; 2 refused ...") and the response status: 200
    when any row went through, else 409."""
    good = sum(r.ok for r in report)
    title = f"{verb} {good} of {len(report)}" + (
        f"; {len(report) - good} refused (below, with why)." if good < len(report) else "."
    )
    return title, 200 if good else 409
