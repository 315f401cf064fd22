"""The platform's handles, built once per process and passed as one object.

The API server keeps one in an app key, `nango admin` opens one per command and the worker one for
its lifetime. Service functions in `control/` and `runs/` take it instead of long
`(pool, sealer, client, ...)` argument lists, so a new handle is one field here, not thirty call sites.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
from temporalio.client import Client

from orchestrator import startup
from orchestrator.bundles.store import BundleStore, store_from_settings
from orchestrator.config.settings import Settings
from orchestrator.crypto import Sealer
from orchestrator.errors import OrchestratorError
from orchestrator.logging import hide_settings_secrets
from orchestrator.providers.egress import Egress
from orchestrator.store import faults
from orchestrator.store.pool import create_pool
from orchestrator.temporal.client import connect


@dataclass(frozen=True)
class Platform:
    settings: Settings
    pool: asyncpg.Pool
    sealer: Sealer
    temporal_client: Client | None
    bundles: BundleStore
    http: aiohttp.ClientSession
    # Scripts' and /proxy's requests: the egress policy's own session (providers/egress.py)
    egress: Egress | None = None

    @property
    def temporal(self) -> Client:
        if self.temporal_client is None:
            raise OrchestratorError("this process was started without a Temporal client")
        return self.temporal_client

    @property
    def task_queue_prefix(self) -> str:
        """Prepended to every task queue name, so several deployments can share one Temporal namespace."""
        return self.settings.task_queue_prefix


def sealer_for(settings: Settings) -> Sealer:
    return Sealer(settings.encryption_key_bytes())


@contextlib.asynccontextmanager
async def open_platform(settings: Settings, *, temporal: Client | None = None,
                        connect_temporal: bool = True, wait: bool = False,
                        stop: asyncio.Event | None = None) -> AsyncIterator[Platform]:
    """Open every handle; close what was opened, in reverse order, however the body ends.

    `connect_temporal=False` is for commands that only touch the database (`nango admin env list`).
    `wait=True` (the worker, the API server) waits for PostgreSQL and Temporal at start-up instead of
    failing at once (orchestrator/startup.py): up to STARTUP_WAIT_MAX_S, or until `stop` is set.
    """
    hide_settings_secrets(settings)  # before the first connection: its errors may quote the URL
    limit = settings.startup_wait_max_s
    pool = await (startup.wait_for("PostgreSQL", startup.address(settings.database_url.get_secret_value(), 5432),
                                   lambda: create_pool(settings), max_wait_s=limit, stop=stop,
                                   retryable=faults.is_transient) if wait else create_pool(settings))
    try:
        if temporal is None and connect_temporal and wait:
            temporal = await startup.wait_for("Temporal", startup.address(settings.temporal_address, 7233),
                                              lambda: connect(settings), max_wait_s=limit, stop=stop,
                                              retryable=startup.temporal_retryable)
        client = temporal or (await connect(settings) if connect_temporal else None)
        async with aiohttp.ClientSession() as http, Egress(lambda: settings.egress_allow) as egress:
            yield Platform(settings=settings, pool=pool, sealer=sealer_for(settings), temporal_client=client,
                           bundles=store_from_settings(settings), http=http, egress=egress)
    finally:
        await pool.close()
