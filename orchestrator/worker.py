"""`nango worker`: the Temporal worker process (one of the two places that imports workflows/)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.bundles.cache import BundleCache
from orchestrator.bundles.store import store_from_settings
from orchestrator.config.settings import Settings
from orchestrator.crypto import Sealer
from orchestrator.store.pool import create_pool
from orchestrator.sync_runs import RunDeps
from orchestrator.temporal import names
from orchestrator.temporal.client import connect

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def run_deps(settings: Settings) -> AsyncIterator[RunDeps]:
    pool = await create_pool(settings)
    session = aiohttp.ClientSession()
    try:
        yield RunDeps(settings=settings, pool=pool, sealer=Sealer(settings.encryption_key_bytes()),
                      bundles=BundleCache(store_from_settings(settings), settings.bundle_cache_dir),
                      session=session)
    finally:
        await session.close()
        await pool.close()


@contextlib.asynccontextmanager
async def health_server(settings: Settings, deps: RunDeps) -> AsyncIterator[None]:
    """GET /health/live for Kubernetes probes: the process serves and its pool answers."""
    from aiohttp import web

    async def live(_: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(3):
                async with deps.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except Exception as exc:
            return web.json_response({"status": "error", "postgres": type(exc).__name__}, status=503)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health/live", live)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.api_host if settings.api_host != "127.0.0.1" else "0.0.0.0",
                      settings.worker_health_port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def build_workers(client: Client, deps: RunDeps, prefix: str = "") -> list[Worker]:
    from activities.sync import SyncActivities
    from workflows.sync import SyncWorkflow

    kinds = {k.strip() for k in deps.settings.worker_task_queues.split(",") if k.strip()}
    workers: list[Worker] = []
    if "syncs" in kinds:
        workers.append(Worker(
            client, task_queue=names.queue(prefix, names.SYNC_QUEUE), workflows=[SyncWorkflow],
            activities=SyncActivities(deps).all(),
            max_concurrent_activities=deps.settings.worker_max_concurrent_syncs,
            graceful_shutdown_timeout=timedelta(seconds=10)))
    return workers


async def run_worker(settings: Settings, stop: asyncio.Event, *, client: Client | None = None) -> None:
    client = client or await connect(settings)
    async with run_deps(settings) as deps:
        workers = build_workers(client, deps, settings.task_queue_prefix)
        log.info("worker_started", task_queues=[w.task_queue for w in workers],
                 isolation="process (no namespaces yet)")
        async with contextlib.AsyncExitStack() as stack:
            if settings.worker_health_port:
                await stack.enter_async_context(health_server(settings, deps))
            for worker in workers:
                await stack.enter_async_context(worker)
            await stop.wait()
        log.info("worker_stopped")
