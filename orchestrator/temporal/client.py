"""Connecting to Temporal with the settings (TLS, mTLS, a Temporal Cloud API key), and registering our search
attributes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import TLSConfig

from orchestrator.config.settings import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.temporal.names import SEARCH_ATTRIBUTES


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


async def connect(settings: Settings) -> Client:
    options = await asyncio.to_thread(connect_options, settings)
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace, **options)


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
