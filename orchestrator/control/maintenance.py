"""Background repair, run by every API process: schedules that drifted, webhooks never dispatched.

After a crash between "stored in PostgreSQL" and "told Temporal", this loop puts things right:
missing or stale schedules are reconciled (UI edits and overrides are kept) and webhook payloads
still marked `received` after a minute get their workflow started. Several API replicas may run
it at once; per-integration advisory locks and idempotent workflow ids make that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import structlog
from temporalio.exceptions import WorkflowAlreadyStartedError

from orchestrator.control.reconcile import reconcile_integration
from orchestrator.platform import Platform
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import webhooks as webhooks_repo
from orchestrator.temporal.starter import start_webhook
from orchestrator.temporal.types import WebhookInput

log = structlog.get_logger(__name__)


async def reconcile_all(platform: Platform, *, environment_ids: set[int] | None = None) -> int:
    """Reconcile every integration (of these environments only, when given); returns how many were."""
    pool = platform.pool
    async with pool.acquire() as conn:
        found = await integrations_repo.list_every(conn)
    if environment_ids is not None:
        found = [i for i in found if i.environment_id in environment_ids]
    done = 0
    for integration in found:
        try:
            await reconcile_integration(platform, integration)
            done += 1
        except Exception as exc:  # one broken integration must not stop the repair of the others
            log.warning("reconcile_failed", integration=integration.unique_key,
                        environment_id=integration.environment_id, error=f"{type(exc).__name__}: {exc}")
    return done


async def redispatch_webhooks(platform: Platform) -> int:
    pool = platform.pool
    async with pool.acquire() as conn:
        rows = await webhooks_repo.stuck(conn, limit=500)
    started = 0
    for r in rows:
        try:
            await start_webhook(platform, WebhookInput(r["env_id"], r["env"], r["unique_key"], r["id"]),
                                public_id=str(r["public_id"]))
            started += 1
        except WorkflowAlreadyStartedError:
            pass  # its workflow exists and will mark the row
    return started


async def periodically(step: Callable[[], Awaitable[bool | None]], interval_s: float, failed: str, *,
                       wait_first: bool = False) -> None:
    """Run `step` every `interval_s` for ever: an error is logged as `failed` and the loop goes on (it must survive a
    database or Temporal outage); a step that returns True runs again at once (more work is waiting)."""
    if wait_first:
        await asyncio.sleep(interval_s)
    while True:
        try:
            if await step():
                continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(failed, error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)


async def _maintain(platform: Platform) -> None:
    count = await reconcile_all(platform)
    resent = await redispatch_webhooks(platform)
    log.debug("maintenance_done", integrations=count, webhooks_redispatched=resent)


async def maintenance_loop(platform: Platform) -> None:
    await periodically(lambda: _maintain(platform), platform.settings.reconcile_interval_s, "maintenance_failed",
                       wait_first=True)


@contextlib.asynccontextmanager
async def in_background(loop: Coroutine[Any, Any, None] | None) -> AsyncIterator[None]:
    """Run a never-ending loop beside the API while the context lasts (None: nothing to run)."""
    if loop is None:
        yield
        return
    task = asyncio.create_task(loop)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def running(platform: Platform) -> contextlib.AbstractAsyncContextManager[None]:
    enabled = platform.settings.reconcile_interval_s > 0
    return in_background(maintenance_loop(platform) if enabled else None)
