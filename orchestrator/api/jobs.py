"""Jobs of the caller's environment: sync runs, actions, webhooks and events, with what each changed,
the result webhooks sent to the customer's app (every delivery attempt) and the script's logs.

- `GET /jobs?provider_config_key=&connection_id=&sync=&kind=&limit=` -> `{"jobs": [...]}`, newest first.
- `GET /jobs/{id}` -> one job (`id` is the numeric job id, or the action's public UUID) with `counts`
  per model, `notifications`: `[{attempt, url, status, error, attempted_at}]`, `attempts` (tries of its
  run, 1 when it never was retried) and `retries`: `[{attempt, cause, resumes, at}]`, one per retry.
- `GET /jobs/{id}/logs` -> `{"logs": [{level, message, fields, created_at}]}`.
- `GET /logs?provider_config_key=&connection_id=&script=&level=&from=&to=&text=&cursor=&limit=` -> `{"logs":
  [{id, job_id, kind, script, connection_id, provider_config_key, level, message, fields, created_at}],
  "next_cursor"}`: the environment's log lines across its jobs, newest first, `next_cursor` (opaque) until the
  last page. The dashboard's log search reads its filters with the same `log_search_params`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel

from orchestrator.api import models as m
from orchestrator.api.common import environment, is_number, iso, json_response
from orchestrator.api.errors import raise_error
from orchestrator.api.keys import PLATFORM
from orchestrator.control.syncs import every_model
from orchestrator.store import jobs as jobs_repo
from orchestrator.store import notifications as notifications_repo
from orchestrator.store import scripts as scripts_repo
from orchestrator.store.types import Job

routes = web.RouteTableDef()

KINDS = ("sync", "action", "webhook", "event")
LOG_LIMIT_MAX = 500
LOG_TEXT_MAX = 1000


class JobWithCounts(m.JobOut):
    counts: dict[str, m.ModelCounts]


class JobListWithCounts(BaseModel):
    jobs: list[JobWithCounts]


class LogLineOut(BaseModel):
    id: int
    job_id: int
    kind: str
    script: str
    connection_id: str
    provider_config_key: str
    level: str
    message: str
    fields: dict[str, Any] | None
    created_at: datetime


class LogSearch(BaseModel):
    logs: list[LogLineOut]
    next_cursor: str | None


class LogParamError(ValueError):
    """A `GET /logs` (or dashboard log search) parameter that cannot be used; the message names it."""


def _when(q: MultiMapping[str], name: str) -> datetime | None:
    raw = q.get(name, "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise LogParamError(f"{name} must be an ISO 8601 date-time (UTC unless it says), got {raw[:60]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def log_search_params(q: MultiMapping[str], *, default_limit: int = 100
                      ) -> tuple[jobs_repo.LogQuery, tuple[datetime, int] | None, int]:
    """The filters, the page's start and its size from a query string; LogParamError names a bad one."""
    levels = [v.strip().lower() for raw in q.getall("level", []) for v in raw.split(",") if v.strip()]
    unknown = [v for v in levels if v not in jobs_repo.LEVELS]
    if unknown:
        raise LogParamError(f"level must be one or several of {', '.join(jobs_repo.LEVELS)}, got {unknown[0][:40]!r}")
    since, until = _when(q, "from"), _when(q, "to")
    if since is not None and until is not None and since >= until:
        raise LogParamError("from must be before to")
    text = q.get("text", "").strip()
    if len(text) > LOG_TEXT_MAX:
        raise LogParamError(f"text is at most {LOG_TEXT_MAX} characters, got {len(text)}")
    raw_limit = q.get("limit", "").strip() or str(default_limit)
    if not is_number(raw_limit) or not 1 <= int(raw_limit) <= LOG_LIMIT_MAX:
        raise LogParamError(f"limit must be an integer from 1 to {LOG_LIMIT_MAX}, got {raw_limit[:20]!r}")
    raw_cursor = q.get("cursor", "").strip()
    try:
        before = jobs_repo.parse_log_cursor(raw_cursor) if raw_cursor else None
    except ValueError:
        raise LogParamError("cursor must be a next_cursor this API returned") from None
    query = jobs_repo.LogQuery(
        integration_key=q.get("provider_config_key") or None, connection_id=q.get("connection_id") or None,
        script_name=q.get("script") or None, levels=levels or None, since=since, until=until, text=text or None)
    return query, before, int(raw_limit)


