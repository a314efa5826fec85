"""OpenTelemetry spans for each step and each transition (commit), when `opentelemetry-api` is
installed (`pip install 'signoff[otel]'`); without it, nothing at all.

The spans go wherever the application's OpenTelemetry SDK sends them; signoff configures no
SDK and no exporter. A step's span is current while the step runs, so the step's own spans
(HTTP calls, queries) become its children.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

trace: Any
try:
    import opentelemetry.trace as trace
except ImportError:  # the extra is not installed: spans cost nothing
    trace = None

TRACER_NAME = "signoff"
_NOTHING: AbstractContextManager[Any] = nullcontext()
# OpenTelemetry can also make its provider from this variable, on the first lookup
_PROVIDER_FROM_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _no_provider_set() -> bool:
    """True when no application has set a tracer provider: a cheap look at what
    `set_tracer_provider` sets, because `get_tracer_provider` reads the environment at every
    call and this is asked at every step. If the module keeps it elsewhere in some version,
    the full lookup below decides."""
    return getattr(trace, "_TRACER_PROVIDER", False) is None and not _PROVIDER_FROM_ENVIRONMENT


def off() -> bool:
    """True when no span can be sent now (no application set a tracer provider): a caller at
    every step asks this first, and then runs its block with no `with` around it at all (even
    an empty context manager costs two Python calls, and its attributes a closure)."""
    return trace is None or _no_provider_set()


def span(name: str, attributes: Callable[[], dict[str, Any]]) -> AbstractContextManager[Any]:
    """A span named `name` around the block, with the `attributes()` (None values left out);
    an exception escaping the block is recorded on it. Until the application sets a tracer
    provider (its OpenTelemetry SDK), nothing is made, not even the attributes: a step pays
    no span it cannot send."""
    if trace is None or _no_provider_set():
        return _NOTHING
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return _NOTHING
    shown = {k: v for k, v in attributes().items() if v is not None}
    return provider.get_tracer(TRACER_NAME).start_as_current_span(  # type: ignore[no-any-return]
        name, attributes=shown
    )
