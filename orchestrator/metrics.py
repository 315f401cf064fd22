"""Prometheus metrics: the process's registry and every metric object, served at GET /metrics by the API and by
the worker's health server (`serve`), exposition by prometheus-client.

Each process exposes its own figures (API processes, worker replicas); Prometheus sums them. Call sites only
increment (`RUNS_STARTED.labels(...).inc()`): nothing on a hot path does more than that.

Labels are bounded on purpose: environment names and integration keys are created by the operator and the
customers they let deploy (tens to hundreds, not one per end user), script kinds, RPC methods, HTTP status codes
and outcomes are closed sets. Never a connection id, a job id, a URL or anything a script chooses freely.

The worker also folds in the Temporal SDK's own metrics (`temporal_*`): its core exports Prometheus on a loopback
port only this process reads (`temporal_runtime`), re-exposed here at each scrape, so an operator scrapes one
port per worker, the health port.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = structlog.get_logger(__name__)

# One registry per process (prometheus-client's model), ours rather than the library's global default so that
# nothing imported registers into what we serve by accident.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Script runs take seconds to hours; records API pages milliseconds to seconds.
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200, float("inf"))
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))

RUNS_STARTED = Counter(
    "nango_runs_started", "Script runs (jobs) whose script started in a sandboxed child, counted at their first "
    "attempt, by the worker that ran it.", ("environment", "integration", "kind"), registry=REGISTRY)
RUNS_FINISHED = Counter(
    "nango_runs_finished", "Script runs (jobs) closed by a worker, by outcome: success, failed or cancelled "
    "(failed includes runs refused before their script started, e.g. a token refresh refused).",
    ("environment", "integration", "kind", "status"), registry=REGISTRY)
RUN_DURATION = Histogram(
    "nango_run_duration_seconds", "Time a script ran in its sandboxed child, per attempt (waiting for a slot "
    "excluded).", ("environment", "integration", "kind"), buckets=RUN_BUCKETS, registry=REGISTRY)
RECORDS_CHANGED = Counter(
    "nango_records_changed", "Records a script run added, updated or deleted (deletion detection included).",
    ("environment", "integration", "change"), registry=REGISTRY)
RECORDS_SERVED = Counter(
    "nango_records_api_rows", "Records served by GET /records.", ("environment",), registry=REGISTRY)
RECORDS_API_DURATION = Histogram(
    "nango_records_api_duration_seconds", "Time to stream one page of GET /records.", ("environment",),
    buckets=API_BUCKETS, registry=REGISTRY)
RPC_CALLS = Counter(
    "nango_script_rpc_calls", "Calls from scripts to the platform (`nango.*`), by method (`unknown` for a name the "
    "platform does not serve) and outcome (ok or error).", ("environment", "method", "outcome"), registry=REGISTRY)
PROVIDER_REQUESTS = Counter(
    "nango_provider_requests", "Requests to providers' APIs by scripts and /proxy, one per attempt, by the status "
    "the provider answered (`error`: no answer).", ("environment", "integration", "status"), registry=REGISTRY)
PROVIDER_RETRIES = Counter(
    "nango_provider_retries", "Provider requests retried, by the status that caused the retry (`error`: no "
    "answer; 429 is a rate limit).", ("environment", "integration", "status"), registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter(
    "nango_webhook_deliveries", "Webhooks to the customer's app (kind sync, auth or forward), by outcome: "
    "delivered, failed (after its retries) or refused (the egress policy).",
    ("environment", "kind", "outcome"), registry=REGISTRY)
TOKEN_REFRESHES = Counter(
    "nango_token_refreshes", "Token refreshes and re-mints that asked the provider, by outcome: refreshed, refused "
    "(the connection is marked) or error (transient, tried again later).", ("environment", "integration", "outcome"),
    registry=REGISTRY)
SLOTS_IN_USE = Gauge(
    "nango_worker_slots_in_use", "Runs holding one of this worker's slots, by environment and script kind.",
    ("environment", "kind"), registry=REGISTRY)


def records_changed(environment: str, integration: str, added: int, updated: int, deleted: int) -> None:
    """Count a write's changes (three counters, only the ones that moved)."""
    for change, n in (("added", added), ("updated", updated), ("deleted", deleted)):
        if n:
            RECORDS_CHANGED.labels(environment, integration, change).inc(n)


class TemporalSdkMetrics:
    """The Temporal SDK's metrics, read from its core's exporter on loopback and re-exposed by our registry."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.families: list[Metric] = []

    def describe(self) -> Iterable[Metric]:
        return []  # names vary with what the SDK has recorded; ours are `nango_*`, its `temporal_*`

    def collect(self) -> Iterable[Metric]:
        return self.families

    async def refresh(self) -> None:
        """Fetch and parse the SDK's figures (a worker only); a failed read leaves them out of this scrape."""
        if self.url is None:
            return
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    self.url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                text = await resp.text()
            self.families = list(text_string_to_metric_families(text))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.families = []
            log.warning("temporal_metrics_unreadable", error=f"{type(exc).__name__}: {exc}")


TEMPORAL = TemporalSdkMetrics()
REGISTRY.register(TEMPORAL)


def temporal_runtime() -> Runtime | None:
    """A Temporal Runtime whose core exports Prometheus on a free loopback port that `serve` folds in; None when
    it cannot (the worker runs without the SDK's metrics rather than not at all). Once per process."""
    if TEMPORAL.url is not None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
            bind_address=address, counters_total_suffix=True, durations_as_seconds=True)))
    except Exception as exc:  # the SDK's exporter could not bind: metrics are never worth a worker
        log.warning("temporal_metrics_unavailable", error=f"{type(exc).__name__}: {exc}")
        return None
    TEMPORAL.url = f"http://{address}/metrics"
    return runtime


async def serve(_: web.Request) -> web.Response:
    """GET /metrics: this process's figures in Prometheus' text format (public: names and counts, no secret)."""
    await TEMPORAL.refresh()
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
