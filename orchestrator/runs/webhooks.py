"""Routing a stored provider webhook to the webhook scripts that subscribe to it, one job per (connection, script).

Routing: the integration's `webhook_routing` names a body path and, optionally, the metadata key
that must equal it (`{"body_path": "installation.id", "metadata_key": "installation_id"}`) or
says the value is the connection id (`{"body_path": "...", "match": "connection_id"}`). A payload
goes only to the connections its routing matches: without routing, or when no connection
matches, it is stored as 'unmatched' with the reason and logged, never fanned out to every
connection (a provider signs every tenant's events with one secret, so a payload for one tenant
must not run in another's connection). The first routing also forwards the payload to the customer's app
(forward.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import structlog

from orchestrator.runs import forward
from orchestrator.runs.deps import RunDeps
from orchestrator.sdk.pagination import dig
from orchestrator.store import connections as connections_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store import webhooks as webhooks_repo
from orchestrator.temporal.types import ScriptJobInput, WebhookInput, WebhookTargets

log = structlog.get_logger(__name__)


def _matches(subscriptions: list[str], kind: str | None) -> bool:
    return "*" in subscriptions or (kind is not None and kind in subscriptions)


async def route(deps: RunDeps, inp: WebhookInput) -> WebhookTargets:
    async with deps.pool.acquire() as conn:
        row = await webhooks_repo.for_routing(conn, inp.payload_id)
        if row is None:
            return WebhookTargets(ignored_reason="payload not found")
        if row["status"] != "received":  # routed already by an earlier attempt: reuse its jobs
            routed = await jobs_repo.for_webhook_payload(conn, inp.payload_id)
            return WebhookTargets(jobs=[_job(inp, j.connection_id or "", j.script_name, j.id, j.input)
                                        for j in routed])
        try:
            body = orjson.loads(row["body"]) if row["body"] else None
        except orjson.JSONDecodeError:
            body = None
        syncs = [s for s in await scripts_repo.list_for_integration(conn, row["integration_id"])
                 if s.kind == "sync" and s.enabled and _matches(s.config.get("webhook_subscriptions") or [],
                                                                 row["event_type"])]
        conns = await connections_repo.list_for_integration(conn, deps.sealer, row["integration_id"])
        routing = row["webhook_routing"] or {}
        unmatched: str | None = None
        if routing.get("body_path"):
            value = dig(body, routing["body_path"])
            if routing.get("match") == "connection_id":
                conns = [c for c in conns if value is not None and c.connection_id == str(value)]
            else:
                key = routing.get("metadata_key") or routing["body_path"]
                conns = [c for c in conns if value is not None and str(c.metadata.get(key)) == str(value)]
            if not conns:
                unmatched = (f"no connection matches the payload: its {routing['body_path']} is "
                             f"{_shown(value)} and no connection of '{row['unique_key']}' has that "
                             + ("connection id" if routing.get("match") == "connection_id"
                                else f"metadata.{routing.get('metadata_key') or routing['body_path']}"))
        else:
            conns = []
            unmatched = (f"integration '{row['unique_key']}' has no webhook_routing, so a payload matches no "
                         "connection; set one (PATCH /integrations/" + row["unique_key"]
                         + ' {"webhook_routing": {"body_path": ..., "metadata_key": ...}})')
        jobs: list[ScriptJobInput] = []
        async with conn.transaction():
            for c in conns:
                for s in syncs:
                    job_input = {"_payload_id": str(inp.payload_id), "payload": body}
                    job_id = await jobs_repo.open_job(conn, environment_id=inp.environment_id, connection_pk=c.id,
                                            script_name=s.name, kind="webhook", public_id=str(uuid.uuid4()),
                                            input=job_input)
                    jobs.append(_job(inp, c.connection_id, s.name, job_id, job_input))
            reason = None if jobs else "no sync subscribes to this event" if not syncs else unmatched
            status = "dispatched" if jobs else "ignored" if not syncs else "unmatched"
            await webhooks_repo.mark_routed(conn, inp.payload_id, status, sorted({j.connection_id for j in jobs}),
                                            error=reason if status == "unmatched" else None)
    if row["forward_webhooks"]:
        forward.forward(deps, inp.environment_id, inp.payload_id, row, body, [c.connection_id for c in conns])
    if status == "unmatched":
        log.warning("webhook_unmatched", payload=inp.payload_id, integration=row["unique_key"], reason=reason)
    else:
        log.info("webhook_routed", payload=inp.payload_id, jobs=len(jobs), ignored=reason)
    return WebhookTargets(jobs=jobs, ignored_reason=reason)


def _shown(value: Any) -> str:
    """A routing value for a message: short, and `missing` when the path found nothing."""
    return "missing" if value is None else repr(str(value)[:80])


def _job(inp: WebhookInput, connection_id: str, sync: str, job_id: int, job_input: Any) -> ScriptJobInput:
    return ScriptJobInput(environment_id=inp.environment_id, environment=inp.environment,
                          integration=inp.integration, connection_id=connection_id, script_name=sync,
                          kind="webhook", job_id=job_id, input=(job_input or {}).get("payload"),
                          webhook_payload_id=inp.payload_id)


async def finish(deps: RunDeps, inp: WebhookInput) -> None:
    async with deps.pool.acquire() as conn:
        failed = sum(j.status == "failed" for j in await jobs_repo.for_webhook_payload(conn, inp.payload_id))
        await webhooks_repo.mark_finished(conn, inp.payload_id, failed)
