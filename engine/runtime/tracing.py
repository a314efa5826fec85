"""OpenTelemetry spans for each step and each transition (commit), when `opentelemetry-api` is
installed (`pip install 'signoff[otel]'`); without it, nothing at all.

The spans go wherever the application's OpenTelemetry SDK sends them; signoff configures no
SDK and no exporter. A step's span is current while the step runs, so the step's own spans
(HTTP calls, queries) become its children.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

trace: Any
try:
    import opentelemetry.trace as trace
except ImportError:  # the extra is not installed: spans cost nothing
    trace = None

TRACER_NAME = "signoff"


@contextmanager
def span(name: str, attributes: dict[str, Any]) -> Iterator[None]:
    """A span named `name` around the block, with `attributes` (None values left out); an
    exception escaping the block is recorded on it."""
    if trace is None:
        yield
        return
    tracer = trace.get_tracer(TRACER_NAME)
    shown = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=shown):
        yield
