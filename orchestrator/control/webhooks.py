"""Incoming provider webhooks: verify the signature and store the payload before acknowledging.

An integration without a signing secret refuses webhooks unless it accepts unsigned ones
explicitly (`webhook_accept_unsigned`), so nobody who merely knows the URL can start its scripts.

A payload is written to PostgreSQL before the provider gets its 200, so a crash after that point
loses nothing: the WebhookWorkflow (or a later retry) picks it up from the table and routes it
(`orchestrator.runs.webhooks`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import structlog

from orchestrator.crypto import Sealer
from orchestrator.providers.catalog import Provider
from orchestrator.providers.custom import find_provider
from orchestrator.providers.webhook_signatures import SignatureError, verify_signature
from orchestrator.sdk.pagination import dig
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import webhooks as webhooks_repo
from orchestrator.store.types import Integration

__all__ = ["SignatureError", "event_type", "store"]

log = structlog.get_logger(__name__)


def event_type(integration: Integration, headers: dict[str, str], body: Any,
               provider: Provider | None = None) -> str | None:
    path = provider.webhook.event_type_path if provider and provider.webhook else None
    if path and path.startswith("header:"):
        return {k.lower(): v for k, v in headers.items()}.get(path[7:].lower())
    if path:
        found = dig(body, path)
        return str(found) if found is not None else None
    for key in ("type", "event", "event_type", "action"):
        if isinstance(body, dict) and isinstance(body.get(key), str):
            return body[key]
    return None


async def store(conn: Any, sealer: Sealer, integration: Integration, headers: dict[str, str], body: bytes
                ) -> tuple[int, str]:
    """Verify and persist; returns (payload id, public id)."""
    row = await integrations_repo.settings(conn, integration.id)
    secret = str(sealer.open(row["webhook_secret"])) if row and row["webhook_secret"] else None
    provider = await find_provider(conn, integration.environment_id, integration.provider)
    try:
        verify_signature(secret, headers, body, provider, integration=integration.unique_key,
                         accept_unsigned=bool(row and row["webhook_accept_unsigned"]))
    except SignatureError as exc:
        log.warning("webhook_refused", integration=integration.unique_key, reason=exc.code)
        raise
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    kind = event_type(integration, headers, parsed, provider)
    public_id = str(uuid.uuid4())
    safe_headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
    payload_id = await webhooks_repo.add(conn, public_id=public_id, environment_id=integration.environment_id,
                                         integration_id=integration.id, event_type=kind, headers=safe_headers,
                                         body=body)
    return payload_id, public_id
