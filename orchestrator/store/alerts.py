"""Failure streaks of syncs (`sync_failure_streaks`) and the environment's run outcomes by the hour.

A streak is counted from the jobs each time one of the sync's runs ends, never kept in a worker's memory: the next
run may end on another worker. Claiming the failing alert and ending a streak are single statements, so exactly
one caller sends each webhook however many workers or activity retries reach them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

# The failed runs since the sync's last success (its jobs through jobs_conn_idx, newest first).
_STREAK = (
    "WITH last_ok AS (SELECT COALESCE(max(id), 0) AS id FROM jobs WHERE connection_pk = $1 AND script_name = $2"
    " AND variant = $3 AND kind = 'sync' AND status = 'success'),"
    " streak AS (SELECT count(*) AS failures, max(j.id) AS last_failed, min(j.started_at) AS since FROM jobs j, last_ok"
    " WHERE j.connection_pk = $1 AND j.script_name = $2 AND j.variant = $3 AND j.kind = 'sync'"
    " AND j.status = 'failed' AND j.id > last_ok.id)"
)


async def count_failures(conn: asyncpg.Connection, environment_id: int, connection_pk: int, sync_name: str,
                         variant: str) -> dict[str, Any] | None:
    """Count the sync's streak from its jobs and store it; None when its last finished run did not fail.
    Returns failures, last_failed_job_id, since and alerted_at (set once the failing webhook was claimed)."""
    row = await conn.fetchrow(
        _STREAK + " INSERT INTO sync_failure_streaks (connection_pk, sync_name, variant, environment_id, failures,"
        " last_failed_job_id, since) SELECT $1, $2, $3, $4, failures, last_failed, since FROM streak WHERE failures > 0"
        " ON CONFLICT (connection_pk, sync_name, variant) DO UPDATE SET failures = EXCLUDED.failures,"
        " last_failed_job_id = EXCLUDED.last_failed_job_id, since = EXCLUDED.since"
        " RETURNING failures, last_failed_job_id, since, alerted_at",
        connection_pk, sync_name, variant, environment_id)
    return dict(row) if row else None


async def claim_alert(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str) -> bool:
    """Mark the streak alerted; True for the one caller that did it (that caller sends the failing webhook)."""
    claimed = await conn.fetchval(
        "UPDATE sync_failure_streaks SET alerted_at = now() WHERE connection_pk = $1 AND sync_name = $2"
        " AND variant = $3 AND alerted_at IS NULL RETURNING true", connection_pk, sync_name, variant)
    return bool(claimed)


async def end_streak(conn: asyncpg.Connection, connection_pk: int, sync_name: str,
                     variant: str) -> dict[str, Any] | None:
    """A success ends the sync's streak: the row as it was (failures, since, alerted_at), or None if there was none."""
    row = await conn.fetchrow(
        "DELETE FROM sync_failure_streaks WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3"
        " RETURNING failures, since, alerted_at", connection_pk, sync_name, variant)
    return dict(row) if row else None


async def last_error(conn: asyncpg.Connection, job_id: int) -> tuple[str | None, str | None]:
    """A failed job's error type and message."""
    row = await conn.fetchrow("SELECT error_type, error FROM jobs WHERE id = $1", job_id)
    return (row["error_type"], row["error"]) if row else (None, None)


async def failing_syncs(conn: asyncpg.Connection, environment_id: int, at_least: int, *,
                        limit: int = 100) -> list[dict[str, Any]]:
    """The environment's syncs with `at_least` failed runs in a row, longest streak first: integration,
    connection_id, sync_name, variant, failures, since, last_failed_job_id, alerted_at."""
    rows = await conn.fetch(
        "SELECT i.unique_key AS integration, c.connection_id, s.sync_name, s.variant, s.failures, s.since,"
        " s.last_failed_job_id, s.alerted_at FROM sync_failure_streaks s JOIN connections c ON c.id = s.connection_pk"
        " JOIN integrations i ON i.id = c.integration_id WHERE s.environment_id = $1 AND s.failures >= $2"
        " ORDER BY s.failures DESC, s.since LIMIT $3", environment_id, at_least, limit)
    return [dict(r) for r in rows]


async def hourly_outcomes(conn: asyncpg.Connection, environment_id: int, since: datetime,
                          hours: int) -> list[dict[str, Any]]:
    """Sync runs that succeeded or failed, by the UTC hour they started, `hours` hours from `since` (an hour's
    start), empty hours included: hour, success, failed (running and cancelled runs are left out). Read through
    jobs_env_started_idx (environment_id, started_at)."""
    rows = await conn.fetch(
        "SELECT h.hour, COALESCE(r.success, 0) AS success, COALESCE(r.failed, 0) AS failed"
        " FROM generate_series($2::timestamptz, $2::timestamptz + ($3 - 1) * interval '1 hour', interval '1 hour')"
        " AS h(hour) LEFT JOIN (SELECT date_trunc('hour', started_at, 'UTC') AS hour,"
        " count(*) FILTER (WHERE status = 'success') AS success, count(*) FILTER (WHERE status = 'failed') AS failed"
        " FROM jobs WHERE environment_id = $1 AND started_at >= $2 AND kind = 'sync'"
        " GROUP BY 1) r ON r.hour = h.hour ORDER BY h.hour", environment_id, since, hours)
    return [dict(r) for r in rows]
