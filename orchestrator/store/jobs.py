"""Sync jobs (one per run attempt chain), their counts, logs and the per-sync state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from orchestrator.store.types import Job

_JOB_COLS = ("id, environment_id, connection_pk, sync_name, variant, kind, status, full_resync,"
             " started_at, ended_at, error")


async def open_job(
    conn: asyncpg.Connection, *, environment_id: int, connection_pk: int, script_name: str, kind: str,
    variant: str = "base", full_resync: bool = False, workflow_id: str | None = None, run_id: str | None = None,
    public_id: str | None = None, input: Any = None,
) -> int:
    """Open a running job for one script run of any kind.

    A sync has at most one running job per (connection, sync, variant): a retried activity of the same
    workflow run gets its job back, and a running job left by another, dead workflow run is closed as
    failed first. Action, webhook and event jobs are opened by whoever starts their workflow, one per call.
    """
    if kind != "sync":
        return await conn.fetchval(
            "INSERT INTO sync_jobs (environment_id, connection_pk, sync_name, variant, kind, status, public_id, input)"
            " VALUES ($1, $2, $3, $4, $5, 'running', $6, $7) RETURNING id",
            environment_id, connection_pk, script_name, variant, kind, public_id, input)
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, workflow_id, run_id FROM sync_jobs WHERE connection_pk = $1 AND sync_name = $2"
            " AND variant = $3 AND status = 'running' FOR UPDATE", connection_pk, script_name, variant)
        if row and row["workflow_id"] == workflow_id and row["run_id"] == run_id:
            return row["id"]
        if row:
            await conn.execute(
                "UPDATE sync_jobs SET status = 'failed', ended_at = now(),"
                " error = 'superseded: its workflow run ended without closing it' WHERE id = $1", row["id"])
        return await conn.fetchval(
            "INSERT INTO sync_jobs (environment_id, connection_pk, sync_name, variant, kind, status, full_resync,"
            " workflow_id, run_id) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING id",
            environment_id, connection_pk, script_name, variant, kind, full_resync, workflow_id, run_id)


async def close_job(conn: asyncpg.Connection, job_id: int, status: str, *, error: str | None = None,
                    error_details: str | None = None) -> None:
    await conn.execute(
        "UPDATE sync_jobs SET status = $2, ended_at = now(), error = $3, error_details = $4"
        " WHERE id = $1 AND status = 'running'", job_id, status, error, error_details)
    await conn.execute("DELETE FROM job_seen_records WHERE job_id = $1", job_id)


async def get(conn: asyncpg.Connection, job_id: int) -> Job | None:
    row = await conn.fetchrow(f"SELECT {_JOB_COLS} FROM sync_jobs WHERE id = $1", job_id)
    if not row:
        return None
    return Job(**dict(row), counts=await counts(conn, job_id))


async def counts(conn: asyncpg.Connection, job_id: int) -> dict[str, dict[str, int]]:
    rows = await conn.fetch("SELECT model, added, updated, deleted FROM job_counts WHERE job_id = $1", job_id)
    return {r["model"]: {"added": r["added"], "updated": r["updated"], "deleted": r["deleted"]} for r in rows}


async def latest(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str = "base",
                 *, limit: int = 1) -> list[Job]:
    rows = await conn.fetch(
        f"SELECT {_JOB_COLS} FROM sync_jobs WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3"
        " ORDER BY id DESC LIMIT $4", connection_pk, sync_name, variant, limit)
    return [Job(**dict(r), counts=await counts(conn, r["id"])) for r in rows]


LogEntry = tuple[str, str, dict[str, Any] | None]


async def add_logs(conn: asyncpg.Connection, job_id: int, entries: list[LogEntry]) -> None:
    if entries:
        await conn.executemany(
            "INSERT INTO script_logs (job_id, level, message, fields) VALUES ($1, $2, $3, $4)",
            [(job_id, level, msg, fields) for level, msg, fields in entries])


async def logs(conn: asyncpg.Connection, job_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT level, message, fields, created_at FROM script_logs WHERE job_id = $1 ORDER BY id", job_id)
    return [dict(r) for r in rows]


# ---- sync state ---------------------------------------------------------------------------------

async def get_state(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str = "base"
                    ) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT last_success_at, checkpoint, reset_requested, frequency_override FROM sync_state"
        " WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3", connection_pk, sync_name, variant)
    return dict(row) if row else {"last_success_at": None, "checkpoint": None, "reset_requested": False,
                                  "frequency_override": None}


async def _upsert_state(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                        column: str, value: Any) -> None:
    assert column in {"last_success_at", "checkpoint", "reset_requested", "frequency_override", "last_job_id"}
    await conn.execute(
        f"INSERT INTO sync_state (connection_pk, sync_name, variant, {column}) VALUES ($1, $2, $3, $4)"
        f" ON CONFLICT (connection_pk, sync_name, variant) DO UPDATE SET {column} = EXCLUDED.{column}",
        connection_pk, sync_name, variant, value)


async def set_checkpoint(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                         checkpoint: dict[str, Any] | None) -> None:
    await _upsert_state(conn, connection_pk, sync_name, variant, "checkpoint", checkpoint)


async def request_reset(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str = "base") -> None:
    await _upsert_state(conn, connection_pk, sync_name, variant, "reset_requested", True)


async def take_reset(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str) -> bool:
    """Read and clear the reset mark; a reset also forgets the last success and the checkpoint."""
    reset = await conn.fetchval(
        "UPDATE sync_state SET reset_requested = false, last_success_at = NULL, checkpoint = NULL"
        " WHERE connection_pk = $1 AND sync_name = $2 AND variant = $3 AND reset_requested RETURNING true",
        connection_pk, sync_name, variant)
    return bool(reset)


async def mark_success(conn: asyncpg.Connection, connection_pk: int, sync_name: str, variant: str,
                       started_at: datetime, job_id: int) -> None:
    await conn.execute(
        "INSERT INTO sync_state (connection_pk, sync_name, variant, last_success_at, last_job_id, checkpoint)"
        " VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (connection_pk, sync_name, variant) DO UPDATE SET"
        " last_success_at = EXCLUDED.last_success_at, last_job_id = EXCLUDED.last_job_id, checkpoint = NULL",
        connection_pk, sync_name, variant, started_at, job_id)
