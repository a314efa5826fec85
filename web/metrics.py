"""`GET /metrics`: the engine's numbers in the Prometheus text format.

Two sources: the engine's own counters and histograms (`engine.metrics`: what this process
committed) and figures read from the database (`engine.gauges()`: instances by workflow and
status, overdue timers), which are the same from every process and cost two aggregate
queries, so they are cached for GAUGES_TTL seconds. Needs an API token (any actor), unless the
app is in open access; see docs/operations.md for panels and alerts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from time import monotonic
from typing import Any

from prometheus_client import generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from signoff.engine import Engine, Metrics, MetricsSnapshot
from signoff.web.api import error
from signoff.web.auth import TokenError, api_actor
from signoff.web.state import dashboard
from starlette.requests import Request
from starlette.responses import Response

# the classic text format, which every Prometheus reads (our names need none of 1.0's escaping)
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    """Turns one snapshot of the engine's numbers, and one reading of the database's, into
    metric families."""

    def __init__(self, snapshot: MetricsSnapshot, gauges: dict[str, Any]) -> None:
        self.snapshot = snapshot
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for name, help_text in Metrics.COUNTERS.items():
            series = self.snapshot.counters.get(name, {})
            family = CounterMetricFamily(name, help_text, labels=_label_names(series))
            for labels, value in sorted(series.items()):
                family.add_metric([v for _, v in labels], value)
            yield family
        for name, (help_text, _) in Metrics.HISTOGRAMS.items():
            hseries = self.snapshot.histograms.get(name, {})
            hfamily = HistogramMetricFamily(name, help_text, labels=_label_names(hseries))
            for labels, histogram in sorted(hseries.items()):
                buckets = [
                    ("+Inf" if bound == float("inf") else repr(bound), count)
                    for bound, count in histogram.cumulative()
                ]
                hfamily.add_metric([v for _, v in labels], buckets, histogram.total)
            yield hfamily
        instances = GaugeMetricFamily(
            "signoff_instances",
            "Instances in the database, by workflow and status",
            labels=["workflow", "status"],
        )
        for (workflow, status), n in sorted(self.gauges["instances"].items()):
            instances.add_metric([workflow, status], n)
        yield instances
        yield GaugeMetricFamily(
            "signoff_timers_overdue",
            "Timers past their due time that nobody has fired yet",
            value=self.gauges["timers_overdue"],
        )
        yield GaugeMetricFamily(
            "signoff_timers_overdue_oldest_seconds",
            "How far past its due time the most overdue unfired timer is",
            value=self.gauges["oldest_overdue_seconds"],
        )


def _label_names(series: dict[Any, Any]) -> list[str]:
    for labels in series:
        return [name for name, _ in labels]
    return []


class LiveCollector(Collector):
    """For a process without the dashboard (`signoff worker --metrics-port`): reads the
    engine's numbers at every scrape, the database's at most every `ttl` seconds."""

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._gauges: dict[str, Any] | None = None
        self._at = float("-inf")
        self._lock = threading.Lock()

    def gauges(self) -> dict[str, Any]:
        with self._lock:
            if self._gauges is None or monotonic() - self._at > self.ttl:
                self._gauges, self._at = self.engine.gauges(), monotonic()
            return self._gauges

    def collect(self) -> Iterator[Metric]:
        yield from EngineCollector(self.engine.metrics.snapshot(), self.gauges()).collect()


def serve_metrics(engine: Engine, host: str, port: int) -> Callable[[], None]:
    """Serve `/metrics` of `engine` on host:port in a thread of its own (no token: bind it to
    an address only your Prometheus reaches). Returns what stops it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(engine))
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


async def metrics(request: Request) -> Response:
    try:
        api_actor(request)  # any valid token: reading figures changes nothing
    except TokenError as exc:
        return error(401, str(exc))
    board = dashboard(request)
    gauges = await board.gauges.get()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(board.engine.metrics.snapshot(), gauges))
    return Response(generate_latest(registry), media_type=TEXT_FORMAT)
