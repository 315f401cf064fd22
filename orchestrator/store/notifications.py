"""Webhooks sent to the customer's app, every delivery attempt: sync results (`notification_attempts`, per job)
and auth events (`auth_webhook_attempts`, per environment)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def add_attempt(conn: asyncpg.Connection, job_id: int, url: str, status: int | None,
                      error: str | None) -> None:
    """Record one delivery attempt (its HTTP status, or the error when there was no answer)."""
    await conn.execute("INSERT INTO notification_attempts (job_id, url, status, error) VALUES ($1, $2, $3, $4)",
                       job_id, url, status, error)


async def for_job(conn: asyncpg.Connection, job_id: int, *, limit: int | None = None) -> list[dict[str, Any]]:
    """A job's delivery attempts in order: id, url, status, error, attempted_at."""
    rows = await conn.fetch("SELECT id, url, status, error, attempted_at FROM notification_attempts"
                            " WHERE job_id = $1 ORDER BY id LIMIT $2", job_id, limit)
    return [dict(r) for r in rows]


async def for_environment(conn: asyncpg.Connection, environment_id: int, *, before: int | None,
                          limit: int) -> list[dict[str, Any]]:
    """An environment's delivery attempts, newest first, with the job, script and connection they were for."""
    rows = await conn.fetch(
        "SELECT n.id, n.job_id, n.url, n.status, n.error, n.attempted_at, j.script_name, j.kind, c.connection_id,"
        " i.unique_key FROM notification_attempts n JOIN jobs j ON j.id = n.job_id"
        " JOIN connections c ON c.id = j.connection_pk JOIN integrations i ON i.id = c.integration_id"
        " WHERE j.environment_id = $1 AND ($2::bigint IS NULL OR n.id < $2) ORDER BY n.id DESC LIMIT $3",
        environment_id, before, limit)
    return [dict(r) for r in rows]


async def add_auth_attempt(conn: asyncpg.Connection, environment_id: int, *, integration: str, connection_id: str,
                           operation: str, success: bool, url: str, status: int | None, error: str | None) -> None:
    await conn.execute(
        "INSERT INTO auth_webhook_attempts (environment_id, integration, connection_id, operation, success, url,"
        " status, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        environment_id, integration, connection_id, operation, success, url, status, error)


async def auth_attempts(conn: asyncpg.Connection, environment_id: int, *, limit: int = 100) -> list[dict[str, Any]]:
    """An environment's auth webhook attempts, newest first."""
    rows = await conn.fetch(
        "SELECT id, integration, connection_id, operation, success, url, status, error, attempted_at"
        " FROM auth_webhook_attempts WHERE environment_id = $1 ORDER BY id DESC LIMIT $2", environment_id, limit)
    return [dict(r) for r in rows]


async def delete_expired_auth_attempts(conn: asyncpg.Connection, environment_id: int, days: int, *,
                                       limit: int) -> int:
    """Retention (the jobs' setting): delete up to `limit` of the environment's auth webhook attempts made more
    than `days` ago, oldest first."""
    status = await conn.execute(
        "DELETE FROM auth_webhook_attempts WHERE id IN (SELECT id FROM auth_webhook_attempts WHERE environment_id = $1"
        " AND attempted_at < now() - make_interval(days => $2) ORDER BY id LIMIT $3)", environment_id, days, limit)
    return int(status.split()[-1])
