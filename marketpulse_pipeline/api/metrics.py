"""`GET /metrics`: Prometheus text. The request counters and durations are measured by an ASGI
middleware; the pipeline's gauges are read from the database at each scrape, through the same
query functions as everything else, so they are never stale and cost nothing between scrapes.

Names follow the system MarketPulse replaces where they still mean something:
`http_requests_total`, `http_request_duration_seconds` and `marketpulse_anomalies_total`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator

import pandas as pd
import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketpulse_pipeline.api.pool import Pools
from marketpulse_pipeline.storage import queries
from marketpulse_pipeline.storage.database import SchemaOutdated

UNMATCHED = "unmatched"
"""The route label of requests no route matched: one series, however many paths are probed."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"})
"""The `method` label's values, and `other`: h11 takes any token as a method, and a series per
made-up method would grow the registry without bound."""
RECENT = {"1d": 1, "7d": 7}
"""The windows of `marketpulse_anomalies_recent`, in market days back (as `--days`)."""

log = logging.getLogger(__name__)


class RequestMetrics:
    """Every HTTP request, per method, route template and status: a count and a duration."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered", labels, registry=registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's last byte",
            labels,
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )


class HttpMetrics:
    """The ASGI middleware that feeds `RequestMetrics`: the route is the template the router
    matched (`/stocks/{symbol}/latest`), so a series never multiplies with the symbols asked."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server answers when the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            method = scope["method"] if scope["method"] in METHODS else "other"
            labels = (method, route, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.duration.labels(*labels).observe(time.perf_counter() - start)


class PipelineCollector(Collector):
    """The pipeline's state at scrape time; `marketpulse_database_up 0` (and nothing else)
    when the database does not answer, so a scrape never fails with it."""

    def __init__(self, pools: Pools, today: Callable[[], dt.date]) -> None:
        self.pools = pools
        self.today = today

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("marketpulse_database_up", "1 when the database answered")
        try:
            with self.pools.reading() as conn:
                found = list(self._gauges(conn))
        except (psycopg.Error, SchemaOutdated) as error:
            log.warning("metrics: database unavailable: %s", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _gauges(self, conn: psycopg.Connection) -> Iterator[Metric]:
        sessions = GaugeMetricFamily(
            "marketpulse_last_session_timestamp_seconds",
            "Each symbol's latest stored session (midnight UTC of its date, as Unix time)",
            labels=["symbol"],
        )
        for symbol, day in queries.latest_sessions(conn).itertuples(index=False):
            midnight = dt.datetime.combine(day, dt.time(), dt.UTC)
            sessions.add_metric([symbol], midnight.timestamp())
        yield sessions

        stored = CounterMetricFamily(
            "marketpulse_anomalies",
            "Anomalies stored, per method and type",
            labels=["method", "anomaly_type"],
        )
        for method, kind, count in queries.anomaly_counts(conn).itertuples(index=False):
            stored.add_metric([method, kind], count)
        yield stored

        recent = GaugeMetricFamily(
            "marketpulse_anomalies_recent",
            "Anomalies of the last market day (1d) or week (7d), per method and type",
            labels=["method", "anomaly_type", "window"],
        )
        for window, days in RECENT.items():
            counts = queries.anomaly_counts(conn, days, self.today())
            for method, kind, count in counts.itertuples(index=False):
                recent.add_metric([method, kind, window], count)
        yield recent

        rejected = CounterMetricFamily(
            "marketpulse_rows_rejected", "Bars the quality gate refused (rejected_prices)"
        )
        rejected.add_metric([], queries.rejected_rows(conn))
        yield rejected

        quality = queries.detection_quality_table(conn)
        for measure in ("precision", "recall", "f1"):
            gauge = GaugeMetricFamily(
                f"marketpulse_detection_{measure}",
                f"Each method's {measure} against the synthetic source's planted anomalies",
                labels=["method"],
            )
            for method, value in zip(quality["method"], quality[measure], strict=True):
                if pd.notna(value):  # NULL (nothing to score yet): no sample
                    gauge.add_metric([method], float(value))
            yield gauge
