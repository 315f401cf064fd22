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
from orchestrator.providers.catalog import operator_providers
from orchestrator.providers.egress import Egress
from orchestrator.store import faults, key_fingerprint
from orchestrator.store.pool import close_pool, create_pool
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
    return Sealer(settings.encryption_key_bytes(), settings.previous_encryption_key_bytes())


class EncryptionKeyMismatchError(OrchestratorError):
    code = "encryption_key_mismatch"
    terminal = True


async def check_key_fingerprint(conn: asyncpg.Connection, sealer: Sealer) -> str:
    """Refuse to run with a key other than the one the database's sealed values were written with.

    The first process against an empty fingerprint stores its own (the previous key's while a
    rotation is configured: the values are still sealed under it). Accepted: the stored fingerprint
    is the current key's, or the previous key's during a rotation. Returns the stored fingerprint.
    """
    stored = await key_fingerprint.claim(conn, sealer.previous_fingerprint or sealer.fingerprint)
    if stored not in (sealer.fingerprint, sealer.previous_fingerprint):
        have = sealer.fingerprint + (f" (previous key: {sealer.previous_fingerprint})"
                                     if sealer.previous_fingerprint else "")
        raise EncryptionKeyMismatchError(
            f"ENCRYPTION_KEY does not match the database: the stored values were sealed with the key of "
            f"fingerprint {stored}, this process has {have}. Set ENCRYPTION_KEY to the key in use (a regenerated "
            "key cannot open any stored credential); to change keys, follow the rotation procedure "
            "(ENCRYPTION_KEY_PREVIOUS, `nango admin keys rotate-encryption`).",
            expected=stored, actual=sealer.fingerprint)
    return stored


@contextlib.asynccontextmanager
async def open_platform(settings: Settings, *, temporal: Client | None = None,
                        connect_temporal: bool = True, wait: bool = False,
                        stop: asyncio.Event | None = None, check_key: bool = True) -> AsyncIterator[Platform]:
    """Open every handle; close what was opened, in reverse order, however the body ends.

    `connect_temporal=False` is for commands that only touch the database (`nango admin env list`).
    `wait=True` (the worker, the API server) waits for PostgreSQL and Temporal at start-up instead of
    failing at once (orchestrator/startup.py): up to STARTUP_WAIT_MAX_S, or until `stop` is set.
    Every process checks ENCRYPTION_KEY against the database's fingerprint (check_key_fingerprint).
    """
    hide_settings_secrets(settings)  # before the first connection: its errors may quote the URL
    limit = settings.startup_wait_max_s
    # a connection that fails for good (refused and not waiting, a wrong password, no such database) ends the
    # process with one line naming the address and the setting that changes it (startup.unreachable)
    at = startup.address(settings.database_url.get_secret_value(), 5432)
    pool = await startup.reach(
        "PostgreSQL", at, "DATABASE_URL", lambda: startup.wait_for(
            "PostgreSQL", at, lambda: create_pool(settings), max_wait_s=limit, stop=stop,
            retryable=faults.is_transient) if wait else create_pool(settings), failed=database_connect_failed)
    try:
        if temporal is None and connect_temporal:
            at = startup.address(settings.temporal_address, 7233)
            temporal = await startup.reach(
                "Temporal", at, "TEMPORAL_ADDRESS", lambda: startup.wait_for(
                    "Temporal", at, lambda: connect(settings), max_wait_s=limit, stop=stop,
                    retryable=startup.temporal_retryable) if wait else connect(settings),
                failed=startup.temporal_retryable)
        sealer = sealer_for(settings)
        if check_key:
            async with pool.acquire() as conn:
                await check_key_fingerprint(conn, sealer)
        if settings.providers_file:  # a bad operator catalog stops the process now, not at the first lookup
            await asyncio.to_thread(operator_providers, settings.providers_file)
        async with aiohttp.ClientSession() as http, Egress(lambda: settings.egress_allow) as egress:
            yield Platform(settings=settings, pool=pool, sealer=sealer, temporal_client=temporal,
                           bundles=store_from_settings(settings), http=http, egress=egress)
    finally:
        await close_pool(pool)


def database_connect_failed(exc: BaseException) -> bool:
    """A connection attempt's own failure: the network, or PostgreSQL refusing it (role, password, database)."""
    return isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError)
