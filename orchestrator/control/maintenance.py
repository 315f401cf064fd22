"""Background repair, run by every API process: schedules that drifted, webhooks never dispatched.

After a crash between "stored in PostgreSQL" and "told Temporal", this loop puts things right:
missing or stale schedules are reconciled (UI edits and overrides are kept) and webhook payloads
still marked `received` after a minute get their workflow started. Several API replicas may run
it at once; per-integration advisory locks and idempotent workflow ids make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from orchestrator.config.settings import Settings
from orchestrator.control.reconcile import reconcile_integration
from orchestrator.crypto import Sealer
from orchestrator.store.types import Integration
from orchestrator.temporal.starter import start_webhook
from orchestrator.temporal.types import WebhookInput

log = structlog.get_logger(__name__)


async def reconcile_all(pool: asyncpg.Pool, sealer: Sealer, client: Client, settings: Settings) -> int:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, environment_id, unique_key, provider, display_name, created_at,"
                                " updated_at FROM integrations ORDER BY id")
    done = 0
    for row in rows:
        try:
            await reconcile_integration(pool, sealer, client, Integration(**dict(row)),
                                        task_queue_prefix=settings.task_queue_prefix)
            done += 1
        except Exception as exc:  # one broken integration must not stop the repair of the others
            log.warning("reconcile_failed", integration=row["unique_key"], environment_id=row["environment_id"],
                        error=f"{type(exc).__name__}: {exc}")
    return done


async def redispatch_webhooks(pool: asyncpg.Pool, client: Client, settings: Settings) -> int:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT w.id, w.public_id, e.id AS env_id, e.name AS env, i.unique_key FROM webhook_payloads w"
            " JOIN environments e ON e.id = w.environment_id JOIN integrations i ON i.id = w.integration_id"
            " WHERE w.status = 'received' AND w.received_at < now() - interval '1 minute' ORDER BY w.id LIMIT 500")
    started = 0
    for r in rows:
        try:
            await start_webhook(client, WebhookInput(r["env_id"], r["env"], r["unique_key"], r["id"]),
                                public_id=str(r["public_id"]), timeout_s=settings.runner_webhook_timeout_s,
                                heartbeat_timeout_s=settings.runner_heartbeat_timeout_s,
                                prefix=settings.task_queue_prefix)
            started += 1
        except WorkflowAlreadyStartedError:
            pass  # its workflow exists and will mark the row
    return started


async def maintenance_loop(pool: asyncpg.Pool, sealer: Sealer, client: Client, settings: Settings) -> None:
    interval = settings.reconcile_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            count = await reconcile_all(pool, sealer, client, settings)
            resent = await redispatch_webhooks(pool, client, settings)
            log.debug("maintenance_done", integrations=count, webhooks_redispatched=resent)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop must survive a database or Temporal outage
            log.warning("maintenance_failed", error=f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, sealer: Sealer, client: Client, settings: Settings):  # type: ignore[no-untyped-def]
    if settings.reconcile_interval_s <= 0:
        yield
        return
    task = asyncio.create_task(maintenance_loop(pool, sealer, client, settings))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
