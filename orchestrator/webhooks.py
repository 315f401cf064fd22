"""Incoming provider webhooks: verify, store before acknowledging, route to webhook scripts.

A payload is written to PostgreSQL before the provider gets its 200, so a crash after that point
loses nothing: the WebhookWorkflow (or a later retry) picks it up from the table.
Routing: the integration's `webhook_routing` names a body path and, optionally, the metadata key
that must equal it (`{"body_path": "installation.id", "metadata_key": "installation_id"}`) or
says the value is the connection id (`{"body_path": "...", "match": "connection_id"}`). Without
routing, every connection of the integration receives the payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import orjson
import structlog

from orchestrator.crypto import Sealer
from orchestrator.errors import InvalidInputError
from orchestrator.providers.catalog import Provider, find_provider
from orchestrator.script_runs import open_job
from orchestrator.sdk.pagination import dig
from orchestrator.store import connections as connections_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Integration
from orchestrator.sync_runs import RunDeps
from orchestrator.temporal.types import ScriptJobInput, WebhookInput, WebhookTargets

log = structlog.get_logger(__name__)


class SignatureError(InvalidInputError):
    code = "invalid_signature"


def verify_signature(integration: Integration, secret: str | None, headers: dict[str, str], body: bytes,
                     provider: Provider | None = None) -> None:
    """Check the provider's HMAC header when the integration has a webhook secret."""
    if not secret:
        return
    scheme = provider.webhook if provider else None
    header_name = scheme.signature_header if scheme else "X-Signature-256"
    algorithm = hashlib.sha1 if scheme and scheme.algorithm == "hmac-sha1" else hashlib.sha256
    prefix = scheme.prefix if scheme else ""
    lowered = {k.lower(): v for k, v in headers.items()}
    given = lowered.get(header_name.lower())
    if not given:
        raise SignatureError(f"missing webhook signature header {header_name}")
    digest = hmac.new(secret.encode(), body, algorithm)
    base64_encoded = scheme is not None and scheme.encoding == "base64"
    encoded = base64.b64encode(digest.digest()).decode() if base64_encoded else digest.hexdigest()
    expected = prefix + encoded
    if not hmac.compare_digest(given.strip(), expected):
        raise SignatureError(f"webhook signature in {header_name} does not match the integration's secret")


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
    row = await conn.fetchrow("SELECT webhook_secret FROM integrations WHERE id = $1", integration.id)
    secret = str(sealer.open(row["webhook_secret"])) if row and row["webhook_secret"] else None
    provider = await find_provider(conn, integration.environment_id, integration.provider)
    verify_signature(integration, secret, headers, body, provider)
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    kind = event_type(integration, headers, parsed, provider)
    public_id = str(uuid.uuid4())
    safe_headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
    payload_id = await conn.fetchval(
        "INSERT INTO webhook_payloads (public_id, environment_id, integration_id, event_type, headers, body)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        public_id, integration.environment_id, integration.id, kind, safe_headers, body)
    return payload_id, public_id


def _matches(subscriptions: list[str], kind: str | None) -> bool:
    return "*" in subscriptions or (kind is not None and kind in subscriptions)


async def route(deps: RunDeps, inp: WebhookInput) -> WebhookTargets:
    async with deps.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT w.id, w.event_type, w.body, w.status, w.integration_id, i.webhook_routing FROM webhook_payloads w"
            " JOIN integrations i ON i.id = w.integration_id WHERE w.id = $1", inp.payload_id)
        if row is None:
            return WebhookTargets(ignored_reason="payload not found")
        if row["status"] != "received":  # routed already by an earlier attempt: reuse its jobs
            jobs = await conn.fetch(
                "SELECT j.id, j.sync_name, c.connection_id, j.input FROM sync_jobs j JOIN connections c"
                " ON c.id = j.connection_pk WHERE j.kind = 'webhook' AND j.input->>'_payload_id' = $1",
                str(inp.payload_id))
            return WebhookTargets(jobs=[_job(inp, r["connection_id"], r["sync_name"], r["id"], r["input"])
                                        for r in jobs])
        try:
            body = orjson.loads(row["body"]) if row["body"] else None
        except orjson.JSONDecodeError:
            body = None
        syncs = [s for s in await scripts_repo.list_for_integration(conn, row["integration_id"])
                 if s.kind == "sync" and s.enabled and _matches(s.config.get("webhook_subscriptions") or [],
                                                                 row["event_type"])]
        conns = await connections_repo.list_for_integration(conn, deps.sealer, row["integration_id"])
        routing = row["webhook_routing"] or {}
        if routing.get("body_path"):
            value = dig(body, routing["body_path"])
            if routing.get("match") == "connection_id":
                conns = [c for c in conns if value is not None and c.connection_id == str(value)]
            else:
                key = routing.get("metadata_key") or routing["body_path"]
                conns = [c for c in conns if value is not None and str(c.metadata.get(key)) == str(value)]
        jobs: list[ScriptJobInput] = []
        async with conn.transaction():
            for c in conns:
                for s in syncs:
                    job_input = {"_payload_id": str(inp.payload_id), "payload": body}
                    job_id = await open_job(conn, environment_id=inp.environment_id, connection_pk=c.id,
                                            name=s.name, kind="webhook", public_id=str(uuid.uuid4()),
                                            input=job_input)
                    jobs.append(_job(inp, c.connection_id, s.name, job_id, job_input))
            status = "dispatched" if jobs else "ignored"
            await conn.execute("UPDATE webhook_payloads SET status = $2, connections = $3 WHERE id = $1",
                               inp.payload_id, status, sorted({j.connection_id for j in jobs}))
    reason = None if jobs else (
        "no sync subscribes to this event" if not syncs else "no connection matches the payload")
    log.info("webhook_routed", payload=inp.payload_id, jobs=len(jobs), ignored=reason)
    return WebhookTargets(jobs=jobs, ignored_reason=reason)


def _job(inp: WebhookInput, connection_id: str, sync: str, job_id: int, job_input: Any) -> ScriptJobInput:
    return ScriptJobInput(environment_id=inp.environment_id, environment=inp.environment,
                          integration=inp.integration, connection_id=connection_id, script_name=sync,
                          kind="webhook", job_id=job_id, input=(job_input or {}).get("payload"),
                          webhook_payload_id=inp.payload_id)


async def finish(deps: RunDeps, inp: WebhookInput) -> None:
    async with deps.pool.acquire() as conn:
        failed = await conn.fetchval(
            "SELECT count(*) FROM sync_jobs WHERE kind = 'webhook' AND input->>'_payload_id' = $1"
            " AND status = 'failed'", str(inp.payload_id))
        await conn.execute(
            "UPDATE webhook_payloads SET status = CASE WHEN status = 'ignored' THEN 'ignored' WHEN $2 > 0"
            " THEN 'failed' ELSE 'processed' END, processed_at = now() WHERE id = $1", inp.payload_id, failed)
