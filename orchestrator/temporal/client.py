"""Connecting to Temporal with the settings (TLS, mTLS, a Temporal Cloud API key), and registering our search
attributes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import temporalio.workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client, Interceptor
from temporalio.service import TLSConfig

from orchestrator.config.settings import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.temporal.names import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from temporalio.worker import WorkflowInterceptorClassInput


class TemporalSettingsError(OrchestratorError):
    """A TEMPORAL_TLS_* or TEMPORAL_API_KEY_FILE file cannot be read: no wait at start-up fixes that."""

    code = "temporal_settings"
    terminal = True


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TemporalSettingsError(f"{setting}={path}: {exc.strerror or exc}") from None


def connect_options(settings: Settings) -> dict[str, Any]:
    """Client.connect's TLS and auth arguments from the settings (blocking: reads the mounted files).

    mTLS when TEMPORAL_TLS_CERT/KEY are set, a private CA with TEMPORAL_TLS_CA, an API key (Temporal Cloud)
    from TEMPORAL_API_KEY_FILE; any of these turns TLS on, TEMPORAL_TLS alone uses the system roots."""
    tls: bool | TLSConfig = settings.temporal_tls
    files = {"TEMPORAL_TLS_CERT": settings.temporal_tls_cert, "TEMPORAL_TLS_KEY": settings.temporal_tls_key,
             "TEMPORAL_TLS_CA": settings.temporal_tls_ca}
    if any(files.values()) or settings.temporal_tls_server_name:
        data = {name: _read(name, path) if path else None for name, path in files.items()}
        tls = TLSConfig(client_cert=data["TEMPORAL_TLS_CERT"], client_private_key=data["TEMPORAL_TLS_KEY"],
                        server_root_ca_cert=data["TEMPORAL_TLS_CA"],
                        domain=settings.temporal_tls_server_name or None)
    api_key = None
    if settings.temporal_api_key_file:
        api_key = _read("TEMPORAL_API_KEY_FILE", settings.temporal_api_key_file).decode().strip() or None
        if api_key is None:
            raise TemporalSettingsError(f"TEMPORAL_API_KEY_FILE={settings.temporal_api_key_file} is empty")
        tls = tls or True
    return {"tls": tls, "api_key": api_key}


def tracing_interceptors() -> list[Interceptor]:
    """Temporal's OpenTelemetry interceptor once this process has a tracer provider (orchestrator/tracing.py sets one
    up where OTEL_EXPORTER_OTLP_ENDPOINT is set), else none: an untraced client and its workers pay nothing."""
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

    class ScheduledRuns(TracingWorkflowInboundInterceptor):
        """A run no client span started (a schedule's) gets a parent derived from its run id, so its workflow and
        activity spans are one trace, the same one again on a replay; the SDK alone leaves them unlinked."""

        def _load_workflow_context_carrier(self) -> dict[str, str] | None:
            if (carrier := super()._load_workflow_context_carrier()) is None:
                digest = hashlib.sha256(temporalio.workflow.info().run_id.encode()).hexdigest()
                carrier = self._workflow_context_carrier = {"traceparent": f"00-{digest[:32]}-{digest[32:48]}-01"}
            return carrier

    class Tracing(TracingInterceptor):
        def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput
                                       ) -> type[TracingWorkflowInboundInterceptor]:
            super().workflow_interceptor_class(input)
            return ScheduledRuns

    return [Tracing()]


async def connect(settings: Settings) -> Client:
    options = await asyncio.to_thread(connect_options, settings)
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                interceptors=tracing_interceptors(), **options)


def search_attributes_to_register() -> list[str]:
    """What an operator registers by hand when TEMPORAL_REGISTER_SEARCH_ATTRIBUTES=false (name: type)."""
    return [f"{key.name}: Keyword" for key in SEARCH_ATTRIBUTES]


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Idempotent: add the attributes the namespace lacks; return the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    missing = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
               if key.name not in existing.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
    return sorted(missing)
