"""The schedule steps behind a sync's controls, shared by the API's controls (control/syncs.py) and a script's
`nango.start_sync` / `nango.trigger_sync` (runs/trigger.py), which may not import each other: one sequence, so a
full resync from a script and from the API do the same thing in the same order."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.store import jobs as jobs_repo
from orchestrator.temporal import schedules


async def reached(step: Awaitable[Any]) -> bool:
    """Run one schedule call; False when the schedule (or workflow) does not exist: skipped, as the API skips it."""
    try:
        await step
        return True
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def cancel_running(client: Client, schedule_ids: Sequence[str], reason: str) -> int:
    """Signal every running run of these schedules to stop; how many were running."""
    stopped = 0
    for schedule_id in schedule_ids:
        view = await schedules.describe(client, schedule_id)
        for wf_id in view.running_workflow_ids if view else []:
            stopped += await reached(client.get_workflow_handle(wf_id).signal("cancel", reason))
    return stopped


async def prepare_full_resync(client: Client, pool: asyncpg.Pool, resets: Sequence[tuple[int, str, str]],
                              schedule_ids: Sequence[str], *, clear_cache: bool = False) -> None:
    """Before a full resync's trigger: each (connection pk, sync, variant) marked for a reset (and, with
    `clear_cache`, Nango's emptyCache), then any run in progress stopped, so the next run starts from nothing."""
    async with pool.acquire() as conn:
        for connection_pk, sync_name, variant in resets:
            await jobs_repo.request_reset(conn, connection_pk, sync_name, variant, clear_cache=clear_cache)
    await cancel_running(client, schedule_ids, "cancelled by a full resync")
