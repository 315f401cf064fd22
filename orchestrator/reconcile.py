"""Make Temporal's schedules match what is deployed: one per (connection, enabled sync).

Creates missing schedules, deletes orphans, re-times schedules that follow the deployed
default, and never touches a per-connection override or an edit made in the Temporal UI.
Runs under a PostgreSQL advisory lock per integration, so two reconcilers (two API replicas, a
deploy racing a connection creation) never duplicate or delete each other's work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import structlog
from temporalio.client import Client

from orchestrator.config.schedule import parse_schedule
from orchestrator.crypto import Sealer
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Integration
from orchestrator.temporal import names, schedules
from orchestrator.temporal.types import SyncInput

log = structlog.get_logger(__name__)


@dataclass
class ReconcileReport:
    created: list[str] = field(default_factory=list)
    retimed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


async def reconcile_integration(pool: asyncpg.Pool, sealer: Sealer, client: Client, integration: Integration,
                                *, task_queue_prefix: str = "") -> ReconcileReport:
    report = ReconcileReport()
    async with pool.acquire() as lock_conn:
        await lock_conn.execute("SELECT pg_advisory_lock(hashtextextended('reconcile', $1))", integration.id)
        try:
            async with pool.acquire() as conn:
                env = await environments_repo.by_id(conn, integration.environment_id)
                assert env is not None
                syncs = [s for s in await scripts_repo.list_for_integration(conn, integration.id)
                         if s.kind == "sync" and s.enabled]
                conns = await connections_repo.list_for_integration(conn, sealer, integration.id)
                overrides = {}
                for c in conns:
                    for s in syncs:
                        state = await jobs_repo.get_state(conn, c.id, s.name)
                        overrides[(c.id, s.name)] = state["frequency_override"]
            desired: set[str] = set()
            for c in conns:
                for s in syncs:
                    sync = SyncInput(env.id, env.name, integration.unique_key, c.connection_id, s.name)
                    sid = names.sync_schedule_id(env.name, integration.unique_key, c.connection_id, s.name)
                    desired.add(sid)
                    override = overrides[(c.id, s.name)]
                    interval = parse_schedule(override or s.config.get("runs") or "every 1d")
                    source = "override" if override else "default"
                    created = await schedules.ensure(
                        client, sync, interval=interval, source=source,
                        task_queue=names.queue(task_queue_prefix, names.SYNC_QUEUE),
                        paused=not s.config.get("auto_start", True))
                    if created:
                        report.created.append(sid)
                    elif not override and await schedules.set_interval(
                            client, sid, interval, source="default", only_if_following_default=True):
                        report.retimed.append(sid)
            for sid in await schedules.list_ids(client, names.schedule_prefix(env.name, integration.unique_key)):
                if sid not in desired and (names.parse_schedule_id(sid) or {}).get("variant", "base") == "base":
                    if await schedules.delete(client, sid):
                        report.deleted.append(sid)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(hashtextextended('reconcile', $1))", integration.id)
    if report.created or report.retimed or report.deleted:
        log.info("schedules_reconciled", integration=integration.unique_key, created=len(report.created),
                 retimed=len(report.retimed), deleted=len(report.deleted))
    return report


def interval_for(runs: str | None) -> timedelta:
    return parse_schedule(runs or "every 1d")
