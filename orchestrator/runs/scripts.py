"""Runs of actions, webhook scripts and event scripts: one connection, one script, one job.

Shares the sync's building blocks (bundle cache, ScriptHost, run_script). The outcome is stored
on the job row (output or error), so the API can answer from it whatever happened to the
workflow around it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg
import orjson
import structlog

from orchestrator import metrics, tracing
from orchestrator.errors import NotFoundError, TransientError
from orchestrator.providers import credentials
from orchestrator.providers.custom import resolve_provider
from orchestrator.runner.host import RunSpec, run_script
from orchestrator.runs import attempts, validation
from orchestrator.runs.attempts import Attempt
from orchestrator.runs.deps import RunDeps
from orchestrator.runs.host import Heartbeat, InfraWatch, beat_interval, beating, build_host, with_heartbeat
from orchestrator.runs.limits import EnvironmentBusyError
from orchestrator.store import connections as connections_repo
from orchestrator.store import environment_variables as environment_variables_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import faults, job_events, script_state
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.temporal.types import ScriptJobInput, ScriptJobResult

log = structlog.get_logger(__name__)

MAX_ACTION_OUTPUT = 2 * 1024 * 1024
_SCRIPT_KIND = {"action": "action", "webhook": "sync", "event": "event"}
def _model_name(expr: str | None) -> str | None:
    """A plain model name ('Issue'), not an expression ('Issue[]', 'string', 'A | B')."""
    if expr and expr.isidentifier() and expr[0].isupper():
        return expr
    return None


def timeout_for(deps: RunDeps, kind: str) -> int:
    s = deps.settings
    return {"action": s.runner_action_timeout_s, "webhook": s.runner_webhook_timeout_s,
            "event": s.runner_event_timeout_s}.get(kind, s.runner_action_timeout_s)


async def run_job(deps: RunDeps, inp: ScriptJobInput, heartbeat: Heartbeat | None = None,
                  attempt: Attempt | None = None) -> ScriptJobResult:
    """Run one job; heartbeats (when given) while the bundle is fetched and the script runs, as a sync does.
    Every attempt is counted on the job; a retry says in the job's log what failed and whether it starts over or
    from the checkpoint the script saved."""
    async with deps.pool.acquire() as conn:  # one connection for every read before the script starts
        job = await jobs_repo.get(conn, inp.job_id, with_counts=False)
        if job is None:
            raise NotFoundError(f"job {inp.job_id} does not exist")
        if job.status != "running":  # a retried activity after the job already closed
            return ScriptJobResult(ok=job.status == "success", output=job.output, error_type=job.error_type,
                                   error_message=job.error, error_payload=job.error_payload)
        attempt = counted(attempt or Attempt(), job.attempts)
        resumes = "from the start"
        if attempt.number > 1 and await script_state.get_checkpoint(conn, job.connection_pk, job.kind,
                                                                    job.script_name) is not None:
            resumes = "from the script's last checkpoint"
        await attempts.record(conn, job.id, attempt, resumes=resumes)
        if inp.max_attempts and attempt.number > inp.max_attempts:
            return await _close(deps, inp.job_id, ScriptJobResult(False, error_type="platform_error", error_message=(
                f"the worker running this {inp.kind} was lost and its {inp.max_attempts} attempt(s) are spent")),
                conn=conn)
        env = await environments_repo.by_id(conn, inp.environment_id)
        env_vars = await environment_variables_repo.list_all(conn, deps.sealer, inp.environment_id)
        integration = await integrations_repo.get(conn, inp.environment_id, inp.integration)
        connection = await connections_repo.get(conn, deps.sealer, inp.environment_id, inp.integration,
                                                inp.connection_id)
        script = (await scripts_repo.get(conn, integration.id, _SCRIPT_KIND[inp.kind], inp.script_name)
                  if integration else None)
        provider = (await resolve_provider(conn, connection.environment_id, connection.provider)
                    if connection is not None and script is not None else None)
    if env is None or connection is None or script is None or provider is None or not script.enabled:
        what = "connection" if connection is None else "script"
        result = ScriptJobResult(False, error_type="not_found",
                                 error_message=f"{inp.kind} '{inp.script_name}': the {what} no longer exists")
        await _close(deps, inp.job_id, result)
        return result
    every = beat_interval(deps.settings.runner_heartbeat_timeout_s)
    if credentials.expires_soon(connection):  # a slow token endpoint must not look like a dead worker
        try:
            connection = await with_heartbeat(credentials.refresh(deps, connection), heartbeat, every)
        except credentials.RefreshError as exc:
            result = ScriptJobResult(False, error_type="connection_refresh_failed", error_message=exc.message)
            await _close(deps, inp.job_id, result)
            return result
    bundle_dir = await with_heartbeat(deps.cache.fetch(script.bundle_key, script.bundle_sha256), heartbeat, every)

    cfg = script.config

    async def models() -> dict[str, Any]:
        return await validation.manifest_models(bundle_dir)
    host = build_host(deps, connection, provider, env, env_vars, job_id=inp.job_id,
                      sync_name=inp.script_name if inp.kind == "webhook" else None,
                      record_check=await validation.for_run(env, models))
    spec = RunSpec(kind=inp.kind, bundle_dir=bundle_dir, module_path=script.module_path,  # type: ignore[arg-type]
                   frame_timeout_s=deps.settings.runner_frame_timeout_s,
                   timeout_s=timeout_for(deps, inp.kind), limits=deps.limits(), context={
                       "connection_id": connection.connection_id, "provider_config_key": inp.integration,
                       "provider": connection.provider, "environment": env.name, "job_id": inp.job_id,
                       "pagination": provider.pagination, "script_name": inp.script_name, "input": inp.input,
                       "input_model": _model_name(cfg.get("input")) if inp.kind == "action" else None,
                       "output_model": _model_name(cfg.get("output")) if inp.kind == "action" else None})
    watched = InfraWatch(host)
    try:
        async with beating(host, heartbeat, every):
            async with deps.limiter.slot(inp.environment_id, inp.kind, on_full=host.warn, key=inp.job_id,
                                         environment=inp.environment):
                if attempt.number == 1:  # the job's first (a refused slot gives its attempt back)
                    metrics.RUNS_STARTED.labels(inp.environment, inp.integration, inp.kind).inc()
                with metrics.RUN_DURATION.labels(inp.environment, inp.integration, inp.kind).time(), \
                        tracing.run_span(spec) as span:
                    outcome = await run_script(spec, watched, runner=deps.runner)
                    tracing.run_ended(span, outcome)
    except EnvironmentBusyError:
        async with deps.pool.acquire() as conn:  # refused before the script started: not an attempt
            await jobs_repo.give_back_attempt(conn, inp.job_id, attempt.number)
        raise
    if not outcome.ok and watched.faults:
        raise TransientError(f"{inp.kind} run hit an infrastructure fault and will be retried: {watched.faults[-1]}")
    if outcome.ok:
        size = len(orjson.dumps(outcome.output))
        if inp.kind == "action" and size > MAX_ACTION_OUTPUT:
            result = ScriptJobResult(False, error_type="output_too_large", error_message=(
                f"action output is {size} bytes; the limit is {MAX_ACTION_OUTPUT} bytes (2 MB)"))
        else:
            result = ScriptJobResult(True, output=outcome.output)
    else:
        err = outcome.error or {}
        if outcome.platform_fault:
            raise TransientError(f"{inp.kind} run failed inside the platform: {err.get('message')}")
        result = ScriptJobResult(False, error_type=str(err.get("type", "Error")),
                                 error_message=str(err.get("message", "script failed")),
                                 error_payload=err.get("payload") if err.get("type") == "action_error" else None)
        if err.get("traceback"):
            async with deps.pool.acquire() as conn:
                await jobs_repo.set_error_details(conn, inp.job_id, err["traceback"])
    return await _close(deps, inp.job_id, result)


def counted(attempt: Attempt, started: int) -> Attempt:
    """This attempt's number as the job counts them. An action runs as a local activity, whose attempts
    restart at 1 when its workflow task is replayed on another worker after the first was lost: a job
    that already started `started` >= this number of attempts, and is still running, lost one."""
    if started < attempt.number:
        return attempt
    return Attempt(number=started + 1, failure_type="WorkerLost", failure_message=(
        "the worker running it was lost (its workflow task timed out) and another worker took the run over"))


async def _close(deps: RunDeps, job_id: int, result: ScriptJobResult,
                 conn: asyncpg.Connection | None = None) -> ScriptJobResult:
    """Close the job with the result; when the database refuses it for good (an output PostgreSQL cannot
    store), the job ends failed with that reason instead, and so does the returned result. Then tell the
    API processes (an awaited action answers from the closed row without waiting for the workflow)."""
    if conn is None:
        async with deps.pool.acquire() as own:
            return await _close(deps, job_id, result, own)
    try:
        await jobs_repo.close_job(conn, job_id, "success" if result.ok else "failed", output=result.output,
                                  error_type=None if result.ok else result.error_type,
                                  error=None if result.ok else result.error_message,
                                  error_payload=result.error_payload)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if not faults.is_deterministic(exc):
            raise  # retried by the activity's policy
        reason = f"the run's outcome could not be stored: {faults.describe(exc)}"
        log.warning("job_close_refused", job_id=job_id, error=reason)
        await jobs_repo.force_fail(conn, job_id, reason)
        result = ScriptJobResult(False, error_type="DatabaseError", error_message=reason)
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        await job_events.notify_closed(conn, job_id)  # best effort: without it the API awaits the workflow
    return result


async def fail_job(deps: RunDeps, job_id: int, message: str) -> None:
    """Close a job whose run could not happen at all (retries exhausted on an infrastructure fault)."""
    await _close(deps, job_id, ScriptJobResult(False, error_type="platform_error", error_message=message))
