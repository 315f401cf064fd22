"""The dashboard's reads: every list is paged (LIMIT, keyset on id where it can) and index-backed."""

from __future__ import annotations

from typing import Any

import asyncpg

LEVELS = ("debug", "info", "warn", "error")


async def environment_row(conn: asyncpg.Connection, env_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, name, webhook_url, secret_key_hash FROM environments WHERE id = $1", env_id)


async def environments(conn: asyncpg.Connection, search: str | None, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, name, created_at FROM environments WHERE ($1::text IS NULL OR strpos(lower(name), lower($1)) > 0)"
        " ORDER BY name LIMIT $2", search, limit)


async def integration_summaries(conn: asyncpg.Connection, env_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT i.id, i.unique_key, i.provider, i.display_name, i.created_at,"
        " (SELECT count(*) FROM connections c WHERE c.integration_id = i.id) AS connections"
        " FROM integrations i WHERE i.environment_id = $1 ORDER BY i.unique_key", env_id)


_CONN_FILTER = (" FROM connections c JOIN integrations i ON i.id = c.integration_id WHERE c.environment_id = $1"
                " AND ($2::text IS NULL OR strpos(lower(c.connection_id), lower($2)) > 0)"
                " AND ($3::text IS NULL OR i.unique_key = $3)")


async def connections_page(conn: asyncpg.Connection, env_id: int, search: str | None, integration: str | None,
                           limit: int, offset: int) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        "SELECT c.id, c.connection_id, i.unique_key, i.provider, c.created_at" + _CONN_FILTER
        + " ORDER BY c.connection_id, c.id LIMIT $4 OFFSET $5", env_id, search, integration, limit, offset)
    total = await conn.fetchval("SELECT count(*)" + _CONN_FILTER, env_id, search, integration)
    return list(rows), total


async def recent_runs(conn: asyncpg.Connection, connection_pk: int, sync: str, variant: str, *,
                      before: int | None = None, limit: int = 30) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, status, full_resync, started_at, ended_at, error, error_details, attempts FROM sync_jobs"
        " WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3 AND kind = 'sync'"
        " AND ($4::bigint IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
        connection_pk, sync, variant, before, limit)


async def counts_for(conn: asyncpg.Connection, job_ids: list[int]) -> dict[int, dict[str, dict[str, int]]]:
    out: dict[int, dict[str, dict[str, int]]] = {}
    if not job_ids:
        return out
    rows = await conn.fetch("SELECT job_id, model, added, updated, deleted FROM job_counts WHERE job_id = any($1)",
                            job_ids)
    for r in rows:
        out.setdefault(r["job_id"], {})[r["model"]] = {"added": r["added"], "updated": r["updated"],
                                                       "deleted": r["deleted"]}
    return out


async def job(conn: asyncpg.Connection, env_id: int, job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT j.id, j.kind, j.sync_name, j.variant, j.status, j.full_resync, j.started_at, j.ended_at, j.error,"
        " j.error_details, j.input, j.output, j.error_payload, j.public_id, j.workflow_id, j.run_id, j.attempts,"
        " c.connection_id, i.unique_key FROM sync_jobs j JOIN connections c ON c.id = j.connection_pk"
        " JOIN integrations i ON i.id = c.integration_id WHERE j.id = $1 AND j.environment_id = $2", job_id, env_id)


async def job_status(conn: asyncpg.Connection, env_id: int, job_id: int) -> str | None:
    return await conn.fetchval("SELECT status FROM sync_jobs WHERE id = $1 AND environment_id = $2", job_id, env_id)


def levels_from(minimum: str | None) -> list[str] | None:
    if not minimum or minimum not in LEVELS:
        return None
    return list(LEVELS[LEVELS.index(minimum):])


async def logs(conn: asyncpg.Connection, job_id: int, *, after: int, minimum: str | None, search: str | None,
               limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, level, message, fields, created_at FROM script_logs WHERE job_id = $1 AND id > $2"
        " AND ($3::text[] IS NULL OR level = any($3)) AND ($4::text IS NULL OR strpos(lower(message), lower($4)) > 0)"
        " ORDER BY id LIMIT $5", job_id, after, levels_from(minimum), search, limit)
    return [dict(r) for r in rows]


async def notifications_for_job(conn: asyncpg.Connection, job_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT id, url, status, error, attempted_at FROM notification_attempts"
                            " WHERE job_id = $1 ORDER BY id LIMIT 50", job_id)


async def script_jobs(conn: asyncpg.Connection, env_id: int, kind: str, *, before: int | None,
                      limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT j.id, j.sync_name, j.status, j.started_at, j.ended_at, j.input, j.output, j.error, j.error_payload,"
        " c.connection_id, i.unique_key FROM sync_jobs j JOIN connections c ON c.id = j.connection_pk"
        " JOIN integrations i ON i.id = c.integration_id WHERE j.environment_id = $1 AND j.kind = $2"
        " AND ($3::bigint IS NULL OR j.id < $3) ORDER BY j.id DESC LIMIT $4", env_id, kind, before, limit)


async def incoming_webhooks(conn: asyncpg.Connection, env_id: int, *, before: int | None,
                            limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT w.id, w.public_id, w.event_type, w.status, w.connections, w.error, w.received_at, w.processed_at,"
        " substring(w.body from 1 for 2000) AS body, i.unique_key"
        " FROM webhook_payloads w JOIN integrations i ON i.id = w.integration_id WHERE w.environment_id = $1"
        " AND ($2::bigint IS NULL OR w.id < $2) ORDER BY w.id DESC LIMIT $3", env_id, before, limit)


async def outgoing_webhooks(conn: asyncpg.Connection, env_id: int, *, before: int | None,
                            limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT n.id, n.job_id, n.url, n.status, n.error, n.attempted_at, j.sync_name, j.kind, c.connection_id,"
        " i.unique_key FROM notification_attempts n JOIN sync_jobs j ON j.id = n.job_id"
        " JOIN connections c ON c.id = j.connection_pk JOIN integrations i ON i.id = c.integration_id"
        " WHERE j.environment_id = $1 AND ($2::bigint IS NULL OR n.id < $2) ORDER BY n.id DESC LIMIT $3",
        env_id, before, limit)


async def lock_environment(conn: asyncpg.Connection, env_id: int) -> None:
    """Serialize read-modify-write of an environment's variables (inside the caller's transaction)."""
    await conn.execute("SELECT id FROM environments WHERE id = $1 FOR UPDATE", env_id)
