"""Switching deployed scripts on and off, shared by the API, `nango admin` and the dashboard.

Disabling a sync sets `enabled = false`, pauses every connection's schedule (so nothing new
starts while we work), then removes the schedules (the reconciler deletes the base ones, we
delete what it left, e.g. when Temporal's listing lags). Disabling an action makes
`POST /action/trigger` and its unified endpoint answer 404. Enabling sets `enabled = true` and
reconciles, which recreates the schedules (variants included). A redeploy keeps the switch as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import asyncpg
import structlog
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.control.reconcile import reconcile_integration
from orchestrator.errors import InvalidInputError, NotFoundError
from orchestrator.platform import Platform
from orchestrator.store import connections as connections_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store import variants as variants_repo
from orchestrator.store.types import DeployedScript, Environment, Integration
from orchestrator.temporal import names, schedules

log = structlog.get_logger(__name__)

Kind = Literal["sync", "action"]
KINDS: tuple[str, ...] = ("sync", "action")


@dataclass
class SwitchResult:
    integration: str
    kind: str
    name: str
    enabled: bool
    changed: bool
    schedules_paused: int = 0
    schedules_deleted: list[str] = field(default_factory=list)
    schedules_created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def find_script(conn: asyncpg.Connection, env: Environment, integration_key: str, name: str,
                      kind: str | None = None) -> tuple[Integration, DeployedScript]:
    """The deployed sync or action `name`; without `kind`, the one script of that name (an error if
    a sync and an action share it). Unknown names are errors naming what is deployed."""
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"kind must be 'sync' or 'action', got {kind!r}")
    integration = await integrations_repo.get(conn, env.id, integration_key)
    if integration is None:
        raise NotFoundError(f"no integration '{integration_key}' in environment '{env.name}'")
    deployed = [s for s in await scripts_repo.list_for_integration(conn, integration.id) if s.kind in KINDS]
    matches = [s for s in deployed if s.name == name and (kind is None or s.kind == kind)]
    if not matches:
        listed = ", ".join(f"{s.kind} {s.name}" for s in deployed) or "none"
        what = f"{kind} '{name}'" if kind else f"sync or action '{name}'"
        raise NotFoundError(f"no {what} is deployed for integration '{integration_key}'; deployed: {listed}")
    if len(matches) > 1:
        raise InvalidInputError(f"'{name}' is both a sync and an action of integration '{integration_key}'; "
                                "say which with kind (--kind sync|action)")
    return integration, matches[0]


async def list_scripts(pool: asyncpg.Pool, env: Environment, integration_key: str | None = None
                       ) -> list[dict[str, Any]]:
    """Every deployed sync and action of the environment with its switch (for the dashboard and CLI)."""
    async with pool.acquire() as conn:
        if integration_key is not None and await integrations_repo.get(conn, env.id, integration_key) is None:
            raise NotFoundError(f"no integration '{integration_key}' in environment '{env.name}'")
        scripts = await scripts_repo.list_for_environment(conn, env.id)
    return [{"integration": s.integration_key, "kind": s.kind, "name": s.name, "enabled": s.enabled,
             "endpoints": s.config.get("endpoints") or []}
            for s in scripts if s.kind in KINDS and (integration_key is None or s.integration_key == integration_key)]


async def _schedule_ids(conn: asyncpg.Connection, env: Environment, integration: Integration,
                        sync: str) -> tuple[list[str], list[tuple[int, str, str]]]:
    """Base schedule ids of every connection, and (connection_pk, connection_id, variant) of its variants."""
    conns = await connections_repo.ids_for_integration(conn, integration.id)
    base = [names.sync_schedule_id(env.name, integration.unique_key, connection_id, sync)
            for connection_id in conns.values()]
    variants = [(r["connection_pk"], r["connection_id"], r["variant"])
                for r in await variants_repo.for_integration(conn, integration.id, sync)]
    return base, variants


async def _set(conn: asyncpg.Connection, script: DeployedScript, enabled: bool) -> bool:
    return await scripts_repo.set_enabled(conn, script.id, enabled)


async def disable(platform: Platform, env: Environment, integration_key: str,
                  name: str, kind: str | None = None) -> SwitchResult:
    pool, client = platform.pool, platform.temporal
    async with pool.acquire() as conn:
        integration, script = await find_script(conn, env, integration_key, name, kind)
        changed = await _set(conn, script, False)
        base, variants = (await _schedule_ids(conn, env, integration, name)) if script.kind == "sync" else ([], [])
    result = SwitchResult(integration_key, script.kind, name, enabled=False, changed=changed)
    if script.kind != "sync":
        log.info("script_disabled", integration=integration_key, kind=script.kind, script=name, changed=changed)
        return result
    variant_ids = [names.sync_schedule_id(env.name, integration_key, cid, name, v) for _, cid, v in variants]
    for sid in base + variant_ids:
        try:
            await schedules.pause(client, sid, f"{script.kind} '{name}' disabled", pool=pool)
            result.schedules_paused += 1
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
    report = await reconcile_integration(platform, integration)
    result.schedules_deleted.extend(report.deleted)
    for sid in base + variant_ids:  # what the reconciler left (variants, or a listing that lagged)
        if sid not in result.schedules_deleted and await schedules.delete(client, sid, pool=pool):
            result.schedules_deleted.append(sid)
    log.info("script_disabled", integration=integration_key, kind="sync", script=name, changed=changed,
             schedules_deleted=len(result.schedules_deleted))
    return result


async def enable(platform: Platform, env: Environment, integration_key: str,
                 name: str, kind: str | None = None) -> SwitchResult:
    pool = platform.pool
    async with pool.acquire() as conn:
        integration, script = await find_script(conn, env, integration_key, name, kind)
        changed = await _set(conn, script, True)
    result = SwitchResult(integration_key, script.kind, name, enabled=True, changed=changed)
    if script.kind == "sync":  # the reconciler recreates every connection's schedule and its variants'
        report = await reconcile_integration(platform, integration)
        result.schedules_created.extend(report.created)
    log.info("script_enabled", integration=integration_key, kind=script.kind, script=name, changed=changed,
             schedules_created=len(result.schedules_created))
    return result


async def switch(platform: Platform, env: Environment, integration_key: str, name: str,
                 enabled: bool, kind: str | None = None) -> SwitchResult:
    fn = enable if enabled else disable
    return await fn(platform, env, integration_key, name, kind)
