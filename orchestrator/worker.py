"""`nango worker`: the Temporal worker process (one of the two places that imports workflows/)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from orchestrator import metrics, tracing
from orchestrator.bundles.cache import BundleCache
from orchestrator.bundles.limits import BundleLimits
from orchestrator.config.settings import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.platform import open_platform
from orchestrator.runner.host import Limits, Runner
from orchestrator.runner.sandbox import SandboxConfig, SandboxUnavailableError
from orchestrator.runs.deps import RunDeps
from orchestrator.runs.limits import EnvironmentLimiter
from orchestrator.startup import StartupAborted
from orchestrator.temporal import names

log = structlog.get_logger(__name__)

WARM_POOL_WAIT_S = 30.0  # at start, how long polling waits for the warm pool to be ready


class IsolationUnavailableError(OrchestratorError):
    code = "isolation_unavailable"
    terminal = True


def sandbox_config(settings: Settings) -> SandboxConfig:
    return SandboxConfig(isolation=settings.runner_isolation.strip().lower(),
                         allow_unsandboxed=settings.runner_allow_unsandboxed, tmp_size_mb=settings.runner_tmp_size_mb,
                         shm_size_mb=settings.runner_shm_size_mb, pids_cgroup=settings.runner_pids_cgroup,
                         proc=settings.runner_sandbox_proc.strip().lower(), child_nice=settings.runner_child_nice,
                         fork_server=settings.runner_fork_server)


async def start_runner(settings: Settings) -> Runner:
    """Probe the sandbox and refuse to start without all of it, unless the operator opted out (loudly).

    Fails closed: bubblewrap's namespaces and private filesystem view, both seccomp filters and the
    rlimits, or IsolationUnavailableError naming each missing part and how to install it.
    """
    try:
        runner = await Runner.create(sandbox_config(settings), warm=settings.runner_warm_children)
    except SandboxUnavailableError as exc:
        raise IsolationUnavailableError(str(exc)) from None
    if not settings.runner_require_isolation:
        log.warning("runner_require_isolation_ignored",
                    note="RUNNER_REQUIRE_ISOLATION is deprecated: the worker always requires the sandbox; "
                    "RUNNER_ALLOW_UNSANDBOXED=true is the (local development) opt-out")
    info = runner.sandbox.describe()
    if not runner.sandbox.sandboxed:
        log.warning("runner_not_sandboxed", **info,
                    note="RUNNER_ALLOW_UNSANDBOXED=true: scripts run WITHOUT the sandbox and can read the worker's "
                    "files, environment and processes; local development only, never on a shared worker")
    else:
        log.info("runner_isolation", **info)
    return runner


@contextlib.asynccontextmanager
async def run_deps(settings: Settings, client: Client | None = None,
                   stop: asyncio.Event | None = None) -> AsyncIterator[RunDeps]:
    """The worker's handles; waits for PostgreSQL and Temporal at start-up (StartupAborted when `stop` is set)."""
    runner = await start_runner(settings)
    try:
        async with open_platform(settings, temporal=client, wait=True, stop=stop) as platform:
            deps = RunDeps.extend(
                platform, bundle_cache=BundleCache(platform.bundles, settings.bundle_cache_dir,
                                                   BundleLimits.from_settings(settings)), runner=runner,
                limiter=EnvironmentLimiter.from_settings(settings))
            runner.prewarm(deps.limits())
            yield deps
    finally:
        await runner.close()


@dataclass
class WorkerHealth:
    """What the worker's probes see: `starting` until its task queue workers poll, `serving`, then `stopping`.

    Process-local on purpose: a PostgreSQL failover or a Temporal blip must not make the kubelet restart
    every worker at once (the activities retry those themselves). Once serving, readiness also says how
    many warm children are ready (an operator sees a pool that cannot keep up or never boots).
    """

    phase: str = "starting"
    runner: Runner | None = None
    limits: Limits | None = None

    def warm_children(self) -> dict[str, int] | None:
        """Ready warm children and the pool's size, once the worker serves (None before)."""
        if self.runner is None or self.limits is None:
            return None
        return {"ready": self.runner.ready_count(self.limits), "size": self.runner.warm}


