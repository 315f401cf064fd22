"""Sync-result webhooks to the customer's app, as Nango sends them, signed and retried.

One POST per model with `responseResults` (added/updated/deleted); failures send the error.
Signed and retried by webhooks_out.py; every attempt is recorded on the job.
"""

from __future__ import annotations

from typing import Any

import structlog

from orchestrator import webhooks_out
from orchestrator.providers.egress import strict_egress
from orchestrator.runs.deps import RunDeps
from orchestrator.store import environments as environments_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.temporal.types import FinalizeInput, SyncSummary
from orchestrator.timestamps import iso, now_iso

log = structlog.get_logger(__name__)

ATTEMPTS = webhooks_out.ATTEMPTS
BACKOFF_S = webhooks_out.BACKOFF_S
TIMEOUT_S = webhooks_out.TIMEOUT_S  # per attempt


def payloads(inp: FinalizeInput, summary: SyncSummary) -> list[dict[str, Any]]:
    base = {"from": "nango", "type": "sync", "connectionId": inp.sync.connection_id,
            "providerConfigKey": inp.sync.integration, "syncName": inp.sync.sync_name,
            "syncVariant": inp.sync.variant,
            "syncType": "INCREMENTAL" if inp.prepared.last_sync_date else "INITIAL",
            "modifiedAfter": iso(inp.prepared.started_at)}
    if summary.status != "success":
        now = now_iso()
        return [{**base, "model": m, "success": False, "error": {"type": "script_error",
                                                                  "description": summary.error or "failed"},
                 "startedAt": iso(inp.prepared.started_at), "failedAt": now} for m in inp.prepared.models or [""]]
    return [{**base, "model": m, "success": True,
             "responseResults": {k: summary.counts.get(m, {}).get(k, 0) for k in ("added", "updated", "deleted")},
             "queryTimeStamp": iso(inp.prepared.started_at)} for m in inp.prepared.models]


async def notify_sync(deps: RunDeps, inp: FinalizeInput, summary: SyncSummary) -> int:
    """Send the result webhooks; returns how many were delivered."""
    if summary.job_id is None or summary.status == "cancelled":
        return 0
    async with deps.pool.acquire() as conn:
        env = await environments_repo.webhook_settings(conn, inp.sync.environment_id)
    urls, secret = webhooks_out.destinations(env, deps.sealer)
    if env is None or not urls:
        return 0
    delivered = 0
    for payload in payloads(inp, summary):
        results = payload.get("responseResults")
        if results is not None and not any(results.values()) and not env["notify_on_empty"]:
            continue
        for url in urls:
            delivered += await _deliver(deps, summary.job_id, url, secret, payload, inp.sync.environment)
    return delivered


async def _deliver(deps: RunDeps, job_id: int, url: str, secret: str, payload: dict[str, Any],
                   environment: str) -> int:
    """POST one payload, every attempt recorded on the job; the environment's URL goes through the egress policy."""
    async def record(status: int | None, error: str | None) -> None:
        async with deps.pool.acquire() as conn:
            await notifications_repo.add_attempt(conn, job_id, url, status, error)
    delivered = await webhooks_out.deliver(deps.egress or strict_egress(), url, secret, payload, record,
                                           attempts=ATTEMPTS, backoff_s=BACKOFF_S, timeout_s=TIMEOUT_S,
                                           kind="sync", environment=environment)
    return 1 if delivered else 0
