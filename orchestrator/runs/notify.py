"""Sync-result webhooks to the customer's app, as Nango sends them, signed and retried.

One POST per model with `responseResults` (added/updated/deleted); failures send the error.
Signed with `X-Nango-Hmac-Sha256` (hex HMAC-SHA256 of the body with the environment's webhook
secret). 5xx answers and timeouts are retried; every attempt is recorded on the job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog

from orchestrator.providers.egress import EgressRefused, strict_egress
from orchestrator.runs.deps import RunDeps
from orchestrator.store import environments as environments_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.temporal.types import FinalizeInput, SyncSummary

log = structlog.get_logger(__name__)

ATTEMPTS = 4
BACKOFF_S = 1.0
TIMEOUT_S = 15.0  # per attempt


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payloads(inp: FinalizeInput, summary: SyncSummary) -> list[dict[str, Any]]:
    base = {"from": "nango", "type": "sync", "connectionId": inp.sync.connection_id,
            "providerConfigKey": inp.sync.integration, "syncName": inp.sync.sync_name,
            "syncVariant": inp.sync.variant,
            "syncType": "INCREMENTAL" if inp.prepared.last_sync_date else "INITIAL",
            "modifiedAfter": inp.prepared.started_at}
    if summary.status != "success":
        now = datetime.now(UTC).isoformat()
        return [{**base, "model": m, "success": False, "error": {"type": "script_error",
                                                                  "description": summary.error or "failed"},
                 "startedAt": inp.prepared.started_at, "failedAt": now} for m in inp.prepared.models or [""]]
    return [{**base, "model": m, "success": True,
             "responseResults": {k: summary.counts.get(m, {}).get(k, 0) for k in ("added", "updated", "deleted")},
             "queryTimeStamp": inp.prepared.started_at} for m in inp.prepared.models]


async def notify_sync(deps: RunDeps, inp: FinalizeInput, summary: SyncSummary) -> int:
    """Send the result webhooks; returns how many were delivered."""
    if summary.job_id is None or summary.status == "cancelled":
        return 0
    async with deps.pool.acquire() as conn:
        env = await environments_repo.webhook_settings(conn, inp.sync.environment_id)
    urls = [u for u in dict.fromkeys((env["webhook_url"], env["webhook_url_secondary"])) if u] if env else []
    if env is None or not urls:
        return 0
    secret = str(deps.sealer.open(env["webhook_secret"])) if env["webhook_secret"] else ""
    delivered = 0
    for payload in payloads(inp, summary):
        results = payload.get("responseResults")
        if results is not None and not any(results.values()) and not env["notify_on_empty"]:
            continue
        for url in urls:
            delivered += await _deliver(deps, summary.job_id, url, secret, payload)
    return delivered


async def _deliver(deps: RunDeps, job_id: int, url: str, secret: str, payload: dict[str, Any]) -> int:
    """POST one payload, retried on 5xx and timeouts; the environment's URL goes through the egress policy."""
    egress = deps.egress or strict_egress()
    body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "User-Agent": "nango-orchestrator"}
    if secret:
        headers["X-Nango-Hmac-Sha256"] = sign(secret, body)
    for attempt in range(1, ATTEMPTS + 1):
        status: int | None = None
        error: str | None = None
        refused: EgressRefused | None = None
        try:
            async with egress.post_outbound(url, data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
                status = resp.status
        except EgressRefused as exc:
            refused, error = exc, str(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        async with deps.pool.acquire() as conn:
            await notifications_repo.add_attempt(conn, job_id, url, status, error)
        if refused is not None:  # the environment's webhook URL points inside: no retry can fix that
            log.warning("webhook_delivery_refused", job_id=job_id, error=error)
            return 0
        if status is not None and status < 500:
            return 1 if status < 300 else 0
        if attempt < ATTEMPTS:
            await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
    log.warning("webhook_delivery_failed", url=url.split("?")[0], job_id=job_id)
    return 0
