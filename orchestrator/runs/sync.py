"""The three steps of a sync run, called by the Temporal activities.

prepare: load the connection and the deployed script, refresh a token that expires soon, open
(or re-open, on a retried activity) the job. run: fetch the bundle, run the script in its
child, stream records to PostgreSQL. finalize: deletion detection on success only, close the
job with its counts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from orchestrator import metrics, tracing
from orchestrator.errors import NotFoundError, ScriptError, TransientError
from orchestrator.providers import credentials
from orchestrator.providers.custom import resolve_provider
from orchestrator.runner.host import RunSpec, run_script
from orchestrator.runs import alerts, attempts, validation
from orchestrator.runs.attempts import Attempt
from orchestrator.runs.deps import RunDeps
from orchestrator.runs.host import (
    Heartbeat,
    InfraWatch,
    ProgressSink,
    beat_interval,
    beating,
    build_host,
    with_heartbeat,
)
from orchestrator.runs.limits import EnvironmentBusyError
from orchestrator.store import connections as connections_repo
from orchestrator.store import environment_variables as environment_variables_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import faults
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import records as records_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.temporal.types import FinalizeInput, PreparedSync, RunSyncResult, SyncInput, SyncSummary

log = structlog.get_logger(__name__)


async def prepare(deps: RunDeps, sync: SyncInput, *, workflow_id: str, run_id: str) -> PreparedSync:
    async with deps.pool.acquire() as conn:
        integration = await integrations_repo.get(conn, sync.environment_id, sync.integration)
        if integration is None:
            return _skip(f"integration '{sync.integration}' no longer exists")
        script = await scripts_repo.get(conn, integration.id, "sync", sync.sync_name)
        if script is None or not script.enabled:
            return _skip(f"sync '{sync.sync_name}' is not deployed or is disabled")
        connection = await connections_repo.get(conn, deps.sealer, sync.environment_id, sync.integration,
                                                sync.connection_id)
        if connection is None:
            return _skip(f"connection '{sync.connection_id}' no longer exists")
        full_resync, clear_cache = await jobs_repo.take_reset(conn, connection.id, sync.sync_name, sync.variant)
        if clear_cache:
            # emptyCache: the records go before this run saves afresh (the run it replaced was cancelled first)
            await records_repo.delete_scopes(conn, connection.id, list(script.config.get("output") or []),
                                             sync.variant)
        state = await jobs_repo.get_state(conn, connection.id, sync.sync_name, sync.variant)
        job_id = await jobs_repo.open_job(
            conn, environment_id=sync.environment_id, connection_pk=connection.id, script_name=sync.sync_name,
            variant=sync.variant, kind="sync", full_resync=full_resync, workflow_id=workflow_id, run_id=run_id)
        # in the database's clock, which stamps the records' last_modified_at: the result webhook's
        # modifiedAfter then misses none of this run's records whatever the worker's clock says
        started_at = await jobs_repo.started_at(conn, job_id) or datetime.now(UTC)
    if credentials.expires_soon(connection):
        try:
            await credentials.refresh(deps, connection)
        except credentials.RefreshError as exc:  # refused now or before: the run would only fail at the provider
            async with deps.pool.acquire() as conn:
                await jobs_repo.close_job(conn, job_id, "failed", error_type="connection_refresh_failed",
                                          error=exc.message)
            metrics.RUNS_FINISHED.labels(sync.environment, sync.integration, "sync", "failed").inc()
            await alerts.after_sync(deps, sync, connection.id, job_id, "failed")
            return _skip(exc.message)
    cfg = script.config
    last = state["last_success_at"]
    return PreparedSync(
        job_id=job_id, connection_pk=connection.id, bundle_key=script.bundle_key,
        bundle_sha256=script.bundle_sha256, module_path=script.module_path,
        started_at=started_at.isoformat(), timeout_s=deps.settings.runner_sync_timeout_s,
        heartbeat_timeout_s=deps.settings.runner_heartbeat_timeout_s,
        last_sync_date=last.isoformat() if last else None, full_resync=full_resync,
        track_deletes=bool(cfg.get("track_deletes")) and cfg.get("sync_type", "full") == "full",
        models=list(cfg.get("output") or []),
    )


def _skip(reason: str) -> PreparedSync:
    return PreparedSync(job_id=0, connection_pk=0, bundle_key="", bundle_sha256="", module_path="",
                        started_at=datetime.now(UTC).isoformat(), timeout_s=0, skip_reason=reason)


async def run(deps: RunDeps, sync: SyncInput, prepared: PreparedSync,
              heartbeat: Heartbeat | None = None, on_progress: ProgressSink | None = None,
              attempt: Attempt | None = None) -> RunSyncResult:
    """Run the script; a script failure raises ScriptError (terminal), infra faults anything else.

    Every attempt is counted on the job; a retry says in the job's log what failed and where it resumes."""
    async with deps.pool.acquire() as conn:
        state = await jobs_repo.get_state(conn, prepared.connection_pk, sync.sync_name, sync.variant)
        await attempts.record(conn, prepared.job_id, attempt or Attempt(), resumes=(
            "from the script's last checkpoint" if state["checkpoint"] is not None else "from the start"))
        # What this attempt counts as seen: what its checkpoint covers, or nothing; never a dead attempt's rest.
        number = (attempt or Attempt()).number
        await records_repo.begin_attempt(conn, prepared.job_id, number)
        connection = await connections_repo.get_by_pk(conn, deps.sealer, prepared.connection_pk)
        env = await environments_repo.by_id(conn, sync.environment_id)
        env_vars = await environment_variables_repo.list_all(conn, deps.sealer, sync.environment_id)
    if connection is None or env is None:
        raise NotFoundError(f"connection '{sync.connection_id}' was deleted during the run")
    every = beat_interval(deps.settings.runner_heartbeat_timeout_s)
    bundle_dir: Path = await with_heartbeat(deps.cache.fetch(prepared.bundle_key, prepared.bundle_sha256),
                                            heartbeat, every)
    provider = await resolve_provider(deps.pool, connection.environment_id, connection.provider)

    async def models() -> dict[str, Any]:
        return await validation.manifest_models(bundle_dir)
    host = build_host(deps, connection, provider, env, env_vars, job_id=prepared.job_id, sync_name=sync.sync_name,
                      variant=sync.variant, track_deletes=prepared.track_deletes, attempt=number,
                      record_check=await validation.for_run(env, models))
    spec = RunSpec(kind="sync", bundle_dir=bundle_dir, module_path=prepared.module_path,
                   frame_timeout_s=deps.settings.runner_frame_timeout_s,
                   timeout_s=prepared.timeout_s, limits=deps.limits(), context={
                       "connection_id": connection.connection_id, "provider_config_key": sync.integration,
                       "provider": connection.provider, "environment": env.name, "variant": sync.variant,
                       "job_id": prepared.job_id, "last_sync_date": prepared.last_sync_date,
                       "pagination": provider.pagination, "script_name": sync.sync_name,
                       "full_resync": prepared.full_resync})
    watched = InfraWatch(host)
    async with beating(host, heartbeat, every, on_progress):
        async with deps.limiter.slot(sync.environment_id, "sync", on_full=host.warn, key=prepared.job_id,
                                     environment=sync.environment):
            if number == 1 or (attempt is not None and attempt.failure_type == EnvironmentBusyError.__name__):
                metrics.RUNS_STARTED.labels(sync.environment, sync.integration, "sync").inc()  # the job's first
            with metrics.RUN_DURATION.labels(sync.environment, sync.integration, "sync").time(), \
                    tracing.run_span(spec) as span:
                outcome = await run_script(spec, watched, runner=deps.runner)
                tracing.run_ended(span, outcome)
    if not outcome.ok:
        err = outcome.error or {}
        if watched.faults:
            raise TransientError(f"the run hit an infrastructure fault and will be retried: {watched.faults[-1]}")
        raise ScriptError(f"{err.get('type', 'Error')}: {err.get('message', 'script failed')}",
                          traceback=err.get("traceback", ""))
    return RunSyncResult(counts=host.progress.models)


