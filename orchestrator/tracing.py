"""OpenTelemetry traces, on only where OTEL_EXPORTER_OTLP_ENDPOINT is set (README "Tracing").

One trace from an API request or a schedule through the workflow, the activity, the run and each provider
request and record batch: the API's `middleware` here, Temporal's interceptor (`temporal/client.py`), and spans at
the call sites through `span` and `run_span`. Without the variable nothing is set up (no SDK, provider, interceptor
or middleware): call sites meet the OpenTelemetry API's no-op tracer. The sandboxed child never traces; its run's
spans are made on the host side.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.worker import Interceptor

    from orchestrator.runner.host import RunOutcome, RunSpec

log = structlog.get_logger(__name__)

# A proxy: it makes no-op spans until `setup` installs the SDK's provider, then that provider's.
TRACER = trace.get_tracer("nango-orchestrator")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")


class TracingSettingsError(OrchestratorError):
    """Tracing asked for in a way this process cannot honour: a start-up error, not silence."""

    code = "tracing_settings"
    terminal = True


def wanted() -> bool:
    """Whether the operator asked for traces: an OTLP endpoint set and the SDK not disabled."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class _Process:
    """Whether `setup` installed the SDK's provider here: OpenTelemetry's provider is process-wide, and reading this
    costs a fraction of the API's own lookup (trace.get_tracer_provider: about 4 us, measured)."""

    traces = False


def active() -> bool:
    """Whether this process traces (`setup` installed the SDK's provider)."""
    return _Process.traces


def setup(service: str) -> bool:
    """Install the SDK's provider exporting over OTLP HTTP/protobuf, once per process; whether this process traces.

    `service` names the process unless OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) does; every
    other OTEL_* variable (headers, timeout, sampler, batch sizes) is read by the SDK itself. The SDK is imported
    only here, so a process without the variable never loads it."""
    if not wanted():
        return False
    if active() or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _Process.traces = True  # already set up (`nango dev` runs the API and the worker in one process)
        return True
    for name in PROTOCOL_VARIABLES:
        if os.environ.get(name, "http/protobuf").strip() not in ("", "http/protobuf"):
            raise TracingSettingsError(f"{name}={os.environ[name]}: only http/protobuf is supported (port 4318)")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingSettingsError(f"OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed "
                                   f"({exc.name}): pip install 'nango-orchestrator[tracing]'") from None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service}))
    provider = TracerProvider(resource=resource)  # flushed and shut down at exit by the SDK's own atexit hook
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _Process.traces = True
    log.info("tracing_on", service=resource.attributes.get("service.name"), exporter="otlp http/protobuf")
    return True


def worker_interceptors(client: Client) -> list[Interceptor]:
    """Temporal's interceptor for a worker whose client was connected before tracing was set up (`nango dev`);
    none when the client carries it already (workers inherit it) or the process does not trace."""
    if not active():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    from orchestrator.temporal.client import tracing_interceptors

    if any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"]):
        return []
    return tracing_interceptors()


# What `span` gives while this process does not trace: reusable, and cheaper than the API's no-op tracer
# (measured: under 1 us against 12-20 us a span on this 2-core VM under load).
_NO_SPAN = nullcontext(trace.INVALID_SPAN)


def span(name: str, attributes: Mapping[str, str | int | bool] | None = None, *,
         kind: SpanKind = SpanKind.INTERNAL) -> AbstractContextManager[Span]:
    """A child span of the current one for a `with` block; a shared no-op span when this process does not trace.

    An exception marks it failed with its type only: messages (a URL with its query, a script's error) stay out."""
    if not active():
        return _NO_SPAN
    return _recorded(name, attributes, kind)


@contextmanager
def _recorded(name: str, attributes: Mapping[str, str | int | bool] | None, kind: SpanKind) -> Iterator[Span]:
    with TRACER.start_as_current_span(name, kind=kind, attributes=attributes, record_exception=False,
                                      set_status_on_exception=False) as current:
        try:
            yield current
        except Exception as exc:
            current.set_status(StatusCode.ERROR, type(exc).__name__)
            raise


def run_span(spec: RunSpec) -> AbstractContextManager[Span]:
    """One span around a sandboxed run, made on the host: the run's identity, never its input or output."""
    if not active():
        return _NO_SPAN
    ctx = spec.context
    attributes = {"nango.kind": spec.kind, "nango.script": ctx.get("script_name"),
                  "nango.integration": ctx.get("provider_config_key"), "nango.environment": ctx.get("environment"),
                  "nango.connection_id": ctx.get("connection_id"), "nango.job_id": ctx.get("job_id")}
    return span("script.run", {k: v for k, v in attributes.items() if v is not None})


def run_ended(current: Span, outcome: RunOutcome) -> None:
    """Mark a failed run's span with the error's type only: a script's message may quote what it fetched."""
    if not outcome.ok:
        current.set_status(StatusCode.ERROR, str((outcome.error or {}).get("type", "Error")))


def http_status(current: Span, status: int, *, server: bool = False) -> None:
    """An HTTP span's status code; 4xx and 5xx mark a client span failed, 5xx a server span (semantic conventions)."""
    current.set_attribute("http.response.status_code", status)
    if status >= (500 if server else 400):
        current.set_status(StatusCode.ERROR)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A SERVER span per API request, continuing the caller's W3C traceparent; named by its route, never its query
    (a query may carry a key or an OAuth code). Installed by the API only when this process traces."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else ""
    attributes: dict[str, str | int] = {"http.request.method": request.method, "url.path": request.path}
    if route:
        attributes["http.route"] = route
    token = context.attach(propagate.extract(request.headers))
    try:
        with span(f"{request.method} {route}".rstrip(), attributes, kind=SpanKind.SERVER) as current:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # an answer (a redirect, a 404), not a failure of the span
                http_status(current, exc.status, server=True)
                answer = exc
            else:
                http_status(current, response.status, server=True)
                return response
        raise answer
    finally:
        context.detach(token)
