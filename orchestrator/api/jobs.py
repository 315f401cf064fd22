"""Jobs of the caller's environment: sync runs, actions, webhooks and events, with what each changed,
the result webhooks sent to the customer's app (every delivery attempt) and the script's logs.

- `GET /jobs?provider_config_key=&connection_id=&sync=&kind=&limit=` -> `{"jobs": [...]}`, newest first.
- `GET /jobs/{id}` -> one job (`id` is the numeric job id, or the action's public UUID) with `counts`
  per model and `notifications`: `[{attempt, url, status, error, attempted_at}]`.
- `GET /jobs/{id}/logs` -> `{"logs": [{level, message, fields, created_at}]}`.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from orchestrator.api.common import environment, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import POOL
from orchestrator.store import jobs as jobs_repo

routes = web.RouteTableDef()

KINDS = ("sync", "action", "webhook", "event")
_COLS = ("j.id, j.public_id, j.kind, j.sync_name, j.variant, j.status, j.full_resync, j.started_at, j.ended_at,"
         " j.error, j.attempts, c.connection_id, i.unique_key AS provider_config_key")
_FROM = (" FROM sync_jobs j JOIN connections c ON c.id = j.connection_pk"
         " JOIN integrations i ON i.id = c.integration_id")


def _job(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "public_id": str(row["public_id"]) if row["public_id"] else None, "kind": row["kind"],
            "name": row["sync_name"], "variant": row["variant"], "status": row["status"],
            "full_resync": row["full_resync"], "connection_id": row["connection_id"],
            "provider_config_key": row["provider_config_key"], "started_at": row["started_at"].isoformat(),
            "ended_at": row["ended_at"].isoformat() if row["ended_at"] else None, "error": row["error"],
            "attempts": row["attempts"]}


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    q = request.query
    kind = q.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise_error(400, "invalid_query_params", f"kind must be one of {', '.join(KINDS)}")
    raw_limit = q.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise_error(400, "invalid_query_params", f"limit must be an integer from 1 to 1000, got {raw_limit!r}")
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLS}{_FROM} WHERE j.environment_id = $1 AND ($2::text IS NULL OR i.unique_key = $2)"
            " AND ($3::text IS NULL OR c.connection_id = $3) AND ($4::text IS NULL OR j.sync_name = $4)"
            " AND ($5::text IS NULL OR j.kind = $5) ORDER BY j.id DESC LIMIT $6",
            environment(request).id, q.get("provider_config_key") or None, q.get("connection_id") or None,
            q.get("sync") or None, kind, int(raw_limit))
    return json_response({"jobs": [_job(r) for r in rows]})


async def _find(request: web.Request, conn: asyncpg.Connection) -> asyncpg.Record:
    raw = request.match_info["id"]
    env_id = environment(request).id
    row = None
    if raw.isdigit() and len(raw) < 19:
        row = await conn.fetchrow(f"SELECT {_COLS}{_FROM} WHERE j.id = $1 AND j.environment_id = $2", int(raw), env_id)
    else:
        try:
            public_id = uuid.UUID(raw)
        except ValueError:
            raise_error(400, "invalid_uri_params", f"a job id is a number or a UUID, got {raw!r}")
        row = await conn.fetchrow(f"SELECT {_COLS}{_FROM} WHERE j.public_id = $1 AND j.environment_id = $2",
                                  public_id, env_id)
    if row is None:
        raise_error(404, "not_found", f"no job {raw} in this environment")
    return row


@routes.get("/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await _find(request, conn)
        counts = await jobs_repo.counts(conn, row["id"])
        attempts = await conn.fetch("SELECT url, status, error, attempted_at FROM notification_attempts"
                                    " WHERE job_id = $1 ORDER BY id", row["id"])
    notifications = [{"attempt": n, "url": a["url"].split("?", 1)[0], "status": a["status"], "error": a["error"],
                      "attempted_at": a["attempted_at"].isoformat()} for n, a in enumerate(attempts, 1)]
    return json_response({**_job(row), "counts": counts, "notifications": notifications})


@routes.get("/jobs/{id}/logs")
async def job_logs(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await _find(request, conn)
        entries = await jobs_repo.logs(conn, row["id"])
    return json_response({"logs": [{**e, "created_at": e["created_at"].isoformat()} for e in entries]})
