"""Make Temporal's schedules match what is deployed: one per (connection, enabled sync).

Creates missing schedules, deletes orphans, re-times schedules that follow the deployed
default, and never touches a per-connection override or an edit made in the Temporal UI.
Runs under a PostgreSQL advisory lock per integration, so two reconcilers (two API replicas, a
deploy racing a connection creation) never duplicate or delete each other's work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import structlog
from temporalio.client import Client

from orchestrator.config.schedule import parse_schedule
from orchestrator.crypto import Sealer
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
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
                syncs = {s.name: s for s in await scripts_repo.list_for_integration(conn, integration.id)
                         if s.kind == "sync" and s.enabled}
                conns = await connections_repo.ids_for_integration(conn, integration.id)
                pairs = [(c_pk, name, "base") for c_pk in conns for name in syncs]
                pairs += [(r["connection_pk"], r["sync_name"], r["variant"]) for r in await conn.fetch(
                    "SELECT v.connection_pk, v.sync_name, v.variant FROM sync_variants v JOIN connections c"
                    " ON c.id = v.connection_pk WHERE c.integration_id = $1", integration.id)
                    if r["sync_name"] in syncs]
                overrides = {(r["connection_pk"], r["sync_name"], r["variant"]): r["frequency_override"]
                             for r in await conn.fetch(
                                 "SELECT connection_pk, sync_name, variant, frequency_override FROM sync_state"
                                 " WHERE connection_pk = any($1::bigint[]) AND frequency_override IS NOT NULL",
                                 list(conns))}
            existing = await schedules.list_intervals(client, names.schedule_prefix(env.name, integration.unique_key))
            desired: set[str] = set()
            for c_pk, name, variant in pairs:
                connection_id, s = conns[c_pk], syncs[name]
                sync = SyncInput(env.id, env.name, integration.unique_key, connection_id, name, variant)
                sid = names.sync_schedule_id(env.name, integration.unique_key, connection_id, name, variant)
                desired.add(sid)
                override = overrides.get((c_pk, name, variant))
                interval = parse_schedule(override or s.config.get("runs") or "every 1d")
                if sid in existing:
                    # only a schedule whose spec differs can need re-timing; set_interval keeps UI edits
                    if (not override and existing[sid] != int(interval.total_seconds())
                            and await schedules.set_interval(client, sid, interval, source="default",
                                                             only_if_following_default=True)):
                        report.retimed.append(sid)
                    continue
                created = await schedules.ensure(
                    client, sync, interval=interval, source="override" if override else "default",
                    task_queue=names.queue(task_queue_prefix, names.SYNC_QUEUE),
                    paused=not s.config.get("auto_start", True))
                if created:
                    report.created.append(sid)
                elif not override and await schedules.set_interval(
                        client, sid, interval, source="default", only_if_following_default=True):
                    report.retimed.append(sid)
            for sid in existing:
                if sid not in desired and await schedules.delete(client, sid):
                    report.deleted.append(sid)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(hashtextextended('reconcile', $1))", integration.id)
    if report.created or report.retimed or report.deleted:
        log.info("schedules_reconciled", integration=integration.unique_key, created=len(report.created),
                 retimed=len(report.retimed), deleted=len(report.deleted))
    return report
