"""The trusted side of one run, wired to the worker: a ScriptHost plus the helpers every run kind shares."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog

from orchestrator.errors import TransientError
from orchestrator.providers import credentials
from orchestrator.providers.catalog import Provider
from orchestrator.runner.host import RpcFailure
from orchestrator.runs.deps import RunDeps
from orchestrator.runs.limits import RunQuotas
from orchestrator.runs.script_host import ScriptHost
from orchestrator.runs.sinks import DatabaseSink
from orchestrator.runs.trigger import sync_control_for, trigger_for
from orchestrator.runs.validation import RecordCheck
from orchestrator.store import connections as connections_repo
from orchestrator.store import faults, script_state
from orchestrator.store import integrations as integrations_repo
from orchestrator.store.types import Connection, Environment
from orchestrator.timestamps import iso

log = structlog.get_logger(__name__)

T = TypeVar("T")

Heartbeat = Callable[[dict[str, Any]], None]
# Receives the run's progress while it changes (final=False) and once more when the script has ended (final=True).
ProgressSink = Callable[[dict[str, Any], bool], Awaitable[None]]


def build_host(deps: RunDeps, connection: Connection, provider: Provider, env: Environment,
               env_vars: list[dict[str, str]], *, job_id: int, sync_name: str | None, variant: str = "base",
               track_deletes: bool = False, attempt: int = 0,
               record_check: RecordCheck | None = None) -> ScriptHost:
    """The trusted side of one run, wired to this worker's pool, HTTP session and Temporal client."""
    async def refresh(force: bool) -> Any:
        return await credentials.refresh(deps, connection, force=force)

    async def write_metadata(metadata: dict[str, Any], merge: bool) -> dict[str, Any]:
        async with deps.pool.acquire() as conn:
            written = await connections_repo.write_metadata(conn, [connection.id], metadata, merge=merge)
            return written.get(connection.id)

    async def egress_allow() -> list[str]:
        async with deps.pool.acquire() as conn:
            return await integrations_repo.egress_allow(conn, connection.integration_id)

    async def integration() -> dict[str, Any]:
        async with deps.pool.acquire() as conn:
            return await integration_view(conn, connection.integration_id, provider)

    sink = DatabaseSink(deps.pool, environment_id=connection.environment_id, connection_pk=connection.id,
                        variant=variant, job_id=job_id, sync_name=sync_name, attempt=attempt)
    return ScriptHost(sink=sink, session=deps.http, connection=connection, provider=provider,
                      environment_name=env.name, job_id=job_id, track_deletes=track_deletes,
                      refresh_credentials=refresh, metadata_writer=write_metadata,
                      egress=deps.egress, egress_allow=egress_allow,
                      action_trigger=trigger_for(deps, env.id, env.name), environment_variables=env_vars,
                      quotas=RunQuotas.from_settings(deps.settings), record_check=record_check,
                      log_level=env.script_log_level, sync_control=sync_control_for(deps, env.id, env.name),
                      integration_reader=integration, public_url=deps.settings.public_url)


async def integration_view(conn: asyncpg.Connection, integration_id: int, provider: Provider) -> dict[str, Any]:
    """`nango.get_integration()`: Nango's integration fields and its OAuth app's public settings, read by column
    name (store/script_state.py): no secret is read for it."""
    row = await script_state.public_integration(conn, integration_id)
    if row is None:
        raise RpcFailure("not_found", "the run's integration no longer exists")
    return {"unique_key": row["unique_key"], "provider": row["provider"],
            "display_name": row["display_name"] or provider.display_name or row["provider"], "logo": "",
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
            "credentials": {"type": provider.auth_mode, "client_id": row["oauth_client_id"],
                            "scopes": row["oauth_scopes"], "authorization_url": row["oauth_authorization_url"],
                            "token_url": row["oauth_token_url"]},
            "webhook_routing": row["webhook_routing"] or None}


async def with_heartbeat(work: Awaitable[T], heartbeat: Callable[[dict[str, Any]], None] | None,
                         every: float) -> T:
    """Await slow preparation (a bundle download) while still heartbeating, so only a dead worker times out."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            if heartbeat:
                heartbeat({"phase": "preparing"})
    finally:
        if not task.done():
            task.cancel()


def beat_interval(heartbeat_timeout_s: float) -> float:
    """A third of the heartbeat timeout (a lost beat or two is not a dead worker), between 1 and 5 s."""
    return max(1.0, min(5.0, heartbeat_timeout_s / 3))


@contextlib.asynccontextmanager
async def beating(host: ScriptHost, heartbeat: Heartbeat | None, every: float,
                  on_progress: ProgressSink | None = None) -> AsyncIterator[None]:
    """Keep a run alive while its body waits for a slot and runs the script (sync and script runs alike).

    Every `every` seconds: flush the script's buffered logs, heartbeat with its progress (so a lost
    worker is noticed and a cancel reaches the activity) and pass changed progress to `on_progress`.
    When the body ends normally, the final progress goes to `on_progress` too; a progress report
    that fails is logged and the run goes on.
    """
    async def report(current: dict[str, Any], final: bool) -> None:
        assert on_progress is not None
        try:
            await on_progress(current, final)
        except Exception as exc:  # progress is best effort; the run goes on
            log.debug("progress_report_failed", error=str(exc))

    async def beat() -> None:
        last: dict[str, Any] | None = None
        while True:
            await asyncio.sleep(every)
            await host.flush_logs()
            current = host.progress.as_dict()
            if heartbeat:
                heartbeat(current)
            if on_progress and current != last:
                last = current
                await report(current, False)

    beater = asyncio.create_task(beat())
    try:
        yield
    finally:
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)
        await host.flush_logs(final=True)
    if on_progress:
        await report(host.progress.as_dict(), True)


class InfraWatch:
    """Wraps a ScriptHost to notice platform faults (database down, ...) behind a script's failure.

    A script that fails because `batch_save` could not reach PostgreSQL did not fail on its own:
    the run is retried (from its checkpoint) instead of being recorded as a script error. A database
    error that no retry can fix (a value PostgreSQL refuses: store/faults.py) is not a fault: the
    run fails with it instead of being retried forever.
    """

    def __init__(self, host: ScriptHost) -> None:
        self.host = host
        self.faults: list[str] = []

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return await self.host.call(method, params)
        except RpcFailure:
            raise
        except (OSError, TransientError) as exc:
            self.faults.append(f"{method}: {type(exc).__name__}: {exc}")
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if faults.is_transient(exc):
                self.faults.append(f"{method}: {faults.describe(exc)}")
            raise

    def log(self, level: str, message: str, fields: dict[str, Any] | None) -> None:
        self.host.script_log(level, message, fields)
