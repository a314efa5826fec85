"""Workflows whose handlers answer their sender (`send` returns the answer as `reply`); the
command-line tests load them with `--workflows tests.reply_workflows`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from signoff.engine import Approval, Decision, Input, On, Return, S, Wait, Workflow


class Pick(BaseModel):
    n: int
    answer: str = "ticket"


def answer(kind: str, n: int) -> Any:
    """What the form's apply returns: a JSON value, or one that cannot be stored."""
    match kind:
        case "ticket":
            return {"ticket": f"T-{n}", "note": "ok ✓ 🎉"}
        case "nan":
            return {"ratio": float("nan")}
        case "set":
            return {1, 2}
        case "nul":
            return "a\x00b"
        case "big":
            return "x" * (300 * 1024)
        case "list":
            return [n, "n", None, True]
    return None


class Quote(Workflow):
    """An approval whose callback answers with a ticket, then a form whose apply answers."""

    amount: int = 0
    approved: bool = False
    picked: int = 0

    def definition(self) -> S:
        return S(
            Wait(
                "approval",
                On("decision", Approval(approve=self.yes, deny=self.no, approvers=["alice"])),
            ),
            Wait("details", On("details", Input(Pick, self.take))),
            Return({"approved": self.approved, "picked": self.picked}),
        )

    def yes(self, decision: Decision) -> dict[str, Any]:
        self.approved = True
        return {"ticket": f"Q-{self.amount}", "by": decision.actor}

    def no(self, decision: Decision) -> None:
        self.approved = False

    async def take(self, value: Pick) -> Any:  # async: its result is the reply too
        self.picked = value.n
        return answer(value.answer, value.n)
