"""What every dashboard action shares: the engine call off the event loop, the error turned
into plain words, the audit identity (signed-in user, via "web")."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from signoff.engine import Engine, InstanceNotFound, SignoffError
from signoff.web.errors import retry_after, status_for
from signoff.web.render import Flash
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class Outcome:
    """The result of an action: a value or a refusal, with the HTTP status it maps to."""

    def __init__(
        self,
        value: Any = None,
        flash: Flash | None = None,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.value = value
        self.flash = flash
        self.status_code = status_code
        self.headers = headers or {}  # Retry-After of a 503

    @property
    def ok(self) -> bool:
        return self.status_code < 400


async def attempt(
    call: Callable[..., T], *args: Any, seen_by: Seer | None = None, **kwargs: Any
) -> Outcome:
    """Run an engine call in the thread pool; a SignoffError becomes an error Outcome. With
    `seen_by` (the engine, the instance and the user acting on it), a refusal to a user who may
    not see the instance says it does not exist (`hidden`)."""
    try:
        value = await run_in_threadpool(call, *args, **kwargs)
    except SignoffError as exc:
        if seen_by is not None:
            exc = await run_in_threadpool(hidden, exc, *seen_by)
        status = status_for(exc)
        headers = {"Retry-After": retry_after(exc)} if status == 503 else None
        return Outcome(None, Flash("error", plain(exc)), status, headers)
    return Outcome(value)


Seer = tuple[Engine, str, str]


def hidden(exc: SignoffError, engine: Engine, instance_id: str, user: str) -> SignoffError:
    """The refusal to show `user`: `exc`, or "no instance" when the instance is not one they
    may see (the engine's rule, `Engine.may_see`), so that no refusal tells anyone that an
    instance they take no part in exists, nor who may act on it."""
    if isinstance(exc, InstanceNotFound):
        return exc
    try:
        if engine.may_see(instance_id, user):
            return exc
    except SignoffError:
        pass
    return InstanceNotFound(f"no instance with id '{instance_id}'")


def plain(exc: SignoffError) -> str:
    return str(exc) or type(exc).__name__  # engine messages are sentences already


def refusal(message: str, status_code: int = 422) -> Outcome:
    return Outcome(None, Flash("error", message), status_code)


def answered(view: Any, limit: int = 300) -> str:
    """ " Reply: …" for a flash, when the handler of the event just sent answered (`reply`)."""
    reply = getattr(view, "reply", None)
    if reply is None:
        return ""
    text = json.dumps(reply, ensure_ascii=False)
    return f" Reply: {text if len(text) <= limit else text[: limit - 1] + '…'}"
