"""signoff inside an asyncio application (Starlette here; FastAPI is the same).

Your routes await `AsyncEngine`; your `async def` steps use your own async clients on your loop;
the dashboard is mounted under /signoff; the scheduler fires timers while the app runs.

    SIGNOFF_DATABASE_URL=sqlite:///app.db uvicorn docs.examples.starlette_app:app
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import httpx
from signoff.engine import (
    Approval,
    AsyncEngine,
    Decision,
    If,
    On,
    Return,
    S,
    Scheduler,
    Step,
    Wait,
    Workflow,
)
from signoff.web import create_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:9/pay")


class Refund(Workflow):
    order: str = ""
    amount: int = 0
    approved: bool = False
    receipt: str = ""

    def definition(self) -> S:
        return S(
            Wait("approval", On("decided", Approval(approve=self.on_approve, approvers=["alice"]))),
            If(self.approved, Step("refund", self.refund), Return(self.receipt)),
            Return(error="refused"),
        )

    def on_approve(self, decision: Decision) -> None:
        self.approved = True

    async def refund(self) -> None:
        # the application's client, made on the application's loop: this step runs there too
        response = await state.http.post(PAYMENTS_URL, json={"order": self.order})
        response.raise_for_status()
        self.receipt = response.json()["receipt"]


class State:
    http: httpx.AsyncClient


state = State()
engine = AsyncEngine(
    os.environ.get("SIGNOFF_DATABASE_URL", "sqlite:///app.db"),
    workflows=[Refund],
)


async def ask_for_refund(request: Request) -> JSONResponse:
    body = await request.json()
    iid = await engine.start(Refund, data={"order": body["order"], "amount": body["amount"]})
    return JSONResponse({"id": iid}, status_code=201)


async def show(request: Request) -> JSONResponse:
    view = await engine.get(request.path_params["iid"])
    return JSONResponse(view.to_dict())


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with httpx.AsyncClient() as client:
        state.http = client
        scheduler = Scheduler(engine)
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown()


dashboard = create_app(
    engine,
    secret_key=os.environ.get("SIGNOFF_SECRET_KEY"),
    api_tokens={os.environ.get("SIGNOFF_API_TOKEN", "change-me"): "alice"},
)
app = Starlette(
    routes=[
        Route("/refunds", ask_for_refund, methods=["POST"]),
        Route("/refunds/{iid}", show),
        Mount("/signoff", dashboard),
    ],
    lifespan=lifespan,
)
