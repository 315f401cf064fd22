"""Jobs of the caller's environment: sync runs, actions, webhooks and events, with what each changed,
the result webhooks sent to the customer's app (every delivery attempt) and the script's logs.

- `GET /jobs?provider_config_key=&connection_id=&sync=&kind=&limit=` -> `{"jobs": [...]}`, newest first.
- `GET /jobs/{id}` -> one job (`id` is the numeric job id, or the action's public UUID) with `counts`
  per model, `notifications`: `[{attempt, url, status, error, attempted_at}]`, `attempts` (tries of its
  run, 1 when it never was retried) and `retries`: `[{attempt, cause, resumes, at}]`, one per retry.
- `GET /jobs/{id}/logs` -> `{"logs": [{level, message, fields, created_at}]}`.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from orchestrator.api.common import environment, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.store.types import Job

routes = web.RouteTableDef()

KINDS = ("sync", "action", "webhook", "event")


def _job(job: Job) -> dict[str, Any]:
    return {"id": job.id, "public_id": str(job.public_id) if job.public_id else None, "kind": job.kind,
            "name": job.script_name, "variant": job.variant, "status": job.status,
            "full_resync": job.full_resync, "connection_id": job.connection_id,
            "provider_config_key": job.integration_key, "started_at": job.started_at.isoformat(),
            "ended_at": job.ended_at.isoformat() if job.ended_at else None, "error": job.error_text,
            "attempts": job.attempts}


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    q = request.query
    kind = q.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise_error(400, "invalid_query_params", f"kind must be one of {', '.join(KINDS)}")
    raw_limit = q.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise_error(400, "invalid_query_params", f"limit must be an integer from 1 to 1000, got {raw_limit!r}")
    async with request.app[PLATFORM].pool.acquire() as conn:
        rows = await jobs_repo.list_for_environment(
            conn, environment(request).id, integration_key=q.get("provider_config_key") or None,
            connection_id=q.get("connection_id") or None, script_name=q.get("sync") or None, kind=kind,
            limit=int(raw_limit))
    return json_response({"jobs": [_job(r) for r in rows]})


async def _find(request: web.Request, conn: asyncpg.Connection) -> Job:
    raw = request.match_info["id"]
    env_id = environment(request).id
    row = None
    if raw.isdigit() and len(raw) < 19:
        row = await jobs_repo.get(conn, int(raw), environment_id=env_id)
    else:
        try:
            public_id = uuid.UUID(raw)
        except ValueError:
            raise_error(400, "invalid_uri_params", f"a job id is a number or a UUID, got {raw!r}")
        row = await jobs_repo.by_public_id(conn, public_id, env_id)
    if row is None:
        raise_error(404, "not_found", f"no job {raw} in this environment")
    return row


@routes.get("/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await _find(request, conn)
        attempts = await notifications_repo.for_job(conn, row.id)
        retries = await jobs_repo.retries(conn, row.id)
    notifications = [{"attempt": n, "url": a["url"].split("?", 1)[0], "status": a["status"], "error": a["error"],
                      "attempted_at": a["attempted_at"].isoformat()} for n, a in enumerate(attempts, 1)]
    return json_response({**_job(row), "counts": row.counts, "notifications": notifications,
                          "retries": [{**r, "at": r["at"].isoformat()} for r in retries]})


@routes.get("/jobs/{id}/logs")
async def job_logs(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await _find(request, conn)
        entries = await jobs_repo.logs(conn, row.id)
    return json_response({"logs": [{"level": e["level"], "message": e["message"], "fields": e["fields"],
                                    "created_at": e["created_at"].isoformat()} for e in entries]})
