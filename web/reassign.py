"""Handing a part of an approval to someone else, from the dashboard: the Reassign control of the
instance page and of the approvals inbox, and the "away" page where a signed-in user sends their
new requests to someone else until a date (`Engine.reassign`, `Engine.set_delegate`). Who may
hand what to whom is the engine's to say; these pages only ask and show the answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from signoff.engine import SignoffError
from signoff.web.actions import Outcome, attempt, plain, refusal
from signoff.web.auth import checked_form, chrome, remember_flash, require_user
from signoff.web.errors import status_for
from signoff.web.instance import _respond as instance_response
from signoff.web.render import Flash, template
from signoff.web.state import dashboard, root_of
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

MAX_REASON = 2000


def _field(form: FormData, name: str, limit: int = 200) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def _hand_over(request: Request, user: str, form: FormData, instance_id: str) -> Outcome:
    to = _field(form, "to")  # the engine says what is missing, once the person may see it
    board = dashboard(request)
    outcome = await attempt(
        board.engine.reassign,
        instance_id,
        to,
        actor=user,
        reason=_field(form, "why", MAX_REASON) or None,
        thread=_field(form, "thread") or None,
        event=_field(form, "event") or None,
        of=_field(form, "of") or None,
        wait_key=_field(form, "wait_key") or _field(form, "key") or None,
        via="web",
        seen_by=(board.engine, instance_id, user),
    )
    board.changed()
    if outcome.ok:
        outcome.flash = Flash("ok", f"Handed over to {to}: they may decide it now.")
    return outcome


async def on_instance(request: Request) -> Response:
    """POST /instances/{id}/reassign: the instance page's Reassign control."""
    user = require_user(request)
    form = await checked_form(request)
    instance_id = request.path_params["instance_id"]
    outcome = await _hand_over(request, user, form, instance_id)
    return await instance_response(request, instance_id, user, outcome)


async def in_inbox(request: Request) -> Response:
    """POST /approvals/reassign: the inbox row's Reassign control; back to the inbox."""
    user = require_user(request)
    form = await checked_form(request)
    instance_id = _field(form, "instance")
    if not instance_id:
        outcome = refusal("The form is incomplete: reload the page and try again.", 400)
    else:
        outcome = await _hand_over(request, user, form, instance_id)
    flash = outcome.flash or Flash("ok", "Handed over.")
    remember_flash(request, flash)
    return RedirectResponse(f"{root_of(request)}/approvals", status_code=303)


# --- "away until ..., send my requests to ..." --------------------------------------------------


@dataclass(frozen=True)
class AwayPage:
    user: str
    to: str | None  # whom their new requests go to now (None: to them)
    until: datetime | None
    flash: Flash | None = None


async def away(request: Request) -> Response:
    user = require_user(request)
    board = dashboard(request)
    found = await run_in_threadpool(board.engine.delegate_of, user)
    to, until = found or (None, None)
    context = AwayPage(user, to, until)
    return template(request, "pages/away.html", context, chrome(request, "approvals"))


async def set_away(request: Request) -> Response:
    """POST /away: set (or, with `back`, clear) the signed-in user's delegation."""
    user = require_user(request)
    form = await checked_form(request)
    board = dashboard(request)
    status, flash = 200, None
    if form.get("back") is not None:
        await run_in_threadpool(board.engine.clear_delegate, user)
        flash = Flash("ok", "Welcome back: your new requests come to you again.")
    else:
        to, raw = _field(form, "to"), _field(form, "until", 40)
        try:
            until = datetime.fromisoformat(raw).replace(tzinfo=UTC) if raw else None
        except ValueError:
            until = None
        if not to or until is None:
            status = 422
            flash = Flash("error", "Say whom to send your requests to, and until when (UTC).")
        else:
            try:
                await run_in_threadpool(board.engine.set_delegate, user, to, until)
                flash = Flash(
                    "ok", f"Until {until:%Y-%m-%d %H:%M} UTC, your new requests go to {to}."
                )
            except SignoffError as exc:
                status, flash = status_for(exc), Flash("error", plain(exc))
    found = await run_in_threadpool(board.engine.delegate_of, user)
    context = AwayPage(user, found[0] if found else None, found[1] if found else None, flash)
    return template(
        request, "pages/away.html", context, chrome(request, "approvals"), status_code=status
    )
