"""The dashboard's reads, composed from the store's repositories (no SQL here): every list is paged
(LIMIT, keyset on id where it can) and index-backed.

Rows come back as dicts with the keys the pages have always used (a job's script is also under
`sync_name`, and its `error` reads "type: message" as it always did).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from orchestrator.store import alerts as alerts_repo
from orchestrator.store import connections as connections_repo
from orchestrator.store import environments as environments_repo
from orchestrator.store import integrations as integrations_repo
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store import webhooks as webhooks_repo
from orchestrator.store.types import Job

LEVELS = ("debug", "info", "warn", "error")


def _job_row(job: Job) -> dict[str, Any]:
    row = job.model_dump(exclude={"counts", "error_type", "integration_key"})
    row.update(sync_name=job.script_name, unique_key=job.integration_key, error=job.error_text)
    return row


async def environment_row(conn: asyncpg.Connection, env_id: int) -> dict[str, Any] | None:
    return await environments_repo.with_key_hash(conn, env_id)


async def environments(conn: asyncpg.Connection, search: str | None, limit: int = 100) -> list[dict[str, Any]]:
    return await environments_repo.list_all(conn, search=search, limit=limit)


async def integration_summaries(conn: asyncpg.Connection, env_id: int) -> list[dict[str, Any]]:
    return await integrations_repo.summaries(conn, env_id)


async def connections_page(conn: asyncpg.Connection, env_id: int, search: str | None, integration: str | None,
                           limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    return await connections_repo.page(conn, env_id, search, integration, limit, offset)


async def recent_runs(conn: asyncpg.Connection, connection_pk: int, sync: str, variant: str, *,
                      before: int | None = None, limit: int = 30) -> list[dict[str, Any]]:
    """A sync's own runs (not its webhook jobs), newest first; counts come from `counts_for`."""
    jobs = await jobs_repo.latest(conn, connection_pk, sync, variant, kind="sync", before=before, limit=limit,
                                  with_counts=False)
    return [_job_row(j) for j in jobs]


async def counts_for(conn: asyncpg.Connection, job_ids: list[int]) -> dict[int, dict[str, dict[str, int]]]:
    return await jobs_repo.counts_for(conn, job_ids)


async def sync_models(conn: asyncpg.Connection, env_id: int, integration_key: str, sync_name: str) -> list[str]:
    """The models a deployed sync writes ([] when it is no longer deployed)."""
    for script in await scripts_repo.list_for_environment(conn, env_id):
        if script.kind == "sync" and script.integration_key == integration_key and script.name == sync_name:
            return list(script.config.get("output") or [])
    return []


async def job(conn: asyncpg.Connection, env_id: int, job_id: int) -> dict[str, Any] | None:
    found = await jobs_repo.get(conn, job_id, environment_id=env_id, with_counts=False)
    return _job_row(found) if found else None


async def retries(conn: asyncpg.Connection, job_id: int) -> list[dict[str, Any]]:
    """A job's retries: what failed before each attempt and where it resumed (runs/attempts.py)."""
    return await jobs_repo.retries(conn, job_id)


async def job_status(conn: asyncpg.Connection, env_id: int, job_id: int) -> str | None:
    found = await jobs_repo.get(conn, job_id, environment_id=env_id, with_counts=False)
    return found.status if found else None


def levels_from(minimum: str | None) -> list[str] | None:
    if not minimum or minimum not in LEVELS:
        return None
    return list(LEVELS[LEVELS.index(minimum):])


async def logs(conn: asyncpg.Connection, job_id: int, *, after: int, minimum: str | None, search: str | None,
               limit: int) -> list[dict[str, Any]]:
    return await jobs_repo.logs(conn, job_id, after=after, levels=levels_from(minimum), search=search, limit=limit)


async def notifications_for_job(conn: asyncpg.Connection, job_id: int) -> list[dict[str, Any]]:
    return await notifications_repo.for_job(conn, job_id, limit=50)


async def script_jobs(conn: asyncpg.Connection, env_id: int, kind: str, *, before: int | None,
                      limit: int) -> list[dict[str, Any]]:
    jobs = await jobs_repo.list_for_environment(conn, env_id, kind=kind, before=before, limit=limit)
    return [_job_row(j) for j in jobs]


async def incoming_webhooks(conn: asyncpg.Connection, env_id: int, *, before: int | None,
                            limit: int) -> list[dict[str, Any]]:
    return await webhooks_repo.list_for_environment(conn, env_id, before=before, limit=limit)


async def outgoing_webhooks(conn: asyncpg.Connection, env_id: int, *, before: int | None,
                            limit: int) -> list[dict[str, Any]]:
    rows = await notifications_repo.for_environment(conn, env_id, before=before, limit=limit)
    return [{**r, "sync_name": r["script_name"]} for r in rows]


async def auth_webhooks(conn: asyncpg.Connection, env_id: int, *, limit: int) -> list[dict[str, Any]]:
    return await notifications_repo.auth_attempts(conn, env_id, limit=limit)


async def lock_environment(conn: asyncpg.Connection, env_id: int) -> None:
    """Serialize read-modify-write of an environment's variables (inside the caller's transaction)."""
    await environments_repo.lock(conn, env_id)


async def alert_after_failures(conn: asyncpg.Connection, env_id: int) -> int:
    """The environment's failing-sync threshold (0: alerts off)."""
    row = await environments_repo.webhook_settings(conn, env_id)
    return int(row["alert_after_failures"]) if row else 0


async def failing_syncs(conn: asyncpg.Connection, env_id: int, at_least: int, *, limit: int) -> list[dict[str, Any]]:
    return await alerts_repo.failing_syncs(conn, env_id, at_least, limit=limit)


async def hourly_outcomes(conn: asyncpg.Connection, env_id: int, since: datetime, hours: int) -> list[dict[str, Any]]:
    return await alerts_repo.hourly_outcomes(conn, env_id, since, hours)
