"""The background token refresher, run by every API process: OAuth2 tokens are renewed before they expire.

Scripts and `/proxy` refresh on use too, but a connection nobody used for an hour would otherwise hand an
expired token to the first call, and a refresh token that providers let lapse when unused (many do) would die
quietly. Each pass renews what is due (`connections_repo.refresh_due_at`), most overdue first. Replicas may run
it at once: `credentials.refresh` holds a per-connection advisory lock and re-reads the row, so one token call is
made per connection and the others see its result. A refusal marks the connection (see credentials.refresh), which takes
it out of later passes until it is reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from orchestrator.control.maintenance import in_background, periodically
from orchestrator.errors import OrchestratorError
from orchestrator.platform import Platform
from orchestrator.providers import credentials
from orchestrator.store import connections as connections_repo

log = structlog.get_logger(__name__)

BATCH = 200  # connections per pass; a pass that found a full batch is followed by another at once
CONCURRENCY = 8


async def refresh_due(platform: Platform) -> dict[str, int]:
    """One pass: refresh every connection due; returns how many were renewed, refused and left for later."""
    tally = {"refreshed": 0, "refused": 0, "transient": 0}
    async with platform.pool.acquire() as conn:
        due = await connections_repo.due_for_refresh(conn, BATCH)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(pk: int) -> None:
        async with gate:
            async with platform.pool.acquire() as conn:
                connection = await connections_repo.get_by_pk(conn, platform.sealer, pk)
                if connection is None:
                    return
                if not connections_repo.refreshable(connection.credentials):  # a row from before refreshable
                    await connections_repo.mark_unrefreshable(conn, pk)
                    return
            try:
                after = await credentials.refresh(platform, connection)
                # another replica may have renewed it while this one waited for the lock: not counted twice
                tally["refreshed"] += after.credentials != connection.credentials
            except credentials.RefreshError:
                tally["refused"] += 1
            except (OrchestratorError, OSError) as exc:  # transient: the next pass tries again
                tally["transient"] += 1
                log.info("token_refresh_postponed", connection=connection.connection_id, error=str(exc))

    await asyncio.gather(*(one(pk) for pk in due))
    return tally


async def _refresh_pass(platform: Platform) -> bool:
    """One pass; True when it found a full batch (another follows at once)."""
    tally = await refresh_due(platform)
    if any(tally.values()):
        log.info("tokens_refreshed", **tally)
    return sum(tally.values()) >= BATCH


async def refresher_loop(platform: Platform, interval_s: float) -> None:
    await periodically(lambda: _refresh_pass(platform), interval_s, "token_refresher_failed")


def running(platform: Platform) -> contextlib.AbstractAsyncContextManager[None]:
    interval = platform.settings.token_refresh_interval_s
    return in_background(refresher_loop(platform, interval) if interval > 0 else None)
