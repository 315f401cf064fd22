"""Every applied deploy, per integration (table `deploy_history`): who, when, what changed, which bundle."""

from __future__ import annotations

from typing import Any

import asyncpg

from orchestrator.store import locks


async def add(conn: asyncpg.Connection, *, environment_id: int, integration_id: int, deployed_by: str,
              bundle_sha256: str, bundle_key: str, changes: dict[str, Any], only_scripts: list[str] | None,
              rollback_of: int | None) -> int:
    """Record a deploy as the integration's next version; returns that version. Two deploys of one integration
    at once (a client retrying after a timeout) take turns here, so each gets its own number."""
    await locks.lock_for_transaction(conn, "deploy_history", integration_id)  # held to the caller's commit
    version = await conn.fetchval(
        "INSERT INTO deploy_history (environment_id, integration_id, version, deployed_by, bundle_sha256, bundle_key,"
        " changes, only_scripts, rollback_of) SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8"
        " FROM deploy_history WHERE integration_id = $2 RETURNING version",
        environment_id, integration_id, deployed_by, bundle_sha256, bundle_key, changes, only_scripts, rollback_of)
    return int(version)


async def list_for_environment(conn: asyncpg.Connection, environment_id: int, integration_key: str | None = None
                               ) -> list[dict[str, Any]]:
    """version, integration, deployed_at, deployed_by, bundle_sha256, changes, only_scripts, rollback_of;
    per integration, newest first."""
    rows = await conn.fetch(
        "SELECT h.version, i.unique_key AS integration, h.deployed_at, h.deployed_by, h.bundle_sha256, h.changes,"
        " h.only_scripts, h.rollback_of FROM deploy_history h JOIN integrations i ON i.id = h.integration_id"
        " WHERE h.environment_id = $1 AND ($2::text IS NULL OR i.unique_key = $2)"
        " ORDER BY i.unique_key, h.version DESC", environment_id, integration_key)
    return [dict(r) for r in rows]


async def bundle_key(conn: asyncpg.Connection, environment_id: int, integration_key: str, version: int
                     ) -> str | None:
    """The bundle an earlier deploy applied (None: no such version)."""
    return await conn.fetchval(
        "SELECT h.bundle_key FROM deploy_history h JOIN integrations i ON i.id = h.integration_id"
        " WHERE h.environment_id = $1 AND i.unique_key = $2 AND h.version = $3", environment_id, integration_key,
        version)
