"""Live pages: the server tells each open page when something changed, by Server-Sent Events.

`GET /live` is an event stream for the signed-in person: `count` (how many requests wait for
them, the number beside Approvals in the navigation) when it connects and whenever it changes,
and `changed` whenever any instance changed, in this process or any other on the same
database. static/app.js listens: it refreshes the inbox without moving its rows and triggers
`signoff:changed`, which the live parts of the other pages (the instances list, an instance)
refresh on: no page polls while the stream is up. Without push (an old browser, a proxy that
buffers, a stream that failed four times in a row), app.js polls `GET /live/count` instead,
every 5 s on a page with a live part and every 10 s elsewhere, and marks <body>
`data-live-mode="poll"` so the page can say so.

One watcher per app (`Changes`) reads the engine's change mark (two index lookups) every
second while any page listens, and at once after an action of this app; each stream waits on
it, so a hundred open pages cost one query a second, not a hundred. A stream ends by itself
before the request time limit, and the browser reconnects at once (`retry`), saying the last
mark it saw (each event's id), so a change made in between is told as soon as it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from signoff.web.auth import require_user
from signoff.web.state import dashboard
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

RETRY_MS = 1000  # how soon a browser reconnects after a stream ended
MAX_MARK = 100  # a change mark is an ISO time and a number


async def stream(request: Request) -> Response:
    user = require_user(request)
    board = dashboard(request)
    changes = board.live
    if changes is None:  # a Dashboard built without create_app: nothing to listen to
        return Response(status_code=204)
    lifetime = max(1.0, min(25.0, board.limits.request_timeout - 5))

    async def events() -> AsyncIterator[dict[str, Any]]:
        changes.listeners += 1
        try:
            loop = asyncio.get_running_loop()
            ends = loop.time() + lifetime
            seen = _last_seen(request)
            count: int | None = None
            yield {"retry": RETRY_MS, "comment": "signoff"}
            while loop.time() < ends:
                mark = await changes.wait(seen, min(15.0, ends - loop.time()))
                now = await board.inbox_counts.get((user, "", ""))
                tag = {"id": mark} if mark is not None else {}
                if now != count:
                    count = now
                    yield {"event": "count", "data": str(now), **tag}
                if mark is not None and seen is not None and mark != seen:
                    yield {"event": "changed", "data": mark, **tag}
                seen = mark if mark is not None else seen
        finally:
            changes.listeners -= 1

    return EventSourceResponse(
        events(),
        ping=15,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _last_seen(request: Request) -> str | None:
    """The mark the browser saw last on an earlier stream (it sends the last event's id when it
    reconnects): a change made while it reconnected is told at once, not missed. Anything that
    does not look like a mark counts as nothing seen."""
    last = request.headers.get("last-event-id", "")
    return last if 0 < len(last) <= MAX_MARK and last.isprintable() else None


async def count(request: Request) -> Response:
    """The polling fallback: the count and the change mark, as JSON."""
    user = require_user(request)
    board = dashboard(request)
    waiting = await board.inbox_counts.get((user, "", ""))
    mark = await run_in_threadpool(board.engine.change_mark)
    return JSONResponse({"count": waiting, "mark": mark}, headers={"Cache-Control": "no-store"})