async def search_logs(conn: asyncpg.Connection, environment_id: int, query: jobs_repo.LogQuery,
                      before: tuple[datetime, int] | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the search and the cursor of the next (None on the last: one line more is read to know)."""
    lines = await jobs_repo.search_logs(conn, environment_id, query, before=before, limit=limit + 1)
    more = len(lines) > limit
    return lines[:limit], jobs_repo.log_cursor(lines[limit - 1]) if more else None


async def _sync_outputs(conn: asyncpg.Connection, environment_id: int) -> dict[tuple[str, str], list[str]]:
    """The models each deployed sync writes, by (integration, sync)."""
    return {(s.integration_key, s.name): list(s.config.get("output") or [])
            for s in await scripts_repo.list_for_environment(conn, environment_id) if s.kind == "sync"}


def _counts(job: Job, outputs: dict[tuple[str, str], list[str]]) -> dict[str, dict[str, int]]:
    """A sync run's counts name every model of its sync (zeros where it changed nothing), as Nango's do."""
    if job.kind != "sync":
        return job.counts
    return every_model(job.counts, outputs.get((job.integration_key or "", job.script_name), []))


def _job(job: Job) -> dict[str, Any]:
    return {"id": job.id, "public_id": str(job.public_id) if job.public_id else None, "kind": job.kind,
            "name": job.script_name, "variant": job.variant, "status": job.status,
            "full_resync": job.full_resync, "connection_id": job.connection_id,
            "provider_config_key": job.integration_key, "started_at": iso(job.started_at),
            "ended_at": iso(job.ended_at), "error": job.error_text,
            "attempts": job.attempts}


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    q = request.query
    kind = q.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise_error(400, "invalid_query_params", f"kind must be one of {', '.join(KINDS)}")
    raw_limit = q.get("limit", "50")
    if not is_number(raw_limit) or not 1 <= int(raw_limit) <= 1000:
        raise_error(400, "invalid_query_params", f"limit must be an integer from 1 to 1000, got {raw_limit!r}")
    async with request.app[PLATFORM].pool.acquire() as conn:
        rows = await jobs_repo.list_for_environment(
            conn, environment(request).id, integration_key=q.get("provider_config_key") or None,
            connection_id=q.get("connection_id") or None, script_name=q.get("sync") or None, kind=kind,
            limit=int(raw_limit), with_counts=True)
        outputs = await _sync_outputs(conn, environment(request).id)
    return json_response({"jobs": [{**_job(r), "counts": _counts(r, outputs)} for r in rows]})


@routes.get("/logs")
async def search_log_lines(request: web.Request) -> web.Response:
    try:
        query, before, limit = log_search_params(request.query)
    except LogParamError as exc:
        raise_error(400, "invalid_query_params", str(exc))
    async with request.app[PLATFORM].pool.acquire() as conn:
        lines, next_cursor = await search_logs(conn, environment(request).id, query, before, limit)
    return json_response({"logs": [
        {"id": e["id"], "job_id": e["job_id"], "kind": e["kind"], "script": e["script_name"],
         "connection_id": e["connection_id"], "provider_config_key": e["integration_key"], "level": e["level"],
         "message": e["message"], "fields": e["fields"], "created_at": iso(e["created_at"])}
        for e in lines], "next_cursor": next_cursor})


async def _find(request: web.Request, conn: asyncpg.Connection) -> Job:
    raw = request.match_info["id"]
    env_id = environment(request).id
    row = None
    if is_number(raw) and len(raw) < 19:
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
        outputs = await _sync_outputs(conn, environment(request).id) if row.kind == "sync" else {}
    notifications = [{"attempt": n, "url": a["url"].split("?", 1)[0], "status": a["status"], "error": a["error"],
                      "attempted_at": iso(a["attempted_at"])} for n, a in enumerate(attempts, 1)]
    return json_response({**_job(row), "counts": _counts(row, outputs), "notifications": notifications,
                          "retries": [{**r, "at": iso(r["at"])} for r in retries]})


@routes.get("/jobs/{id}/logs")
async def job_logs(request: web.Request) -> web.Response:
    async with request.app[PLATFORM].pool.acquire() as conn:
        row = await _find(request, conn)
        entries = await jobs_repo.logs(conn, row.id)
    return json_response({"logs": [{"level": e["level"], "message": e["message"], "fields": e["fields"],
                                    "created_at": iso(e["created_at"])} for e in entries]})
