"""With `signoff[otel]`, every step and every transition is an OpenTelemetry span: a step's span
names its workflow, instance, thread, step and attempt, and records the error of a failed one;
a transition's span names what it committed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from signoff.engine import Engine, Retry, Return, S, Step, Workflow

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans signoff makes, kept in memory (the global provider can be set only once)."""
    if not isinstance(trace.get_tracer_provider(), sdk.TracerProvider):
        provider = sdk.TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


class Order(Workflow):
    charged: bool = False
    fail: bool = False

    def definition(self) -> S:
        return S(
            Step("reserve", self.reserve),
            Step("charge", self.charge, retry=Retry(attempts=1)),
            Return(self.charged),
        )

    def reserve(self) -> None:
        # a span the step makes itself is the child of the step's span
        with trace.get_tracer("shop").start_as_current_span("inventory call"):
            pass

    def charge(self) -> None:
        if self.fail:
            raise RuntimeError("card declined")
        self.charged = True


def test_each_step_and_transition_is_a_span(sqlite_url: str, spans: InMemorySpanExporter) -> None:
    engine = Engine(sqlite_url, [Order])
    iid = engine.start(Order)
    engine.close()
    finished = spans.get_finished_spans()
    steps = [s for s in finished if s.name == "signoff.step"]
    assert [s.attributes["signoff.step"] for s in steps] == ["reserve", "charge"]
    reserve = steps[0]
    assert reserve.attributes["signoff.workflow"] == "Order"
    assert reserve.attributes["signoff.instance_id"] == iid
    assert reserve.attributes["signoff.thread"] == "main"
    assert reserve.attributes["signoff.attempt"] == 1
    child = next(s for s in finished if s.name == "inventory call")
    assert child.parent is not None and child.parent.span_id == reserve.context.span_id
    transitions = [s for s in finished if s.name == "signoff.transition"]
    assert transitions, "every commit is a span"
    last = transitions[-1]
    assert last.attributes["signoff.status"] == "completed"
    assert "completed" in last.attributes["signoff.history"]


def test_a_failed_step_records_its_error(sqlite_url: str, spans: InMemorySpanExporter) -> None:
    engine = Engine(sqlite_url, [Order])
    engine.start(Order, {"fail": True})
    engine.close()
    charge = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "signoff.step" and s.attributes["signoff.step"] == "charge"
    )
    assert not charge.status.is_ok
    assert any("card declined" in str(e.attributes) for e in charge.events)