@contextlib.asynccontextmanager
async def health_server(settings: Settings, health: WorkerHealth | None = None) -> AsyncIterator[WorkerHealth]:
    """Kubernetes probes. GET /health/live: the event loop answers (no database call);
    GET /health/ready (startupProbe and readiness): 200 once connected and polling, else 503 with the phase;
    with `warm_children` ({"ready": n, "size": RUNNER_WARM_CHILDREN}) once serving.
    GET /metrics (METRICS_ENABLED): Prometheus, this process's figures and the Temporal SDK's."""
    from aiohttp import web

    state = health or WorkerHealth()

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "phase": state.phase})

    async def ready(_: web.Request) -> web.Response:
        ok = state.phase == "serving"
        body: dict[str, object] = {"status": "ok" if ok else state.phase, "phase": state.phase}
        if (warm := state.warm_children()) is not None:
            body["warm_children"] = warm
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    if settings.metrics_enabled:
        app.router.add_get("/metrics", metrics.serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # where the operator says (WORKER_HEALTH_HOST), else where the API binds: loopback for `nango dev`
    await web.TCPSite(runner, settings.worker_health_host or settings.api_host, settings.worker_health_port).start()
    try:
        yield state
    finally:
        await runner.cleanup()


def build_workers(deps: RunDeps) -> list[Worker]:
    from activities.scripts import ScriptActivities
    from activities.sync import SyncActivities
    from workflows.scripts import ActionWorkflow, EventWorkflow, WebhookWorkflow
    from workflows.sync import SyncWorkflow

    client, prefix = deps.temporal, deps.task_queue_prefix
    grace = timedelta(seconds=deps.settings.worker_shutdown_grace_s)
    sticky = timedelta(seconds=deps.settings.worker_sticky_timeout_s)
    kinds = {k.strip() for k in deps.settings.worker_task_queues.split(",") if k.strip()}
    traced = tracing.worker_interceptors(client)  # none unless tracing is on and the client lacks the interceptor
    workers: list[Worker] = []
    if "syncs" in kinds:
        workers.append(Worker(
            client, task_queue=names.queue(prefix, names.SYNC_QUEUE), workflows=[SyncWorkflow],
            activities=SyncActivities(deps).all(),
            max_concurrent_activities=deps.settings.worker_max_concurrent_syncs,
            max_concurrent_local_activities=deps.settings.worker_max_concurrent_syncs,
            graceful_shutdown_timeout=grace, sticky_queue_schedule_to_start_timeout=sticky, interceptors=traced))
    scripts = ScriptActivities(deps).all()
    per_kind = {
        "actions": (names.ACTION_QUEUE, ActionWorkflow, deps.settings.worker_max_concurrent_actions),
        "webhooks": (names.WEBHOOK_QUEUE, WebhookWorkflow, deps.settings.worker_max_concurrent_webhooks),
        "events": (names.EVENT_QUEUE, EventWorkflow, deps.settings.worker_max_concurrent_events),
    }
    for kind, (queue, workflow, limit) in per_kind.items():
        if kind in kinds:
            workers.append(Worker(
                client, task_queue=names.queue(prefix, queue), workflows=[workflow], activities=scripts,
                # an action's run is a local activity (workflows/scripts.py): the kind's limit holds for both
                max_concurrent_activities=limit, max_concurrent_local_activities=limit,
                graceful_shutdown_timeout=grace, sticky_queue_schedule_to_start_timeout=sticky, interceptors=traced))
    return workers


async def run_worker(settings: Settings, stop: asyncio.Event, *, client: Client | None = None) -> None:
    health = WorkerHealth()
    tracing.setup("nango-worker")  # before the client connects: its interceptor comes with the provider
    try:
        async with contextlib.AsyncExitStack() as stack:
            if settings.worker_health_port:
                # up before the wait for PostgreSQL and Temporal, so the startupProbe sees `starting`
                await stack.enter_async_context(health_server(settings, health))
                if settings.metrics_enabled and client is None and (runtime := metrics.temporal_runtime()):
                    Runtime.set_default(runtime, error_if_already_set=False)  # the client we connect uses it
            async with run_deps(settings, client, stop) as deps:
                await _serve(settings, stop, deps, health)
    except StartupAborted as exc:
        log.info("worker_stopped", reason=str(exc))


async def warm_pool_ready(runner: Runner, limits: Limits, stop: asyncio.Event,
                          timeout_s: float = WARM_POOL_WAIT_S) -> bool:
    """Wait (at most `timeout_s`, or until `stop`) for the whole warm pool to be ready, so the first actions
    after a start do not wait for a booting child. False, with a log line, when it is not: serve anyway."""
    if not runner.warm:
        return True
    filling = asyncio.create_task(runner.until_ready(limits, runner.warm))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({filling, stopping}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (filling, stopping):
            task.cancel()
        await asyncio.gather(filling, stopping, return_exceptions=True)
    ready = runner.ready_count(limits)
    if ready < runner.warm and not stop.is_set():
        log.warning("warm_pool_not_ready", ready=ready, size=runner.warm, waited_s=timeout_s,
                    note="serving anyway: the first runs may start a child of their own")
    return ready >= runner.warm


async def _serve(settings: Settings, stop: asyncio.Event, deps: RunDeps, health: WorkerHealth) -> None:
    """Run the task queue workers until `stop`; the health server (run_worker) reports the phase.

    Polling starts once the warm pool is ready (or after WARM_POOL_WAIT_S)."""
    if deps.runner is not None:
        await warm_pool_ready(deps.runner, deps.limits(), stop)
        health.runner, health.limits = deps.runner, deps.limits()
    if stop.is_set():
        return
    workers = build_workers(deps)
    log.info("worker_started", task_queues=[w.task_queue for w in workers],
             isolation=deps.runner.sandbox.tier if deps.runner else "process")
    running = [asyncio.create_task(worker.run()) for worker in workers]
    health.phase = "serving"
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({stopping, *running}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    health.phase = "stopping"
    # every queue drains at once, so the whole drain fits in one WORKER_SHUTDOWN_GRACE_S
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    results = await asyncio.gather(*running, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed and not stop.is_set():
        raise failed[0]
    log.info("worker_stopped")
