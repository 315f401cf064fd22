"""Failing-sync alerts: a sync that fails the environment's `alert_after_failures` runs in a row (3 by default, 0:
off) sends one "failing" webhook, and one "recovered" webhook when it next succeeds.

Called where a sync run ends (the notify step, and prepare when a refused token refresh fails the job). The streak
is counted from the stored jobs (store/alerts.py), so it holds whichever worker ends each run, and each webhook is
claimed in the database before it is sent: exactly one per streak, even when the step is retried. Bodies are ours,
in the style of Nango's sync webhooks (`type: "sync"`, told apart by `operation`), signed and delivered like them
(webhooks_out.py), each attempt recorded on the run's job. They go out in the background: an alert never delays
nor fails the run or its result webhooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from orchestrator import webhooks_out
from orchestrator.platform import Platform
from orchestrator.providers.egress import strict_egress
from orchestrator.store import alerts as alerts_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.temporal.types import SyncInput
from orchestrator.timestamps import iso, now_iso

log = structlog.get_logger(__name__)


async def after_sync(platform: Platform, sync: SyncInput, connection_pk: int, job_id: int, status: str) -> None:
    """Update the sync's failure streak after a run ended with `status`, and send the alert it calls for. Never
    raises: a database error loses this alert (logged); the next run counts the streak again."""
    if status not in ("success", "failed"):
        return  # a cancelled run neither counts nor ends a streak
    try:
        payload, env = await _decide(platform, sync, connection_pk, job_id, status)
    except Exception as exc:
        log.warning("sync_alert_not_sent", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
        return
    if payload is None or env is None:
        return
    urls, secret = webhooks_out.destinations(env, platform.sealer)
    if urls:
        webhooks_out.in_background(_deliver(platform, job_id, urls, secret, payload, sync.environment))


async def _decide(platform: Platform, sync: SyncInput, connection_pk: int, job_id: int,
                  status: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The webhook this run's end calls for (None: none) and the environment's webhook settings."""
    async with platform.pool.acquire() as conn:
        env = await environments_repo.webhook_settings(conn, sync.environment_id)
        if env is None:
            return None, None
        after = env["alert_after_failures"]
        key = (connection_pk, sync.sync_name, sync.variant)
        if status == "success":
            ended = await alerts_repo.end_streak(conn, *key)
            if ended is None or ended["alerted_at"] is None or not after:
                return None, env
            return _body(sync, "recovered", job_id, ended["failures"], ended["since"], after,
                         recoveredAt=now_iso()), env
        if not after:
            return None, env  # alerts off: no streak kept, nothing read from the jobs
        streak = await alerts_repo.count_failures(conn, sync.environment_id, *key)
        if streak is None or streak["failures"] < after or streak["alerted_at"] is not None:
            return None, env
        if not await alerts_repo.claim_alert(conn, *key):
            return None, env
        error_type, error = await alerts_repo.last_error(conn, streak["last_failed_job_id"])
    return _body(sync, "failing", streak["last_failed_job_id"], streak["failures"], streak["since"], after,
                 error={"type": error_type or "script_error", "description": error or "failed"}), env


def _body(sync: SyncInput, operation: str, job_id: int, failures: int, since: datetime, after: int,
          **extra: Any) -> dict[str, Any]:
    return {"from": "nango", "type": "sync", "operation": operation, "success": operation == "recovered",
            "connectionId": sync.connection_id, "providerConfigKey": sync.integration, "syncName": sync.sync_name,
            "syncVariant": sync.variant, "environment": sync.environment, "failures": failures,
            "alertAfterFailures": after, "failingSince": iso(since), "jobId": job_id, **extra}


async def _deliver(platform: Platform, job_id: int, urls: list[str], secret: str, payload: dict[str, Any],
                   environment: str) -> None:
    try:
        for url in urls:
            async def record(status: int | None, error: str | None, url: str = url) -> None:
                async with platform.pool.acquire() as conn:
                    await notifications_repo.add_attempt(conn, job_id, url, status, error)
            await webhooks_out.deliver(platform.egress or strict_egress(), url, secret, payload, record,
                                       attempts=webhooks_out.ATTEMPTS, backoff_s=webhooks_out.BACKOFF_S,
                                       timeout_s=webhooks_out.TIMEOUT_S, kind="alert", environment=environment)
    except Exception as exc:  # a database outage while recording: the rest is lost, which the log says
        log.warning("sync_alert_not_sent", job_id=job_id, operation=payload["operation"],
                    error=f"{type(exc).__name__}: {exc}")
