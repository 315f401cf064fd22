"""Deployed scripts: which bundle holds each sync/action/event script and its nango.yaml entry."""

from __future__ import annotations

from typing import Any

import asyncpg

from orchestrator.store.types import DeployedScript

_SELECT = (
    "SELECT s.id, s.environment_id, s.integration_id, i.unique_key AS integration_key, s.name, s.kind,"
    " s.bundle_sha256, s.bundle_key, s.module_path, s.config, s.enabled, s.version, s.deployed_at, s.script_sha256"
    " FROM deployed_scripts s JOIN integrations i ON i.id = s.integration_id"
)


async def upsert(
    conn: asyncpg.Connection, *, environment_id: int, integration_id: int, name: str, kind: str,
    bundle_sha256: str, bundle_key: str, module_path: str, config: dict[str, Any],
    script_sha256: str | None = None,
) -> tuple[DeployedScript, str]:
    """Record a deployed script; returns it and 'added', 'updated' or 'unchanged'."""
    before = await conn.fetchrow(
        "SELECT bundle_sha256, config, script_sha256 FROM deployed_scripts WHERE integration_id = $1 AND kind = $2"
        " AND name = $3", integration_id, kind, name)
    same_code = before is not None and (before["bundle_sha256"] == bundle_sha256 or (
        script_sha256 is not None and before["script_sha256"] == script_sha256))
    if before and same_code and before["config"] == config:
        change = "unchanged"
        if before["bundle_sha256"] != bundle_sha256:  # same code, newer bundle: follow it, same version
            await conn.execute(
                "UPDATE deployed_scripts SET bundle_sha256 = $4, bundle_key = $5 WHERE integration_id = $1"
                " AND kind = $2 AND name = $3", integration_id, kind, name, bundle_sha256, bundle_key)
    else:
        change = "updated" if before else "added"
        await conn.execute(
            "INSERT INTO deployed_scripts (environment_id, integration_id, name, kind, bundle_sha256, bundle_key,"
            " module_path, config, script_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (integration_id, kind, name) DO UPDATE SET bundle_sha256 = EXCLUDED.bundle_sha256,"
            " bundle_key = EXCLUDED.bundle_key, module_path = EXCLUDED.module_path, config = EXCLUDED.config,"
            " script_sha256 = EXCLUDED.script_sha256,"
            " version = deployed_scripts.version + 1, deployed_at = now()",
            environment_id, integration_id, name, kind, bundle_sha256, bundle_key, module_path, config,
            script_sha256)
    script = await get(conn, integration_id, kind, name)
    assert script is not None
    return script, change


async def get(conn: asyncpg.Connection, integration_id: int, kind: str, name: str) -> DeployedScript | None:
    row = await conn.fetchrow(_SELECT + " WHERE s.integration_id = $1 AND s.kind = $2 AND s.name = $3",
                              integration_id, kind, name)
    return DeployedScript(**dict(row)) if row else None


async def list_for_integration(conn: asyncpg.Connection, integration_id: int) -> list[DeployedScript]:
    rows = await conn.fetch(_SELECT + " WHERE s.integration_id = $1 ORDER BY s.kind, s.name", integration_id)
    return [DeployedScript(**dict(r)) for r in rows]


async def list_for_environment(conn: asyncpg.Connection, environment_id: int) -> list[DeployedScript]:
    rows = await conn.fetch(_SELECT + " WHERE s.environment_id = $1 ORDER BY i.unique_key, s.kind, s.name",
                            environment_id)
    return [DeployedScript(**dict(r)) for r in rows]


async def delete(conn: asyncpg.Connection, script_id: int) -> None:
    await conn.execute("DELETE FROM deployed_scripts WHERE id = $1", script_id)


async def set_enabled(conn: asyncpg.Connection, script_id: int, enabled: bool) -> bool:
    """Switch a script on or off; True when that changed something."""
    status = await conn.execute(
        "UPDATE deployed_scripts SET enabled = $2, enabled_changed_at = now() WHERE id = $1 AND enabled <> $2",
        script_id, enabled)
    return status.endswith(" 1")
