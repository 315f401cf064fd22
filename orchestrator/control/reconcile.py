"""Make Temporal's schedules match what is deployed: one per (connection, enabled sync).

Creates missing schedules, deletes orphans, re-times schedules that follow the deployed
default, and never touches a per-connection override or an edit made in the Temporal UI.
Runs under a PostgreSQL advisory lock per integration, so two reconcilers (two API replicas, a
deploy racing a connection creation) never duplicate or delete each other's work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from orchestrator.config.schedule import parse_schedule
from orchestrator.platform import Platform
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import locks
from orchestrator.store import scripts as scripts_repo
from orchestrator.store import variants as variants_repo
from orchestrator.store.types import DeployedScript, Integration
from orchestrator.temporal import names, schedules
from orchestrator.temporal.types import SyncInput

log = structlog.get_logger(__name__)


DEFAULT_FREQUENCY = "every 1d"  # a sync without `runs` in nango.yaml, as in Nango


def deployed_frequency(script: DeployedScript) -> str:
    """The interval a sync runs at without a per-connection override: its `runs`, else the default.

    The reconciler, the frequency reset and the dashboard all read it here, so they never disagree."""
    return script.config.get("runs") or DEFAULT_FREQUENCY


@dataclass
class ReconcileReport:
    created: list[str] = field(default_factory=list)
    retimed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


async def reconcile_integration(platform: Platform, integration: Integration) -> ReconcileReport:
    pool, client = platform.pool, platform.temporal
    report = ReconcileReport()
    async with pool.acquire() as lock_conn:
        await locks.lock(lock_conn, "reconcile", integration.id)
        try:
            async with pool.acquire() as conn:
                env = await environments_repo.by_id(conn, integration.environment_id)
                assert env is not None
                syncs = {s.name: s for s in await scripts_repo.list_for_integration(conn, integration.id)
                         if s.kind == "sync" and s.enabled}
                conns = await connections_repo.ids_for_integration(conn, integration.id)
                pairs = [(c_pk, name, "base") for c_pk in conns for name in syncs]
                pairs += [(r["connection_pk"], r["sync_name"], r["variant"])
                          for r in await variants_repo.for_integration(conn, integration.id)
                          if r["sync_name"] in syncs]
                overrides = await jobs_repo.frequency_overrides(conn, list(conns))
            existing = await schedules.list_intervals(client, names.schedule_prefix(env.name, integration.unique_key))
            desired: set[str] = set()
            for c_pk, name, variant in pairs:
                connection_id, s = conns[c_pk], syncs[name]
                sync = SyncInput(env.id, env.name, integration.unique_key, connection_id, name, variant)
                sid = names.sync_schedule_id(env.name, integration.unique_key, connection_id, name, variant)
                desired.add(sid)
                override = overrides.get((c_pk, name, variant))
                interval = parse_schedule(override or deployed_frequency(s))
                if sid in existing:
                    # only a schedule whose spec differs can need re-timing; set_interval keeps UI edits
                    if (not override and existing[sid] != int(interval.total_seconds())
                            and await schedules.set_interval(client, sid, interval, source="default",
                                                             only_if_following_default=True)):
                        report.retimed.append(sid)
                    continue
                created = await schedules.ensure(
                    client, sync, interval=interval, source="override" if override else "default",
                    task_queue=names.queue(platform.task_queue_prefix, names.SYNC_QUEUE),
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
            await locks.unlock(lock_conn, "reconcile", integration.id)
    if report.created or report.retimed or report.deleted:
        log.info("schedules_reconciled", integration=integration.unique_key, created=len(report.created),
                 retimed=len(report.retimed), deleted=len(report.deleted))
    return report