async def finalize(deps: RunDeps, inp: FinalizeInput) -> SyncSummary:
    prepared = inp.prepared
    async with deps.pool.acquire() as conn:
        job = await jobs_repo.get(conn, prepared.job_id)
        if job is None:
            raise NotFoundError(f"job {prepared.job_id} vanished")
        if job.status != "running":  # finalize retried after it already closed the job
            return SyncSummary(job.id, job.status, job.counts, job.error)
        try:
            if inp.success:
                if prepared.track_deletes:
                    for model in prepared.models:
                        scope = records_repo.Scope(job.environment_id, prepared.connection_pk, model,
                                                   inp.sync.variant)
                        deleted = await records_repo.delete_unseen(conn, scope, job.id)
                        metrics.records_changed(inp.sync.environment, inp.sync.integration, 0, 0, deleted)
                await _recount_retried(conn, job.id, prepared.connection_pk, inp.sync.variant)
                async with conn.transaction():
                    await jobs_repo.mark_success(conn, prepared.connection_pk, inp.sync.sync_name,
                                                 inp.sync.variant, datetime.fromisoformat(prepared.started_at), job.id)
                    await jobs_repo.close_job(conn, job.id, "success")
            else:
                await _recount_retried(conn, job.id, prepared.connection_pk, inp.sync.variant)
                await jobs_repo.close_job(conn, job.id, "cancelled" if inp.cancelled else "failed",
                                          error=inp.error, error_details=inp.error_details)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if not faults.is_deterministic(exc):
                raise  # retried by the activity's policy
            # retrying would fail the same way and leave the job RUNNING forever: it ends failed, with the reason
            reason = f"the run's outcome could not be stored: {faults.describe(exc)}"
            log.warning("job_close_refused", job_id=job.id, error=reason)
            await jobs_repo.force_fail(conn, job.id, reason)
        job = await jobs_repo.get(conn, prepared.job_id)
    assert job is not None
    metrics.RUNS_FINISHED.labels(inp.sync.environment, inp.sync.integration, "sync", job.status).inc()
    log.info("sync_finished", job_id=job.id, status=job.status, counts=job.counts)
    return SyncSummary(job.id, job.status, job.counts, job.error)


async def _recount_retried(conn: asyncpg.Connection, job_id: int, connection_pk: int, variant: str) -> None:
    """After a retry, the job's counts become its net change (store/records.recount): a dead attempt's writes
    that stand count once, those the completing attempt undid count nowhere. A first attempt's counts are
    exact as they were kept, and need no scan of the records."""
    if await records_repo.current_attempt(conn, job_id) > 1:
        await records_repo.recount(conn, job_id, connection_pk, variant)
