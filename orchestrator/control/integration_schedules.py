"""An integration's schedules when the integration itself changes: renamed (the ids carry its key) or deleted.

Both hold the integration's reconcile lock (`reconcile.reconcile_lock`) for the whole change, so no reconcile
(a deploy, a new connection, the maintenance loop) creates a schedule under a key that is going away. Both find
the schedules by the ids the database says exist as well as by Temporal's listing, which shows a schedule
created a moment ago only a second or more later (a minute or more after a mass change).
"""

from __future__ import annotations

import asyncio

import structlog

from orchestrator.control.reconcile import reconcile_lock
from orchestrator.platform import Platform
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import Environment, Integration
from orchestrator.temporal import names, schedules
from orchestrator.temporal.types import SyncInput

log = structlog.get_logger(__name__)


async def _schedule_ids(platform: Platform, env: Environment, integration: Integration, key: str) -> list[str]:
    """The integration's schedule ids under `key`: those its connections and syncs call for, then any other
    the listing shows (a schedule of a sync no longer deployed)."""
    async with platform.pool.acquire() as conn:
        rows = await environments_repo.sync_schedule_keys(conn, env.id, integration.id)
    known = [names.sync_schedule_id(env.name, key, r["connection_id"], r["name"], r["variant"]) for r in rows]
    listed = await schedules.list_ids(platform.temporal, names.schedule_prefix(env.name, key))
    return list(dict.fromkeys([*known, *listed]))


async def move(platform: Platform, env: Environment, old_key: str, integration: Integration) -> int:
    """Re-create every schedule of the integration under its new key as it stands (`schedules.move`: pauses,
    notes, intervals and Temporal UI edits kept, no run started). The caller holds the reconcile lock from
    before the rename is committed until this returns, then reconciles (a connection without a schedule)."""
    queue = names.queue(platform.task_queue_prefix, names.SYNC_QUEUE)
    gate = asyncio.Semaphore(platform.settings.reconcile_concurrency)

    async def one(sid: str) -> bool:
        parts = names.parse_schedule_id(sid)
        if parts is None:
            return False
        sync = SyncInput(env.id, env.name, integration.unique_key, parts["connection_id"], parts["sync"],
                         parts["variant"])
        async with gate:
            return await schedules.move(platform.temporal, sid, sync, task_queue=queue, pool=platform.pool)

    moved = sum(await asyncio.gather(*(one(sid) for sid in await _schedule_ids(platform, env, integration,
                                                                                old_key))))
    log.info("integration_schedules_moved", environment=env.name, integration=integration.unique_key,
             renamed_from=old_key, moved=moved)
    return moved


async def delete_integration(platform: Platform, env: Environment, integration: Integration) -> int:
    """Delete the integration's schedules, then the integration (its connections, scripts and records with it);
    how many schedules were deleted."""
    async with reconcile_lock(platform.pool, integration.id):
        ids = await _schedule_ids(platform, env, integration, integration.unique_key)
        deleted = [sid for sid in ids if await schedules.delete(platform.temporal, sid, pool=platform.pool)]
        async with platform.pool.acquire() as conn:
            await integrations_repo.delete(conn, integration.id)
    log.info("integration_deleted", environment=env.name, integration=integration.unique_key,
             schedules_deleted=len(deleted))
    return len(deleted)
