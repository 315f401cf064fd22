"""Retention, run by every API process beside the maintenance loop: what an environment keeps for N days only.

Each environment may set, in days (null keeps forever, the default): records soft-deleted by its syncs, its
finished jobs with their logs (and its auth webhooks' delivery attempts), its stored provider webhook payloads
(store/environments.RETENTION); where it sets none, the installation's RECORDS_/JOBS_/WEBHOOKS_RETENTION_DAYS
apply (0, the default: keep forever). Every pass also deletes scripts' locks past their expiry
(`nango.try_acquire_lock`), which are free already. A pass deletes what is older in batches of at most BATCH
rows, each its own short statement and transaction, with a pause between, so it never holds a lock a sync needs:
records go by their primary keys, skipping rows a writer holds, and no record scope is ever locked. One process
runs a pass at a time (a session advisory lock); the others skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from orchestrator.control.maintenance import in_background, periodically
from orchestrator.platform import Platform
from orchestrator.store import environments as environments_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.store import records as records_repo
from orchestrator.store import script_state

log = structlog.get_logger(__name__)

INTERVAL_S = 3600.0  # between passes
BATCH = 5000  # rows per statement
JOBS_BATCH = 500  # jobs whose logs are deleted (BATCH lines at a time) before the jobs themselves
PAUSE_S = 0.05  # the least pause between statements
PACE = 2.0  # and at least this many times the last statement's own time: a pass takes a third of a backend at most
LOCK_KEY = 0x6E616E676F5F72  # pg_try_advisory_lock key: one pass at a time across API processes


async def _paced(step: Callable[[], Awaitable[int]], pause_s: float) -> int:
    """One statement, then a pause of at least PACE times its duration: the pass yields the database's CPU and
    disk to the syncs whatever the size of the machine."""
    started = time.perf_counter()
    n = await step()
    await asyncio.sleep(max(pause_s, PACE * (time.perf_counter() - started)))
    return n


async def _drain(step: Callable[[], Awaitable[int]], limit: int, pause_s: float) -> int:
    """Run a bounded delete until it deletes less than a full batch; returns the total."""
    total = 0
    while True:
        n = await _paced(step, pause_s)
        total += n
        if n < limit:
            return total


async def _expire_jobs(conn: asyncpg.Connection, env_id: int, days: int, batch: int, pause_s: float) -> int:
    total = 0
    for kind in jobs_repo.KINDS:
        after: int | None = 0
        while after is not None:
            ids, after = await jobs_repo.expired_jobs(conn, env_id, kind, days, after=after,
                                                      limit=min(JOBS_BATCH, batch))
            if ids:
                await _drain(lambda ids=ids: jobs_repo.delete_logs_of(conn, ids, limit=batch), batch, pause_s)
                total += await _paced(lambda ids=ids: jobs_repo.delete_jobs(conn, ids), pause_s)
    return total


async def expire(conn: asyncpg.Connection, env: dict[str, Any], *, batch: int = BATCH,
                 pause_s: float = PAUSE_S) -> dict[str, int]:
    """One environment's pass on `conn` (outside any transaction, so each statement commits on its own)."""
    done = {"records": 0, "jobs": 0, "webhooks": 0, "auth_webhook_attempts": 0}
    if days := env["records_retention_days"]:
        done["records"] = await _drain(
            lambda: records_repo.delete_expired(conn, env["id"], days, limit=batch), batch, pause_s)
    if days := env["jobs_retention_days"]:
        done["jobs"] = await _expire_jobs(conn, env["id"], days, batch, pause_s)
        # auth webhooks' attempts hang on no job: they follow the jobs' setting, as sync results' attempts do
        done["auth_webhook_attempts"] = await _drain(
            lambda: notifications_repo.delete_expired_auth_attempts(conn, env["id"], days, limit=batch), batch,
            pause_s)
    if days := env["webhooks_retention_days"]:
        done["webhooks"] = await _drain(
            lambda: jobs_repo.delete_expired_webhooks(conn, env["id"], days, limit=batch), batch, pause_s)
    return done


async def run_once(platform: Platform, *, batch: int = BATCH, pause_s: float = PAUSE_S) -> dict[str, int] | None:
    """One pass over every environment with a retention setting; None when another process holds the pass."""
    async with platform.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            return None
        try:
            total = {"records": 0, "jobs": 0, "webhooks": 0, "auth_webhook_attempts": 0}
            defaults = {key: getattr(platform.settings, key) for key in environments_repo.RETENTION}
            for env in await environments_repo.with_retention(conn, defaults):
                done = await expire(conn, env, batch=batch, pause_s=pause_s)
                if any(done.values()):
                    log.info("retention_done", environment=env["name"], **done)
                total = {k: total[k] + done[k] for k in total}
            total["locks"] = await _drain(lambda: script_state.delete_expired_locks(conn, limit=batch), batch,
                                          pause_s)
            return total
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def retention_loop(platform: Platform, interval_s: float = INTERVAL_S) -> None:
    async def step() -> bool:
        await run_once(platform)
        return False
    await periodically(step, interval_s, "retention_failed")


def running(platform: Platform) -> contextlib.AbstractAsyncContextManager[None]:
    """Beside the maintenance loop, and off where it is (RECONCILE_INTERVAL_S=0: tests, one-shot processes)."""
    enabled = platform.settings.reconcile_interval_s > 0
    return in_background(retention_loop(platform) if enabled else None)
